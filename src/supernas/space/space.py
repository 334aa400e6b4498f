"""The search-space language: stem, searchable blocks grouped in stages, head, resolutions.

A space is plain data (frozen dataclasses) that round-trips through YAML/JSON. Every searchable
block is an inverted-residual (MBConv) block whose output width, expansion ratio, kernel size,
attention, activation and presence (skip, for depth search) are choices. Which weights the
choices share is a property of the space, because the papers differ:

- ``kernel_sharing="crop"``: one depthwise kernel at the largest size; smaller kernels are its
  centre crop (BigNAS). ``"separate"``: one depthwise weight per kernel size (ProxylessNAS keeps
  separate candidate ops; FBNet keeps separate weights per block type).
- ``shortcut="identity"``: a residual only when stride is 1 and widths match (mobile-vision,
  ProxylessNAS). ``"always"``: every block has a shortcut, average pooling and a 1x1 conv when the
  shape changes (BigNAS/AttentiveNAS), so every block can start as the identity.
- ``tie_stages``: one value of each choice per stage and depth as "the first d blocks run"
  (BigNAS); otherwise every block chooses freely (FBNetV2, ProxylessNAS, FP-NAS).

Attention options are integers: 0 none, 1 Squeeze-Excite, r >= 2 Split-Attention with r splits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from supernas.config import load_yaml
from supernas.errors import SpaceError
from supernas.space.rounding import ROUNDING_RULES, round_width

ACTIVATIONS = ("relu", "relu6", "hswish", "swish")
KERNEL_SHARING = ("crop", "separate")
SHORTCUTS = ("identity", "always")


@dataclass(frozen=True)
class StemSpec:
    """The first conv (+BN+activation); its width may be a choice (BigNAS)."""

    out_channels: tuple[int, ...]
    kernel_size: int = 3
    stride: int = 2
    activation: str = "relu"


@dataclass(frozen=True)
class BlockSpec:
    """The options of one searchable MBConv block."""

    stage: int  # stages group blocks for display and for tie_stages
    stride: int  # stride of the depthwise conv, 1 or 2
    out_channels: tuple[int, ...]
    expansions: tuple[float, ...]  # hidden width = round(in_channels * expansion)
    kernel_sizes: tuple[int, ...]
    attentions: tuple[int, ...] = (0,)  # 0 none, 1 squeeze-excite, r>=2 split-attention
    activations: tuple[str, ...] = ("relu",)
    optional: bool = False  # True: the block may be skipped (identity), i.e. depth search


@dataclass(frozen=True)
class HeadSpec:
    """1x1 conv (+BN+act) to ``hidden_channels``, global pool, dropout, linear classifier."""

    hidden_channels: tuple[int, ...]
    activation: str = "relu"
    dropout: float = 0.0


@dataclass(frozen=True)
class SearchSpace:
    """A macro-architecture with choices; see the module docstring for the sharing fields."""

    name: str
    in_channels: int
    num_classes: int
    resolutions: tuple[int, ...]
    stem: StemSpec
    blocks: tuple[BlockSpec, ...]
    head: HeadSpec
    kernel_sharing: str = "crop"
    shortcut: str = "identity"
    tie_stages: bool = False
    width_rounding: str = "ofa"  # "ofa" (make_divisible) or "mobile_vision" (get_divisible_by)
    width_divisor: int = 8
    se_ratio: float = 0.25  # attention hidden width = round(hidden width * se_ratio)
    fit_data: bool = True  # a run sets in_channels and num_classes from its data; false pins them
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        _validate_space(self)

    @property
    def stages(self) -> list[list[int]]:
        """Block indices grouped by stage, in order."""
        grouped: dict[int, list[int]] = {}
        for index, block in enumerate(self.blocks):
            grouped.setdefault(block.stage, []).append(index)
        return list(grouped.values())

    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the space (description excluded), first 16 hex."""
        data = self.to_dict()
        data.pop("description")
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def mid_channels(self, in_channels: int, expansion: float) -> int:
        """Hidden width of a block; expansion 1 keeps the input width exactly."""
        if expansion == 1:
            return in_channels
        return round_width(in_channels * expansion, self.width_divisor, self.width_rounding)

    def attention_channels(self, mid_channels: int) -> int:
        """Hidden width of the squeeze-excite / split-attention bottleneck."""
        return round_width(mid_channels * self.se_ratio, self.width_divisor, self.width_rounding)

    def fitted(self, in_channels: int, num_classes: int) -> SearchSpace:
        """This space for images of ``in_channels`` in ``num_classes`` classes: a run's data
        decides the stem's input and the classifier's output unless the space pins them."""
        if not self.fit_data or (in_channels, num_classes) == (self.in_channels, self.num_classes):
            return self
        return dataclasses.replace(self, in_channels=in_channels, num_classes=num_classes)

    def to_dict(self) -> dict[str, Any]:
        data = _to_plain(dataclasses.asdict(self))
        if self.fit_data:  # the default stays out, so the fingerprints of spaces stay
            data.pop("fit_data")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        fields = _fields(cls, data, "space")
        blocks = fields["blocks"]
        _check(isinstance(blocks, tuple) and len(blocks) > 0, "space: blocks must be a list")
        _check(isinstance(fields["resolutions"], tuple), "space: resolutions must be a list")
        try:
            fields["stem"] = StemSpec(**_fields(StemSpec, fields["stem"], "space: stem"))
            fields["head"] = HeadSpec(**_fields(HeadSpec, fields["head"], "space: head"))
            fields["blocks"] = tuple(
                BlockSpec(**_attentions_by_name(_fields(BlockSpec, b, f"space: block {i}")))
                for i, b in enumerate(blocks)
            )
            return cls(**fields)
        except (TypeError, ValueError) as error:  # e.g. a nested list where a number belongs
            raise SpaceError(f"malformed space definition: {error}") from None

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        return cls.from_dict(load_yaml(path, "space file", SpaceError))


