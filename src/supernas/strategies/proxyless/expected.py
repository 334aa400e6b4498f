"""Expected cost of the path distributions in the search's metric (`supernas.cost.metrics`).

ProxylessNAS (section 3.3, eq. 5) writes the expected latency of a mixed block as
``sum_j p_j F(o_j)`` and the network's as the sum over blocks. Its space fixes every block's
input shape; ours may search widths, so a block's cost also depends on the width it receives,
which is the previous non-skipped block's choice. We propagate the distribution of that width
(blocks are sampled independently), so ``E[cost] = stem + sum_i sum_{c,j} P(in_i = c) q_ij
F_i(c, j) + sum_c P(in_head = c) F_head(c)`` is the exact expectation, equal to the exact cost
of the child when every ``q_i`` is one-hot, and differentiable in every ``q_i``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor

from supernas.cost.metrics import Metric
from supernas.space.plan import block_plan, plan
from supernas.strategies.proxyless.paths import Frame


class ExpectedPathCost:
    """``E[cost]`` of per-block candidate distributions ``q`` (see the module docstring)."""

    def __init__(self, frame: Frame, metric: Metric, device: torch.device | str = "cpu") -> None:
        space = frame.space
        net = plan(space, frame.arch([0] * len(frame.candidates)))
        self.stem = metric.stem(net) + metric.overhead
        widths = [frame.stem_channels]
        self.costs: list[Tensor] = []  # [in width, candidate]
        self.moves: list[Tensor] = []  # [in width, candidate, out width]: 1 where j leads
        for index, options in enumerate(frame.candidates):
            spec, size = space.blocks[index], frame.in_sizes[index]
            outs = sorted(
                {w for w in widths if None in options} | {o.out_channels for o in options if o}
            )
            cost = torch.zeros(len(widths), len(options), dtype=torch.float64)
            move = torch.zeros(len(widths), len(options), len(outs), dtype=torch.float64)
            for c, width in enumerate(widths):
                for j, op in enumerate(options):
                    if op is not None:
                        cost[c, j] = metric.block(block_plan(space, spec, op, width, size))
                    move[c, j, outs.index(width if op is None else op.out_channels)] = 1
            self.costs.append(cost.to(device))
            self.moves.append(move.to(device))
            widths = outs
        self.head = torch.tensor(
            [metric.head(dataclasses.replace(net, head_in_channels=w)) for w in widths],
            dtype=torch.float64,
            device=device,
        )

    def __call__(self, q: Sequence[Tensor]) -> Tensor:
        width = torch.ones(1, dtype=torch.float64, device=self.head.device)
        total = torch.tensor(self.stem, dtype=torch.float64, device=self.head.device)
        for probs, cost, move in zip(q, self.costs, self.moves, strict=True):
            probs = probs.to(torch.float64)
            total = total + torch.einsum("c,j,cj->", width, probs, cost)
            width = torch.einsum("c,j,cjo->o", width, probs, move)
        return total + width @ self.head
