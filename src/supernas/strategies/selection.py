"""Coarse-to-fine selection of children of a trained supernet under cost budgets (BigNAS).

Children are used as sliced, so choosing one is a search over the space with a cheap, honest
score: the child's top-1 on the arch split after its BatchNorm statistics are recomputed
(`evaluation.evaluate_child`). Two stages, as in BigNAS:

1. **Coarse**: a grid of network-level settings. Each point applies one *level* (a fraction of
   the option range) to every decision of a kind: resolution (every option), widths (stem, stage
   outputs, head), depth, kernel size and expansion. Attention takes its largest option and
   activation its first, as in `biggest`. The best grid point under each budget is the start.
2. **Fine**: a hill climb of single-decision mutations (one width, depth, kernel or expansion
   one option up or down; resolution one step), keeping a mutant when it is within the budget
   and scores better.

Every scored child is kept as a candidate (for the accuracy-vs-MACs plot); scores are cached
by arch, so budgets share the grid's evaluations. The evaluator is a callable, so this module
needs no data and tests can drive it with a fake score.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from supernas.config import check_ranges
from supernas.cost.budget import Budget
from supernas.errors import BudgetError, ConfigError
from supernas.rng import derive_seed
from supernas.space.arch import Arch
from supernas.space.choices import Decision, arch_from_choices, choices_of, decisions, smallest
from supernas.space.space import SearchSpace


@dataclass
class SelectConfig:
    """Grid density of the coarse stage and length of the fine stage."""

    width_levels: int = 3
    depth_levels: int = 3
    kernel_levels: int = 2
    expansion_levels: int = 2
    mutations: int = 20  # fine-stage mutants scored per budget
    seed: int = 0

    def __post_init__(self) -> None:
        check_ranges(
            "search.options.selection",
            self,
            positive=("width_levels", "depth_levels", "kernel_levels", "expansion_levels"),
            non_negative=("mutations", "seed"),
        )


_KINDS = (
    ("width", (".out_channels", "head.hidden_channels")),
    ("depth", (".depth", ".present")),
    ("kernel", (".kernel_size",)),
    ("expansion", (".expansion",)),
)


def _kind(decision: Decision) -> str:
    if decision.name == "resolution":
        return "resolution"
    for kind, suffixes in _KINDS:
        if decision.name.endswith(suffixes):
            return kind
    return "fixed"  # attention and activation


def _at_level(options: tuple[Any, ...], level: float) -> Any:
    return options[int(level * (len(options) - 1) + 0.5)]


def _levels(count: int) -> list[float]:
    return [1.0] if count <= 1 else [i / (count - 1) for i in range(count)]


def coarse_grid(space: SearchSpace, config: SelectConfig) -> list[Arch]:
    """Distinct archs of the grid resolution x width x depth x kernel x expansion levels."""
    all_decisions = decisions(space)
    axes = {
        "resolution": _levels(len(space.resolutions)),
        "width": _levels(config.width_levels),
        "depth": _levels(config.depth_levels),
        "kernel": _levels(config.kernel_levels),
        "expansion": _levels(config.expansion_levels),
    }
    grid: dict[str, Arch] = {}
    for point in itertools.product(*axes.values()):
        level = dict(zip(axes, point, strict=True))
        chosen = {}
        for decision in all_decisions:
            kind = _kind(decision)
            if kind == "fixed":
                last = not decision.name.endswith(".activation")
                chosen[decision.name] = decision.options[-1 if last else 0]
            else:
                chosen[decision.name] = _at_level(decision.options, level[kind])
        arch = arch_from_choices(space, chosen)
        grid.setdefault(arch.digest, arch)
    return list(grid.values())


def mutate(space: SearchSpace, arch: Arch, rng: random.Random) -> Arch:
    """``arch`` with one searchable decision moved one option up or down."""
    movable = [d for d in decisions(space) if len(d.options) > 1 and _kind(d) != "fixed"]
    if not movable:
        return arch
    chosen = choices_of(space, arch)
    decision = rng.choice(movable)
    index = decision.options.index(chosen[decision.name])
    step = (
        rng.choice((-1, 1)) if 0 < index < len(decision.options) - 1 else (1 if index == 0 else -1)
    )
    chosen[decision.name] = decision.options[index + step]
    return arch_from_choices(space, chosen)


def parse_budgets(text: str) -> list[float]:
    """``"5M,10M,2.5e7"`` -> numbers in the run's budget metric (MACs, params or ms);
    suffixes K, M, G (case-insensitive)."""
    scale = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
    budgets = []
    for item in text.split(","):
        match = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([kKmMgG]?)\s*", item)
        try:
            value = float(match.group(1)) * scale[match.group(2).lower()] if match else None
        except ValueError:
            value = None
        if value is None or not 0 < value < math.inf:
            raise ConfigError(f"budget {item.strip()!r} is not a positive number like 5M or 1.8")
        if value in budgets:
            raise ConfigError(f"budget {item.strip()!r} is given twice")
        budgets.append(value)
    return budgets


@dataclass
class Selection:
    """The chosen candidate per budget and every candidate scored on the way."""

    chosen: dict[float, dict[str, Any]]  # target -> candidate record
    candidates: list[dict[str, Any]]  # {"arch", "macs", "params", ..., "arch_top1", "stage"}
    archs: dict[str, Arch]  # str(arch) -> Arch, for every candidate


def check_targets(space: SearchSpace, budget: Budget, targets: Sequence[float]) -> None:
    """Refuses a target below the smallest child's cost, where selection starts.

    Raises:
        BudgetError: a target is below the smallest child's cost.
    """
    floor = budget.cost(smallest(space))
    for target in targets:
        if target < floor:
            raise BudgetError(
                f"budget {budget.describe(target)} is below the smallest child of {space.name} "
                f"({budget.describe(floor)})"
            )


def select_children(
    space: SearchSpace,
    score: Callable[[Arch], float],
    budget: Budget,
    targets: Sequence[float],
    config: SelectConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> Selection:
    """Coarse-to-fine selection of one child per target of ``budget``'s metric (see the module
    docstring); ``budget``'s own target is not used.

    Raises:
        BudgetError: a target is below the smallest child's cost.
    """
    config = config or SelectConfig()
    check_targets(space, budget, targets)
    records: dict[str, dict[str, Any]] = {}
    archs: dict[str, Arch] = {}
    costs: dict[str, float] = {}

    def cost(arch: Arch) -> float:
        key = str(arch)
        if key not in costs:
            costs[key] = budget.cost(arch)
        return costs[key]

    def scored(arch: Arch, stage: str) -> dict[str, Any]:
        key = str(arch)
        if key not in records:
            records[key] = {
                "arch": key,
                **budget.record(arch),
                "arch_top1": score(arch),
                "stage": stage,
            }
            archs[key] = arch
            if progress is not None:
                progress(key)
        return records[key]

    def fitting(target: float) -> list[dict[str, Any]]:
        return [r for r in records.values() if cost(archs[r["arch"]]) <= target]

    grid = [a for a in coarse_grid(space, config) if cost(a) <= max(targets)]
    for arch in grid:
        scored(arch, "coarse")
    for index, target in enumerate(targets):
        fits = fitting(target)
        best = max(fits, key=_top1) if fits else scored(smallest(space), "coarse")
        rng = random.Random(derive_seed(config.seed, f"select/{index}"))
        tried = 0
        for _ in range(config.mutations * 50):  # bounded: most mutants may be over budget
            if tried == config.mutations:
                break
            mutant = mutate(space, archs[best["arch"]], rng)
            if cost(mutant) > target or str(mutant) in records:
                continue
            tried += 1
            record = scored(mutant, "fine")
            if record["arch_top1"] > best["arch_top1"]:
                best = record
    # Every child scored is known: a mutant of a larger budget may also be the best of a
    # smaller one.
    chosen = {target: max(fitting(target), key=_top1) for target in targets}
    return Selection(chosen, list(records.values()), archs)


def _top1(record: dict[str, Any]) -> float:
    return record["arch_top1"]
