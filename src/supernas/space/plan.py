"""The concrete layer shapes of an arch: the single source that models and cost both read.

`plan(space, arch)` resolves every width (hidden widths from expansion ratios with the space's
rounding rule, attention widths, the input width each block really sees after skipped blocks),
every spatial size and every shortcut. The supernet runs a plan by slicing, the standalone
builder instantiates it, and the cost model sums its layer formulas, so the three cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from supernas.space.arch import Arch, BlockArch, validate
from supernas.space.space import BlockSpec, SearchSpace


def conv_out_size(size: int, stride: int) -> int:
    """Spatial output size of a conv with odd kernel k, padding k // 2 and the given stride."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class BlockPlan:
    """Exact shapes of one present MBConv block."""

    in_channels: int
    out_channels: int
    mid_channels: int  # hidden width; equals in_channels when there is no expand conv
    attn_channels: int  # bottleneck width of the attention; 0 without attention
    kernel_size: int
    stride: int
    attention: int  # 0 none, 1 squeeze-excite, r >= 2 split-attention with r splits
    activation: str
    expand: bool  # whether the 1x1 expand conv exists (expansion != 1)
    shortcut: (
        str  # "none", "identity" or "project" (avg-pool if strided, 1x1 conv if widths differ)
    )
    in_size: int
    out_size: int


@dataclass(frozen=True)
class NetPlan:
    """Exact shapes of a whole child network; ``blocks[i]`` is None for a skipped block."""

    in_channels: int
    resolution: int
    stem_channels: int
    stem_kernel_size: int
    stem_stride: int
    stem_activation: str
    stem_size: int  # spatial size after the stem
    blocks: tuple[BlockPlan | None, ...]
    head_in_channels: int
    head_channels: int
    head_activation: str
    head_size: int  # spatial size the head conv runs at
    num_classes: int
    dropout: float


def _shortcut(space: SearchSpace, in_channels: int, out_channels: int, stride: int) -> str:
    if stride == 1 and in_channels == out_channels:
        return "identity"
    return "project" if space.shortcut == "always" else "none"


def block_plan(
    space: SearchSpace, spec: BlockSpec, choice: BlockArch, in_channels: int, in_size: int
) -> BlockPlan:
    """Exact shapes of a present block given the width and size of its input."""
    mid = space.mid_channels(in_channels, choice.expansion)
    return BlockPlan(
        in_channels=in_channels,
        out_channels=choice.out_channels,
        mid_channels=mid,
        attn_channels=space.attention_channels(mid) if choice.attention else 0,
        kernel_size=choice.kernel_size,
        stride=spec.stride,
        attention=choice.attention,
        activation=choice.activation,
        expand=choice.expansion != 1,
        shortcut=_shortcut(space, in_channels, choice.out_channels, spec.stride),
        in_size=in_size,
        out_size=conv_out_size(in_size, spec.stride),
    )


def plan(space: SearchSpace, arch: Arch) -> NetPlan:
    """Resolves ``arch`` (validated against ``space``) into exact layer shapes."""
    validate(space, arch)
    size = conv_out_size(arch.resolution, space.stem.stride)
    stem_size = size
    channels = arch.stem_channels
    blocks: list[BlockPlan | None] = []
    for spec, choice in zip(space.blocks, arch.blocks, strict=True):
        if not choice.present:
            blocks.append(None)
            continue
        block = block_plan(space, spec, choice, channels, size)
        blocks.append(block)
        channels, size = block.out_channels, block.out_size
    return NetPlan(
        in_channels=space.in_channels,
        resolution=arch.resolution,
        stem_channels=arch.stem_channels,
        stem_kernel_size=space.stem.kernel_size,
        stem_stride=space.stem.stride,
        stem_activation=space.stem.activation,
        stem_size=stem_size,
        blocks=tuple(blocks),
        head_in_channels=channels,
        head_channels=arch.head_channels,
        head_activation=space.head.activation,
        head_size=size,
        num_classes=space.num_classes,
        dropout=space.head.dropout,
    )
