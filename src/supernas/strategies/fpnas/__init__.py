"""FP-NAS: PARSEC's importance-weighted sampling of whole archs, with entropy-adaptive K and a
factorised-to-joint distribution (see `supernas.strategies.fpnas.search`)."""

from supernas.strategies.fpnas.distribution import ArchDistribution
from supernas.strategies.fpnas.search import FPNAS

__all__ = ["FPNAS", "ArchDistribution"]
