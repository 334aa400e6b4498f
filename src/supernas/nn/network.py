"""The forward pass shared by the supernet and the standalone model: stem, blocks, head."""

from __future__ import annotations

from torch import Tensor, nn

from supernas.space.plan import NetPlan


class Network(nn.Module):
    """Holds ``stem``, ``blocks`` (an `nn.Identity` for a block a child skips) and ``head``."""

    stem: nn.Module
    blocks: nn.ModuleList
    head: nn.Module

    def run(self, x: Tensor, net: NetPlan) -> Tensor:
        x = self.stem(x, net.stem_channels, net.stem_activation)
        for block, block_plan in zip(self.blocks, net.blocks, strict=True):
            if block_plan is not None:
                x = block(x, block_plan)
        return self.head(x, net.head_channels, net.head_activation)
