"""Building blocks, the weight-sharing supernet and standalone models."""

from supernas.nn.bn import recalibrate_bn
from supernas.nn.standalone import StandaloneModel, build_model, extract_child
from supernas.nn.supernet import Supernet, resize

__all__ = [
    "StandaloneModel",
    "Supernet",
    "build_model",
    "extract_child",
    "recalibrate_bn",
    "resize",
]
