"""Hypothesis strategies and small-size variants of the registered spaces."""

from __future__ import annotations

import dataclasses

from hypothesis import strategies as st

from supernas.space import Arch, SearchSpace, arch_from_choices, decisions, get_space

# Test-size resolution for the ImageNet presets (the cost and slicing logic do not depend on it).
SMALL_RESOLUTION = 32


def small_space(name: str) -> SearchSpace:
    """A preset capped at ``SMALL_RESOLUTION`` pixels and 10 classes so tests stay fast."""
    space = get_space(name)
    if max(space.resolutions) <= SMALL_RESOLUTION:
        return space
    return dataclasses.replace(space, resolutions=(SMALL_RESOLUTION,), num_classes=10)


def examples(name: str) -> int:
    """Property-test draws for a preset: 100 on the 28-32 px spaces, 20 on the ImageNet ones,
    whose children stay ~10x larger even at the test resolution."""
    return 100 if max(get_space(name).resolutions) <= SMALL_RESOLUTION else 20


@st.composite
def archs(draw: st.DrawFn, space: SearchSpace) -> Arch:
    """An arch with every decision drawn independently."""
    chosen = {d.name: draw(st.sampled_from(d.options)) for d in decisions(space)}
    return arch_from_choices(space, chosen)
