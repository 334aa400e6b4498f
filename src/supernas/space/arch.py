"""`Arch`: one concrete choice for every dimension of a space, the type every strategy returns.

JSON is the canonical form (sorted keys, ``"format": 1``); `Arch.digest` hashes it. A skipped
block keeps only ``present: false`` in JSON, so two archs that build the same network have the same
JSON and digest. The short string form is for people (logs, tables, the CLI)::

    r28/s16/c24_e6_k3_a0_relu/skip/c32_e3_k5_a1_hswish/h256

``r`` resolution, ``s`` stem width, one group per block (``c`` out channels, ``e`` expansion,
``k`` kernel, ``a`` attention splits, then the activation) or ``skip``, ``h`` head width.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from supernas.errors import ArchError

if TYPE_CHECKING:
    from supernas.space.space import SearchSpace

FORMAT = 1


@dataclass(frozen=True)
class BlockArch:
    """The choice of one block; when ``present`` is False the block is the identity."""

    out_channels: int
    expansion: float
    kernel_size: int
    attention: int
    activation: str
    present: bool = True

    def to_dict(self) -> dict[str, Any]:
        if not self.present:
            return {"present": False}
        return {
            "out_channels": self.out_channels,
            "expansion": self.expansion,
            "kernel_size": self.kernel_size,
            "attention": self.attention,
            "activation": self.activation,
        }

    def token(self) -> str:
        if not self.present:
            return "skip"
        return (
            f"c{self.out_channels}_e{self.expansion:g}_k{self.kernel_size}"
            f"_a{self.attention}_{self.activation}"
        )


@dataclass(frozen=True)
class Arch:
    """A child architecture of the space named by ``space`` / ``fingerprint``."""

    space: str
    fingerprint: str
    resolution: int
    stem_channels: int
    head_channels: int
    blocks: tuple[BlockArch, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "space": self.space,
            "fingerprint": self.fingerprint,
            "resolution": self.resolution,
            "stem_channels": self.stem_channels,
            "head_channels": self.head_channels,
            "blocks": [b.to_dict() for b in self.blocks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=1)

    @property
    def digest(self) -> str:
        """sha256 of the canonical JSON; stable across processes (unlike ``hash``)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def __str__(self) -> str:
        groups = [f"r{self.resolution}", f"s{self.stem_channels}"]
        groups += [b.token() for b in self.blocks] + [f"h{self.head_channels}"]
        return "/".join(groups)

    @property
    def depth(self) -> int:
        return sum(b.present for b in self.blocks)


def skipped_block(space: SearchSpace, index: int) -> BlockArch:
    """The canonical value of a skipped block: its first options, ``present=False``."""
    spec = space.blocks[index]
    return BlockArch(
        out_channels=spec.out_channels[0],
        expansion=spec.expansions[0],
        kernel_size=spec.kernel_sizes[0],
        attention=spec.attentions[0],
        activation=spec.activations[0],
        present=False,
    )


def arch_from_dict(space: SearchSpace, data: Any) -> Arch:
    """Parses and validates JSON data; every problem is a one-line `ArchError`."""
    if not isinstance(data, dict):
        raise ArchError("arch JSON must be an object")
    if data.get("format") != FORMAT:
        raise ArchError(f"arch JSON format {data.get('format')!r} is not {FORMAT}")
    if data.get("space") != space.name or data.get("fingerprint") != space.fingerprint:
        raise ArchError(
            f"arch belongs to space {data.get('space')!r} ({data.get('fingerprint')}), "
            f"not {space.name!r} ({space.fingerprint})"
        )
    if not isinstance(data.get("blocks", []), list):
        raise ArchError(f"arch JSON: blocks must be a list, got {type(data['blocks']).__name__}")
    try:
        blocks = tuple(_block_from_dict(space, i, b) for i, b in enumerate(data["blocks"]))
        arch = Arch(
            space=data["space"],
            fingerprint=data["fingerprint"],
            resolution=data["resolution"],
            stem_channels=data["stem_channels"],
            head_channels=data["head_channels"],
            blocks=blocks,
        )
    except KeyError as error:
        raise ArchError(f"arch JSON lacks the key {error}") from None
    validate(space, arch)
    return arch


def _block_from_dict(space: SearchSpace, index: int, data: Any) -> BlockArch:
    if not isinstance(data, dict):
        raise ArchError(f"block {index}: expected an object, got {type(data).__name__}")
    if data.get("present", True) is False:
        if index >= len(space.blocks):
            raise ArchError(f"block {index}: the space has only {len(space.blocks)} blocks")
        return skipped_block(space, index)
    keys = {"out_channels", "expansion", "kernel_size", "attention", "activation"}
    unknown = set(data) - keys - {"present"}
    if unknown:
        raise ArchError(f"block {index}: unknown keys {sorted(unknown)}")
    missing = keys - set(data)
    if missing:
        raise ArchError(f"block {index}: missing keys {sorted(missing)}")
    return BlockArch(**{k: data[k] for k in keys})