ATTENTION_NAMES = {0: "none", 1: "se"}  # r >= 2 is "splat<r>", split-attention over r splits


def attention_name(splits: int) -> str:
    return ATTENTION_NAMES.get(splits, f"splat{splits}")


def _attentions_by_name(block: dict[str, Any]) -> dict[str, Any]:
    """A block's attentions as `space show` prints them (none, se, splat2) or as integers."""
    if not isinstance(block.get("attentions"), tuple):
        return block  # validation names what is wrong with it
    by_name = {name: splits for splits, name in ATTENTION_NAMES.items()}
    options = []
    for option in block["attentions"]:
        if isinstance(option, str):
            splits = option.removeprefix("splat")
            is_splat = option.startswith("splat") and splits.isascii() and splits.isdigit()
            option = int(splits) if is_splat else by_name.get(option, option)
        options.append(option)
    return {**block, "attentions": tuple(options)}


def _fields(cls: type, data: Any, where: str) -> dict[str, Any]:
    """``data`` as keyword arguments of the dataclass ``cls`` (lists as tuples), or a one-line
    error naming the part of the space and the key that is unknown or missing."""
    _check(isinstance(data, dict), f"{where} must be a mapping, got {data!r}")
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    unknown = sorted(set(data) - known)
    if unknown:
        names = ", ".join(sorted(known))
        raise SpaceError(f"{where}: unknown field {unknown[0]!r} (known: {names})")
    missing = sorted(required - set(data))
    if missing:
        raise SpaceError(f"{where}: field {missing[0]!r} is missing")
    return {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in data.items()}


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SpaceError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_options(where: str, name: str, options: tuple, allowed=None, integer=True) -> None:
    """Options of a choice: a non-empty tuple without repeats, each in ``allowed`` or else a
    positive (by default integer) number."""
    _check(isinstance(options, tuple) and len(options) > 0, f"{where}: {name} has no options")
    _check(len(set(options)) == len(options), f"{where}: {name} has repeated options {options}")
    for option in options:
        if allowed is not None:
            _check(option in allowed, f"{where}: {name} {option!r} not in {allowed}")
            continue
        kind = "a positive integer" if integer else "a finite positive number"
        valid = _is_int(option) if integer else _is_number(option) and math.isfinite(option)
        _check(valid and option > 0, f"{where}: {name} {option!r} must be {kind}")


def _check_kernel(where: str, kernel: Any) -> None:
    """Odd: an even kernel's 'same' padding shifts the output, and its MACs differ from the
    cost model's."""
    _check(
        _is_int(kernel) and kernel > 0 and kernel % 2 == 1,
        f"{where}: kernel size {kernel!r} must be odd and positive",
    )


