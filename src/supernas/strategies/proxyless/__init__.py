"""ProxylessNAS: binarized paths, two-path and full gate gradients, latency-aware loss."""

from supernas.strategies.proxyless.search import ProxylessNAS

__all__ = ["ProxylessNAS"]