def arch_from_json(space: SearchSpace, text: str) -> Arch:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ArchError(f"malformed arch JSON: {error}") from None
    except RecursionError:
        raise ArchError("malformed arch JSON: nested too deeply") from None
    return arch_from_dict(space, data)


_BLOCK_TOKEN = re.compile(r"c(\d+)_e(\d+(?:\.\d+)?)_k(\d+)_a(\d+)_([a-z0-9]+)")


def arch_from_string(space: SearchSpace, text: str) -> Arch:
    """Strict parser of the short string form (see the module docstring)."""
    groups = text.strip().split("/")
    if len(groups) != len(space.blocks) + 3:
        raise ArchError(
            f"arch string has {len(groups)} groups, space {space.name} needs "
            f"{len(space.blocks) + 3} (resolution, stem, blocks, head)"
        )
    resolution = _int_token(groups[0], "r")
    stem = _int_token(groups[1], "s")
    head = _int_token(groups[-1], "h")
    blocks = tuple(_parse_block(space, i, g) for i, g in enumerate(groups[2:-1]))
    arch = Arch(space.name, space.fingerprint, resolution, stem, head, blocks)
    validate(space, arch)
    return arch


def _int_token(token: str, letter: str) -> int:
    match = re.fullmatch(rf"{letter}(\d+)", token)
    if not match:
        raise ArchError(f"arch string: expected {letter}<int>, got {token!r}")
    return int(match.group(1))


def _parse_block(space: SearchSpace, index: int, token: str) -> BlockArch:
    if token == "skip":
        return skipped_block(space, index)
    match = _BLOCK_TOKEN.fullmatch(token)
    if not match:
        raise ArchError(
            f"block {index}: cannot parse {token!r}; expected c<int>_e<num>_k<int>_a<int>_<act>"
        )
    out, expansion, kernel, attention, activation = match.groups()
    expansion_value = float(expansion)
    if expansion_value.is_integer():
        expansion_value = int(expansion_value)
    return BlockArch(int(out), expansion_value, int(kernel), int(attention), activation)


def validate(space: SearchSpace, arch: Arch) -> None:
    """Raises a one-line `ArchError` naming the first value the space does not allow."""
    if arch.space != space.name or arch.fingerprint != space.fingerprint:
        raise ArchError(
            f"arch belongs to space {arch.space!r} ({arch.fingerprint}), "
            f"not {space.name!r} ({space.fingerprint})"
        )
    _check_value("resolution", arch.resolution, space.resolutions)
    _check_value("stem out_channels", arch.stem_channels, space.stem.out_channels)
    _check_value("head hidden_channels", arch.head_channels, space.head.hidden_channels)
    if len(arch.blocks) != len(space.blocks):
        raise ArchError(f"arch has {len(arch.blocks)} blocks, space has {len(space.blocks)}")
    for index, block in enumerate(arch.blocks):
        _validate_block(space, index, block)
    if space.tie_stages:
        _validate_ties(space, arch)


def _check_value(where: str, value: Any, allowed: tuple) -> None:
    # 16.0 == 16 and True == 1: an integer option takes only an int, or a float width would
    # reach the layers; a float option (an expansion) takes an int of its value too.
    def matches(option: Any) -> bool:
        if isinstance(option, float):
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        return type(value) is type(option)

    if not any(matches(option) and value == option for option in allowed):
        raise ArchError(f"{where} {value!r} not in {tuple(allowed)}")


def _validate_block(space: SearchSpace, index: int, block: BlockArch) -> None:
    spec = space.blocks[index]
    where = f"block {index} (stage {spec.stage}):"
    if not block.present:
        if not spec.optional:
            raise ArchError(f"{where} this block cannot be skipped")
        if block != skipped_block(space, index):
            raise ArchError(f"{where} a skipped block must hold its canonical value")
        return
    _check_value(f"{where} out_channels", block.out_channels, spec.out_channels)
    _check_value(f"{where} expansion", block.expansion, spec.expansions)
    _check_value(f"{where} kernel_size", block.kernel_size, spec.kernel_sizes)
    _check_value(f"{where} attention", block.attention, spec.attentions)
    _check_value(f"{where} activation", block.activation, spec.activations)


def _validate_ties(space: SearchSpace, arch: Arch) -> None:
    for stage in space.stages:
        first = arch.blocks[stage[0]]
        present = [arch.blocks[i].present for i in stage]
        if present != sorted(present, reverse=True):
            raise ArchError(f"stage {space.blocks[stage[0]].stage}: skipped blocks must end it")
        for index in stage:
            block = arch.blocks[index]
            if block.present and replace(block, present=True) != first:
                raise ArchError(f"block {index}: tie_stages needs the stage's first block values")
