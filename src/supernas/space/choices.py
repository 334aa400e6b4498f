"""Decisions: the categorical choices a strategy searches over, and arch sampling.

A *decision* is one categorical variable with named options, e.g. ``block3.kernel_size`` with
options ``(3, 5)``. Untied spaces have one decision per block and field plus ``block{i}.present``
for optional blocks; tied spaces (BigNAS) have one per stage and field plus ``stage{s}.depth``.
Every strategy parameterises these decisions; `arch_from_choices` turns one option per decision
into an `Arch`, and `choices_of` goes back.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from supernas.errors import ArchError
from supernas.space.arch import Arch, BlockArch, skipped_block, validate
from supernas.space.space import SearchSpace

BLOCK_FIELDS = (
    ("out_channels", "out_channels"),
    ("expansion", "expansions"),
    ("kernel_size", "kernel_sizes"),
    ("attention", "attentions"),
    ("activation", "activations"),
)


@dataclass(frozen=True)
class Decision:
    """One categorical choice; options are ordered from cheapest to most expensive."""

    name: str
    options: tuple[Any, ...]


def _ordered(options: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(sorted(options, key=_cost_order))


def _cost_order(option: Any) -> Any:
    # Activations cost nothing; keep their declared order by giving them equal keys.
    return 0 if isinstance(option, str) else option


def decisions(space: SearchSpace) -> list[Decision]:
    """All decisions of a space, in a fixed order (resolution, stem, blocks/stages, head)."""
    result = [
        Decision("resolution", _ordered(space.resolutions)),
        Decision("stem.out_channels", _ordered(space.stem.out_channels)),
    ]
    if space.tie_stages:
        for stage in space.stages:
            spec = space.blocks[stage[0]]
            prefix = f"stage{spec.stage}"
            result += [
                Decision(f"{prefix}.{f}", _ordered(getattr(spec, s))) for f, s in BLOCK_FIELDS
            ]
            required = sum(not space.blocks[i].optional for i in stage)
            result.append(Decision(f"{prefix}.depth", tuple(range(required, len(stage) + 1))))
    else:
        for index, spec in enumerate(space.blocks):
            prefix = f"block{index}"
            result += [
                Decision(f"{prefix}.{f}", _ordered(getattr(spec, s))) for f, s in BLOCK_FIELDS
            ]
            if spec.optional:
                result.append(Decision(f"{prefix}.present", (False, True)))
    result.append(Decision("head.hidden_channels", _ordered(space.head.hidden_channels)))
    return result


@dataclass(frozen=True)
class BlockDecisions:
    """Which decisions govern block ``index``: those named ``{prefix}.{field}``.

    In a tied space a stage's blocks share their decisions, the block at ``depth_index`` runs
    when ``{prefix}.depth`` exceeds it, and every block after the stage's first is *coupled*:
    its input width is the stage's own output width.
    """

    prefix: str
    depth_index: int | None  # position in its stage (tied spaces only)
    optional: bool

    @property
    def coupled(self) -> bool:
        return self.depth_index is not None and self.depth_index > 0


def block_decisions(space: SearchSpace, index: int) -> BlockDecisions:
    spec = space.blocks[index]
    if not space.tie_stages:
        return BlockDecisions(f"block{index}", None, spec.optional)
    stage = next(s for s in space.stages if index in s)
    return BlockDecisions(f"stage{spec.stage}", stage.index(index), spec.optional)


def arch_from_choices(space: SearchSpace, choices: Mapping[str, Any]) -> Arch:
    """Builds an Arch from one option per decision (see `decisions`)."""
    missing = [d.name for d in decisions(space) if d.name not in choices]
    if missing:
        raise ArchError(f"no option given for decision {missing[0]}")
    blocks = []
    for index, spec in enumerate(space.blocks):
        if space.tie_stages:
            stage = next(s for s in space.stages if index in s)
            prefix = f"stage{spec.stage}"
            present = stage.index(index) < choices[f"{prefix}.depth"]
        else:
            prefix = f"block{index}"
            present = choices.get(f"{prefix}.present", True)
        if present:
            blocks.append(BlockArch(*(choices[f"{prefix}.{f}"] for f, _ in BLOCK_FIELDS)))
        else:
            blocks.append(skipped_block(space, index))
    arch = Arch(
        space=space.name,
        fingerprint=space.fingerprint,
        resolution=choices["resolution"],
        stem_channels=choices["stem.out_channels"],
        head_channels=choices["head.hidden_channels"],
        blocks=tuple(blocks),
    )
    validate(space, arch)
    return arch


def choices_of(space: SearchSpace, arch: Arch) -> dict[str, Any]:
    """The option of every decision in ``arch`` (inverse of `arch_from_choices`)."""
    validate(space, arch)
    result: dict[str, Any] = {
        "resolution": arch.resolution,
        "stem.out_channels": arch.stem_channels,
        "head.hidden_channels": arch.head_channels,
    }
    if space.tie_stages:
        for stage in space.stages:
            prefix = f"stage{space.blocks[stage[0]].stage}"
            block = arch.blocks[stage[0]]
            result.update({f"{prefix}.{f}": getattr(block, f) for f, _ in BLOCK_FIELDS})
            result[f"{prefix}.depth"] = sum(arch.blocks[i].present for i in stage)
    else:
        for index, block in enumerate(arch.blocks):
            source = block if block.present else skipped_block(space, index)
            result.update({f"block{index}.{f}": getattr(source, f) for f, _ in BLOCK_FIELDS})
            if space.blocks[index].optional:
                result[f"block{index}.present"] = block.present
    return result


def sample(
    space: SearchSpace, rng: random.Random, probs: Mapping[str, Sequence[float]] | None = None
) -> Arch:
    """Draws an arch, uniformly per decision or from per-decision probabilities.

    ``probs`` maps decision names to weights over that decision's options (in `decisions` order);
    decisions it does not name are uniform.
    """
    chosen = {}
    for decision in decisions(space):
        weights = None if probs is None else probs.get(decision.name)
        if weights is not None and len(weights) != len(decision.options):
            raise ArchError(
                f"{decision.name}: {len(weights)} probabilities for {len(decision.options)} options"
            )
        chosen[decision.name] = rng.choices(decision.options, weights=weights)[0]
    return arch_from_choices(space, chosen)


def smallest(space: SearchSpace) -> Arch:
    """The cheapest child: the first (smallest) option of every decision, optional blocks off."""
    return arch_from_choices(space, {d.name: d.options[0] for d in decisions(space)})


def biggest(space: SearchSpace) -> Arch:
    """The most expensive child: the last option of every decision (activation: the first)."""
    chosen = {}
    for decision in decisions(space):
        pick = (
            decision.options[0] if decision.name.endswith(".activation") else decision.options[-1]
        )
        chosen[decision.name] = pick
    return arch_from_choices(space, chosen)


def count_archs(space: SearchSpace) -> int:
    """Number of distinct `Arch` values (skipped blocks collapse their other choices)."""
    per_decision = {d.name: len(d.options) for d in decisions(space)}
    total = per_decision["resolution"] * per_decision["stem.out_channels"]
    total *= per_decision["head.hidden_channels"]
    for unit in range(len(space.stages) if space.tie_stages else len(space.blocks)):
        if space.tie_stages:
            prefix = f"stage{space.blocks[space.stages[unit][0]].stage}"
        else:
            prefix = f"block{unit}"
        variants = math.prod(per_decision[f"{prefix}.{f}"] for f, _ in BLOCK_FIELDS)
        if space.tie_stages:
            total *= variants * per_decision[f"{prefix}.depth"]
        else:
            total *= variants + (1 if f"{prefix}.present" in per_decision else 0)
    return total
