"""Exact multiply-accumulates (MACs) and parameters of an arch, from its `NetPlan`.

What is counted is what ``torch.utils.flop_counter.FlopCounterMode`` counts, divided by two:
convolutions and matrix products only. Pooling, BatchNorm, activations, the attention's
element-wise products and residual additions are not counted (mobile-vision counts the global
pool as well, so its totals are about 0.1-1% higher). The supernet's input resize is not part of
the child. Parameters count every weight, bias and BN affine parameter (not BN buffers).
"""

from __future__ import annotations

from dataclasses import dataclass

from supernas.space.arch import Arch
from supernas.space.choices import biggest, smallest
from supernas.space.plan import BlockPlan, NetPlan, plan
from supernas.space.space import SearchSpace


@dataclass(frozen=True)
class Cost:
    """MACs and parameter count of one child."""

    macs: int
    params: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.macs + other.macs, self.params + other.params)


ZERO = Cost(0, 0)


def conv_cost(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    out_size: int,
    groups: int = 1,
    bias: bool = False,
) -> Cost:
    """A conv's MACs (weights x output pixels) and parameters."""
    weights = in_channels // groups * out_channels * kernel_size * kernel_size
    return Cost(weights * out_size * out_size, weights + (out_channels if bias else 0))


def bn_cost(channels: int) -> Cost:
    return Cost(0, 2 * channels)


def block_cost(block: BlockPlan) -> Cost:
    """Exact cost of one MBConv block."""
    mid, size = block.mid_channels, block.out_size
    total = ZERO
    if block.expand:
        total += conv_cost(block.in_channels, mid, 1, block.in_size) + bn_cost(mid)
    splits = max(block.attention, 1)
    dw = conv_cost(mid, mid, block.kernel_size, size, groups=mid) + bn_cost(mid)
    total += Cost(dw.macs * splits, dw.params * splits)
    if block.attention:
        total += conv_cost(mid, block.attn_channels, 1, 1, bias=True)
        fc2 = conv_cost(block.attn_channels, mid, 1, 1, bias=True)
        total += Cost(fc2.macs * block.attention, fc2.params * block.attention)
    total += conv_cost(mid, block.out_channels, 1, size) + bn_cost(block.out_channels)
    if block.shortcut == "project" and block.in_channels != block.out_channels:
        total += conv_cost(block.in_channels, block.out_channels, 1, size)
    return total


def stem_cost(in_channels: int, out_channels: int, kernel_size: int, out_size: int) -> Cost:
    return conv_cost(in_channels, out_channels, kernel_size, out_size) + bn_cost(out_channels)


def head_cost(in_channels: int, hidden_channels: int, size: int, num_classes: int) -> Cost:
    """1x1 conv + BN at ``size``, then the linear classifier (pooling is not counted)."""
    conv = conv_cost(in_channels, hidden_channels, 1, size) + bn_cost(hidden_channels)
    return conv + Cost(hidden_channels * num_classes, (hidden_channels + 1) * num_classes)


def net_cost(net: NetPlan) -> Cost:
    """Exact cost of a whole child."""
    total = stem_cost(net.in_channels, net.stem_channels, net.stem_kernel_size, net.stem_size)
    for block in net.blocks:
        if block is not None:
            total += block_cost(block)
    return total + head_cost(
        net.head_in_channels, net.head_channels, net.head_size, net.num_classes
    )


def arch_cost(space: SearchSpace, arch: Arch) -> Cost:
    """MACs and parameters of ``arch``."""
    return net_cost(plan(space, arch))


def describe_cost_range(space: SearchSpace) -> str:
    """The MACs and parameters of the smallest and the biggest child, one line each."""
    small, big = arch_cost(space, smallest(space)), arch_cost(space, biggest(space))
    return "\n".join(
        [
            f"smallest child: {small.macs / 1e6:.2f}M MACs, {small.params / 1e6:.3f}M params",
            f"biggest child:  {big.macs / 1e6:.2f}M MACs, {big.params / 1e6:.3f}M params",
        ]
    )