def _validate_block(index: int, block: BlockSpec) -> None:
    where = f"block {index} (stage {block.stage})"
    _check(
        _is_int(block.stride) and block.stride in (1, 2),
        f"{where}: stride {block.stride!r} not in (1, 2)",
    )
    _check_options(where, "out_channels", block.out_channels)
    _check_options(where, "expansions", block.expansions, integer=False)
    _check_options(where, "kernel_sizes", block.kernel_sizes)
    for k in block.kernel_sizes:
        _check_kernel(where, k)
    _check_options(where, "activations", block.activations, ACTIVATIONS)
    _check(len(block.attentions) > 0, f"{where}: attentions has no options")
    for splits in block.attentions:
        _check(
            _is_int(splits) and splits >= 0,
            f"{where}: attention {splits!r} must be none, se or splat<r> (r >= 2 splits), or "
            "its integer (0, 1, r)",
        )
    _check(
        not (block.optional and block.stride != 1),
        f"{where}: only a stride-1 block may be optional (skipping must keep the shape)",
    )


def _validate_tied_stages(space: SearchSpace) -> None:
    for stage in space.stages:
        first = space.blocks[stage[0]]
        _check(not first.optional, f"stage {first.stage}: the first block cannot be optional")
        seen_optional = False
        for index in stage:
            block = space.blocks[index]
            same = dataclasses.replace(block, stride=first.stride, optional=first.optional)
            _check(same == first, f"block {index}: tie_stages needs equal options in a stage")
            _check(
                block.optional or not seen_optional,
                f"block {index}: optional blocks must end a stage",
            )
            seen_optional |= block.optional


def _validate_space(space: SearchSpace) -> None:
    _check(bool(space.name), "space: name is empty")
    _check(
        _is_int(space.in_channels) and space.in_channels > 0,
        f"space: in_channels {space.in_channels!r} must be a positive integer",
    )
    _check(
        _is_int(space.num_classes) and space.num_classes > 1,
        f"space: num_classes {space.num_classes!r} must be an integer above 1",
    )
    _check(
        isinstance(space.fit_data, bool), f"space: fit_data {space.fit_data!r} is not true/false"
    )
    _check(
        _is_int(space.width_divisor) and space.width_divisor > 0,
        f"space: width_divisor {space.width_divisor!r} must be a positive integer",
    )
    _check(
        _is_number(space.se_ratio) and 0 < space.se_ratio <= 1,
        f"space: se_ratio {space.se_ratio!r} must be in (0, 1]",
    )
    _check(len(space.blocks) > 0, "space: no blocks")
    _check(space.kernel_sharing in KERNEL_SHARING, f"space: kernel_sharing not in {KERNEL_SHARING}")
    _check(space.shortcut in SHORTCUTS, f"space: shortcut {space.shortcut!r} not in {SHORTCUTS}")
    _check(
        space.width_rounding in ROUNDING_RULES, f"space: unknown rounding {space.width_rounding}"
    )
    _check_options("stem", "out_channels", space.stem.out_channels)
    stride = space.stem.stride
    _check(_is_int(stride) and stride in (1, 2), f"stem: stride {stride!r} not in (1, 2)")
    _check_kernel("stem", space.stem.kernel_size)
    _check(space.stem.activation in ACTIVATIONS, f"stem: activation not in {ACTIVATIONS}")
    _check_options("head", "hidden_channels", space.head.hidden_channels)
    _check(space.head.activation in ACTIVATIONS, f"head: activation not in {ACTIVATIONS}")
    dropout = space.head.dropout
    _check(_is_number(dropout) and 0 <= dropout < 1, f"head: dropout {dropout!r} not in [0, 1)")
    _check_options("space", "resolutions", space.resolutions)
    stages = [b.stage for b in space.blocks]
    _check(stages == sorted(stages), "space: blocks must be ordered by stage")
    for index, block in enumerate(space.blocks):
        _validate_block(index, block)
    if space.tie_stages:
        _validate_tied_stages(space)
    downsampling = space.stem.stride * math.prod(b.stride for b in space.blocks)
    for resolution in space.resolutions:
        _check(
            resolution >= downsampling,
            f"space: resolution {resolution} is below the total stride {downsampling}",
        )
