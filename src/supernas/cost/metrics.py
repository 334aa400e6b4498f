"""Cost metrics: how much a child costs, priced layer by layer.

A metric prices the stem, each block and the head of a child from their exact shapes (the plans
of `supernas.space.plan`), plus a constant per network. The exact cost of a child is the sum, and
a relaxed search gets a differentiable expected cost by contracting the same per-layer prices
with its probabilities (`supernas.cost.expected` for DMaskingNAS's masks, ProxylessNAS's
``ExpectedPathCost`` for its paths), so the exact and the expected cost cannot disagree.

A new cost, e.g. energy from a per-layer table, is one `Metric` subclass registered in
`METRICS`; recipes then name it as ``search.budget.metric``.
"""

from __future__ import annotations

import abc
from typing import ClassVar

from supernas.cost.latency import LatencyTable, block_key, head_key, stem_key
from supernas.cost.macs import Cost, block_cost, head_cost, stem_cost
from supernas.errors import ConfigError
from supernas.registry import Registry
from supernas.space.plan import BlockPlan, NetPlan
from supernas.space.space import SearchSpace


class Metric(abc.ABC):
    """Prices the layers of a child in one unit; built by `METRICS` for one space."""

    name: ClassVar[str]
    unit: ClassVar[str]  # as printed after a value: "MACs", "params", "ms"
    record_key: ClassVar[str]  # the field of a candidate record: "macs", "latency_ms"
    # True: no child costs less than the smallest (every option's first choice), as for
    # counts; a measured cost such as latency may rank children otherwise.
    smallest_is_cheapest: ClassVar[bool] = False
    overhead: float = 0.0  # added once per network

    @abc.abstractmethod
    def stem(self, net: NetPlan) -> float: ...

    @abc.abstractmethod
    def block(self, block: BlockPlan) -> float: ...

    @abc.abstractmethod
    def head(self, net: NetPlan) -> float: ...

    def of(self, net: NetPlan) -> float:
        """The exact cost of a whole child (skipped blocks cost nothing)."""
        layers = [self.block(b) for b in net.blocks if b is not None]
        return sum([self.stem(net), *layers, self.head(net)]) + self.overhead

    def format(self, value: float) -> str:
        return f"{value / 1e6:.3g}M {self.unit}"

    def label(self, value: float) -> str:
        """A short name for a budget of ``value``, e.g. a folder: "5M", "1.8ms"."""
        return f"{value / 1e6:g}M"


class _CountMetric(Metric):
    """A field of the exact `Cost` count (`supernas.cost.macs`)."""

    field: ClassVar[str]
    smallest_is_cheapest = True

    def __init__(self, space: SearchSpace, lut: str | None = None) -> None:
        if lut is not None:
            raise ConfigError(f"search.budget.lut is for metric latency, not {self.name}")

    def _pick(self, cost: Cost) -> int:
        return getattr(cost, self.field)

    def stem(self, net: NetPlan) -> float:
        return self._pick(
            stem_cost(net.in_channels, net.stem_channels, net.stem_kernel_size, net.stem_size)
        )

    def block(self, block: BlockPlan) -> float:
        return self._pick(block_cost(block))

    def head(self, net: NetPlan) -> float:
        return self._pick(
            head_cost(net.head_in_channels, net.head_channels, net.head_size, net.num_classes)
        )


METRICS: Registry[type[Metric]] = Registry("cost metric", ConfigError)


@METRICS.register("macs")
class MACs(_CountMetric):
    name, unit, field, record_key = "macs", "MACs", "macs", "macs"


@METRICS.register("params")
class Params(_CountMetric):
    name, unit, field, record_key = "params", "params", "params", "params"


@METRICS.register("latency")
class Latency(Metric):
    """Predicted latency (ms) from a table measured on the target device (ProxylessNAS)."""

    name, unit, record_key = "latency", "ms", "latency_ms"

    def __init__(self, space: SearchSpace, lut: str | LatencyTable | None = None) -> None:
        if lut is None:
            raise ConfigError(
                "metric latency needs search.budget.lut (see 'supernas latency build')"
            )
        self.table = lut if isinstance(lut, LatencyTable) else LatencyTable.load(lut)
        self.table.validate()
        self.table.check(space)
        self.overhead = self.table.overhead_ms

    def stem(self, net: NetPlan) -> float:
        return self.table.lookup(stem_key(net))

    def block(self, block: BlockPlan) -> float:
        return self.table.lookup(block_key(block))

    def head(self, net: NetPlan) -> float:
        return self.table.lookup(head_key(net))

    def format(self, value: float) -> str:
        return f"{value:.3g} ms"

    def label(self, value: float) -> str:
        return f"{value:g}ms"
