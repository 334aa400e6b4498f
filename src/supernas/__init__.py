"""supernas: hardware-aware neural architecture search of efficient CNNs."""

__version__ = "0.1.0"
