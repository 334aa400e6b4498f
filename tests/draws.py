"""Hypothesis strategies and small-size variants of the registered spaces."""

from __future__ import annotations

import dataclasses

from hypothesis import strategies as st

from supernas.space import SPACES, Arch, SearchSpace, arch_from_choices, decisions, get_space
from supernas.space.space import BlockSpec, HeadSpec, StemSpec

# Test-size resolution for the ImageNet presets (the cost and slicing logic do not depend on it).
SMALL_RESOLUTION = 32


def small_space(name: str) -> SearchSpace:
    """A preset capped at ``SMALL_RESOLUTION`` pixels and 10 classes so tests stay fast, or one
    of the `LANGUAGE_SPACES`."""
    if name in LANGUAGE_SPACES:
        return LANGUAGE_SPACES[name]
    space = get_space(name)
    if max(space.resolutions) <= SMALL_RESOLUTION:
        return space
    return dataclasses.replace(space, resolutions=(SMALL_RESOLUTION,), num_classes=10)


def examples(name: str) -> int:
    """Property-test draws for a space: 100 on the 28-32 px presets, 20 on the ImageNet ones,
    whose children stay ~10x larger even at the test resolution, 50 on a language space."""
    if name in LANGUAGE_SPACES:
        return 50
    return 100 if max(get_space(name).resolutions) <= SMALL_RESOLUTION else 20


@st.composite
def archs(draw: st.DrawFn, space: SearchSpace) -> Arch:
    """An arch with every decision drawn independently."""
    chosen = {d.name: draw(st.sampled_from(d.options)) for d in decisions(space)}
    return arch_from_choices(space, chosen)


def language_space(
    kernel_sharing: str = "crop", shortcut: str = "identity", tie_stages: bool = False
) -> SearchSpace:
    """A tiny space in which every option of the language appears at least once.

    The presets leave options unexercised (no preset mixes expansion 1 with other expansions,
    none has Split-Attention next to Squeeze-Excite at every activation), so equivalence tests
    run here too. Stage 1 is one block with stride 2; stage 2 has three blocks, the last two
    optional; two resolutions.
    """
    kinds = dict(
        expansions=(1, 3, 6),
        kernel_sizes=(3, 5),
        attentions=(0, 1, 2),
        activations=("relu", "relu6", "hswish", "swish"),
    )
    blocks = (
        BlockSpec(stage=1, stride=2, out_channels=(8, 16), **kinds),
        BlockSpec(stage=2, stride=1, out_channels=(16, 24), **kinds),
        BlockSpec(stage=2, stride=1, out_channels=(16, 24), optional=True, **kinds),
        BlockSpec(stage=2, stride=1, out_channels=(16, 24), optional=True, **kinds),
    )
    return SearchSpace(
        name=f"language_{kernel_sharing}_{shortcut}" + ("_tied" if tie_stages else ""),
        in_channels=2,
        num_classes=5,
        resolutions=(12, 16),
        # Stem and head fields vary across the four spaces: kernel 1, 3 or 5, stride 1 or 2,
        # dropout or none.
        stem=StemSpec(
            out_channels=(8, 16),
            kernel_size={"crop": 3, "separate": 5}[kernel_sharing] - 2 * tie_stages,
            stride=2 if tie_stages else 1,
            activation="hswish",
        ),
        blocks=blocks,
        head=HeadSpec(
            hidden_channels=(24, 32),
            activation="swish",
            dropout=0.1 if shortcut == "always" else 0.0,
        ),
        kernel_sharing=kernel_sharing,
        shortcut=shortcut,
        tie_stages=tie_stages,
    )


def contract_space(num_classes: int = 4) -> SearchSpace:
    """Free (untied) blocks with expansion 1 among others, SE, two activations, an optional
    block, two resolutions and searchable stem and head widths: a space every strategy
    searches (ProxylessNAS refuses tied stages) in seconds."""
    kinds = dict(
        expansions=(1, 3),
        kernel_sizes=(3, 5),
        attentions=(0, 1),
        activations=("relu", "hswish"),
    )
    return SearchSpace(
        name="contract",
        in_channels=1,
        num_classes=num_classes,
        resolutions=(8, 12),
        stem=StemSpec(out_channels=(8, 16), stride=1),
        blocks=(
            BlockSpec(stage=1, stride=2, out_channels=(8, 16), **kinds),
            BlockSpec(stage=2, stride=1, out_channels=(16,), **kinds),
            BlockSpec(stage=2, stride=1, out_channels=(16, 24), optional=True, **kinds),
        ),
        head=HeadSpec(hidden_channels=(16, 24)),
        kernel_sharing="separate",
    )


LANGUAGE_SPACES = {
    space.name: space
    for space in (
        language_space("crop", "identity"),
        language_space("separate", "identity"),
        language_space("crop", "always", tie_stages=True),
        language_space("separate", "always"),
    )
}

# Every space the property tests draw from: the presets and the language spaces.
SPACE_NAMES = [*SPACES.names(), *sorted(LANGUAGE_SPACES)]
