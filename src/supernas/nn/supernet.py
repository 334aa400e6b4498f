"""The weight-sharing supernet: every block at the largest size any child of the space needs."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from supernas.nn.blocks import Head, MBConv, Stem
from supernas.nn.network import Network
from supernas.space.arch import Arch
from supernas.space.plan import NetPlan, plan
from supernas.space.space import BlockSpec, SearchSpace


def resize(x: Tensor, resolution: int) -> Tensor:
    """Resizes a batch to a child's resolution the way the data pipeline does (antialiased)."""
    if x.size(-1) == resolution and x.size(-2) == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True)


def _block_bounds(space: SearchSpace, spec: BlockSpec, widths: set[int]) -> MBConv:
    """An MBConv sized for every input width in ``widths`` and every option of ``spec``."""
    mids = {c if e == 1 else space.mid_channels(c, e) for c in widths for e in spec.expansions}
    attention = max(spec.attentions) > 0
    changes_shape = spec.stride > 1 or any(c != o for c in widths for o in spec.out_channels)
    return MBConv(
        in_channels=max(widths),
        out_channels=max(spec.out_channels),
        mid_channels=max(mids),
        attn_channels=max(space.attention_channels(m) for m in mids) if attention else 0,
        kernel_sizes=spec.kernel_sizes,
        stride=spec.stride,
        max_splits=max(1, max(spec.attentions)),
        attention=attention,
        expand=any(e != 1 for e in spec.expansions),
        project_shortcut=space.shortcut == "always" and changes_shape,
        sharing=space.kernel_sharing,
    )


RelaxedForward = Callable[["Supernet", Tensor], Tensor]


class Supernet(Network):
    """Runs any `Arch` of its space by slicing the shared weights.

    ``supernet(x, arch)`` resizes ``x`` to the arch's resolution, then runs the child. The
    strategies decide which arch (or relaxed form) runs each step; the supernet keeps no state
    about the current child.

    A relaxed form (masks, gates, weighted sums of candidates) is passed as a callable
    ``forward(supernet, x)`` in place of the arch: going through ``forward`` keeps the call
    inside DDP's hooks, so the shared weights' gradients are all-reduced whatever the method.
    """

    memory_format = torch.contiguous_format  # of every input; see `use_channels_last`

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        stem = space.stem
        self.stem = Stem(space.in_channels, max(stem.out_channels), stem.kernel_size, stem.stride)
        widths = set(stem.out_channels)
        blocks = []
        for spec in space.blocks:
            blocks.append(_block_bounds(space, spec, widths))
            widths = set(spec.out_channels) | (widths if spec.optional else set())
        self.blocks = nn.ModuleList(blocks)
        head = space.head
        self.head = Head(max(widths), max(head.hidden_channels), space.num_classes, head.dropout)

    def use_channels_last(self) -> Supernet:
        """Weights and every input in channels-last (NHWC): depthwise and 1x1 convolutions and
        BatchNorm run 1.4-1.8x faster so on CPUs as on GPUs (`benchmarks/roofline.py`)."""
        self.memory_format = torch.channels_last
        return self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor, arch: Arch | NetPlan | RelaxedForward) -> Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        if callable(arch):
            return arch(self, x)
        net = arch if isinstance(arch, NetPlan) else plan(self.space, arch)
        return self.run(resize(x, net.resolution), net)
