"""The search-space language: spaces, presets, decisions and the `Arch` type."""

from supernas.space.arch import (
    Arch,
    BlockArch,
    arch_from_dict,
    arch_from_json,
    arch_from_string,
    validate,
)
from supernas.space.choices import (
    Decision,
    arch_from_choices,
    biggest,
    choices_of,
    count_archs,
    decisions,
    sample,
    smallest,
)
from supernas.space.plan import BlockPlan, NetPlan, plan
from supernas.space.presets import SPACES, get_space
from supernas.space.space import BlockSpec, HeadSpec, SearchSpace, StemSpec

__all__ = [
    "SPACES",
    "Arch",
    "BlockArch",
    "BlockPlan",
    "BlockSpec",
    "Decision",
    "HeadSpec",
    "NetPlan",
    "SearchSpace",
    "StemSpec",
    "arch_from_choices",
    "arch_from_dict",
    "arch_from_json",
    "arch_from_string",
    "biggest",
    "choices_of",
    "count_archs",
    "decisions",
    "get_space",
    "plan",
    "sample",
    "smallest",
    "validate",
]
