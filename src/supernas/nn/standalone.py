"""Plain models built from an `Arch`, and children cut out of a supernet."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from supernas.nn.blocks import Head, MBConv, Stem
from supernas.nn.elastic import slice_like
from supernas.nn.network import Network
from supernas.nn.supernet import Supernet
from supernas.space.arch import Arch
from supernas.space.plan import BlockPlan, NetPlan, plan
from supernas.space.space import SearchSpace


def build_block(block: BlockPlan, sharing: str) -> MBConv:
    """One MBConv at the exact size of ``block`` (also what latency tables time alone)."""
    return MBConv(
        in_channels=block.in_channels,
        out_channels=block.out_channels,
        mid_channels=block.mid_channels,
        attn_channels=block.attn_channels,
        kernel_sizes=(block.kernel_size,),
        stride=block.stride,
        max_splits=max(1, block.attention),
        attention=block.attention > 0,
        expand=block.expand,
        project_shortcut=block.shortcut == "project" and block.in_channels != block.out_channels,
        sharing=sharing,
    )


class StandaloneModel(Network):
    """One child as an ordinary ``nn.Module``: ``model(x)`` with ``x`` at the arch's resolution."""

    def __init__(self, net: NetPlan, sharing: str) -> None:
        super().__init__()
        self.net = net
        self.stem = Stem(net.in_channels, net.stem_channels, net.stem_kernel_size, net.stem_stride)
        self.blocks = nn.ModuleList(
            nn.Identity() if b is None else build_block(b, sharing) for b in net.blocks
        )
        self.head = Head(net.head_in_channels, net.head_channels, net.num_classes, net.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x, self.net)


def build_model(space: SearchSpace, arch: Arch) -> StandaloneModel:
    """A freshly initialised standalone model of ``arch`` (for training from scratch)."""
    return StandaloneModel(plan(space, arch), space.kernel_sharing)


@torch.no_grad()
def extract_child(supernet: Supernet, arch: Arch) -> StandaloneModel:
    """The standalone model of ``arch`` holding the supernet's sliced weights and BN statistics."""
    reference = next(supernet.parameters())
    with torch.device("meta"):  # every tensor is overwritten below: skip the initialisation
        model = build_model(supernet.space, arch)
    model = model.to_empty(device=reference.device).to(reference.dtype)
    source = supernet.state_dict()
    child_state = {
        name: slice_like(source[name], tensor.shape).clone()
        for name, tensor in model.state_dict().items()
    }
    model.load_state_dict(child_state)
    return model
