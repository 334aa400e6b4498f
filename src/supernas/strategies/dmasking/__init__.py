"""DMaskingNAS (FBNetV2): channel and resolution search by masking in one soft supernet."""

from supernas.strategies.dmasking.relaxed import MaskedForward
from supernas.strategies.dmasking.search import DMaskingNAS

__all__ = ["DMaskingNAS", "MaskedForward"]
