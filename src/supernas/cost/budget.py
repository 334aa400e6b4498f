"""The search's budget: one cost metric and one target, asked by every strategy.

A recipe names it once, under ``search.budget``::

    budget: {metric: macs, target: 4.0e+6}
    budget: {metric: latency, target: 1.8, lut: lut_fmnist_cpu.json}
    budget: {metric: latency, target: 0.3, lut: lut_ort_int8.json, precision: int8}

A latency table may come from any runtime and precision (`supernas latency build --runtime`);
``runtime`` and ``precision``, when given, make the search refuse a table measured otherwise.

The target is both the ``T`` of a method's cost term (`supernas.cost.penalty`, FP-NAS's hinge,
ProxylessNAS's reward) and the hard limit of the derived arch: every strategy derives an arch
whose exact cost (`Budget.cost`) is at most the target, or the smallest child, or raises
`BudgetError`. Without a target the search optimises accuracy alone and derives freely.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from supernas.cost.macs import arch_cost
from supernas.cost.metrics import METRICS, Metric
from supernas.errors import BudgetError, ConfigError
from supernas.space.arch import Arch
from supernas.space.choices import smallest
from supernas.space.plan import plan
from supernas.space.space import SearchSpace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BudgetConfig:
    """``search.budget`` of a recipe."""

    metric: str = "macs"  # "macs", "params" or "latency" (predicted from lut)
    target: float | None = None  # the derived arch costs at most this; None: no budget
    lut: str | None = None  # latency table JSON (`supernas latency build`), for metric latency
    runtime: str | None = None  # the table must be measured in this runtime; None: any
    precision: str | None = None  # the table must be measured in this precision; None: any

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(
                f"search.budget.metric {self.metric!r} is not one of {', '.join(METRICS)}"
            )
        if self.target is not None and not (math.isfinite(self.target) and self.target > 0):
            raise ConfigError(f"search.budget.target must be a positive number, got {self.target}")
        if self.metric != "latency" and (self.runtime or self.precision):
            raise ConfigError("search.budget.runtime and precision are for metric latency")


class Budget:
    """A metric priced for one space, and the target the derived arch must meet."""

    def __init__(self, config: BudgetConfig, space: SearchSpace) -> None:
        self.space = space
        self.metric: Metric = METRICS.get(config.metric)(space, config.lut)
        table = getattr(self.metric, "table", None)
        if table is not None:
            table.check_runtime(config.runtime, config.precision)
        self.target = config.target
        if self.target is not None:
            self._check_reachable()

    def _check_reachable(self) -> None:
        """Refuses a target below every child before any work, where that can be known."""
        floor = self.cost(smallest(self.space))
        if self.target >= floor:
            return
        below = (
            f"budget {self.describe(self.target)} is below the smallest child of "
            f"{self.space.name} ({self.describe(floor)})"
        )
        if self.metric.smallest_is_cheapest:
            raise BudgetError(below)
        log.warning("%s; the search fails if it finds no cheaper child", below)

    @classmethod
    def of(
        cls,
        space: SearchSpace,
        target: float | None = None,
        metric: str = "macs",
        lut: str | None = None,
    ) -> Budget:
        """A budget without a recipe: ``Budget.of(space, 4e6)`` is at most 4M MACs."""
        return cls(BudgetConfig(metric, target, lut), space)

    @property
    def name(self) -> str:
        return self.metric.name

    def cost(self, arch: Arch) -> float:
        """The exact cost of ``arch`` in the metric's unit."""
        return self.metric.of(plan(self.space, arch))

    def fits(self, arch: Arch) -> bool:
        """Whether ``arch`` may be derived: no target, or a cost at most the target."""
        return self.target is None or self.cost(arch) <= self.target

    def describe(self, value: float) -> str:
        return self.metric.format(value)

    def record(self, arch: Arch) -> dict[str, Any]:
        """The costs a candidate record carries: MACs, parameters and the budget's metric."""
        counted = arch_cost(self.space, arch)
        record: dict[str, Any] = {"macs": counted.macs, "params": counted.params}
        record.setdefault(self.metric.record_key, self.cost(arch))
        return record
