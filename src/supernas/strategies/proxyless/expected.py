"""Expected cost of the path distributions: latency from a table, MACs or parameters.

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
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from supernas.cost.latency import LatencyTable, block_key, head_key, stem_key
from supernas.cost.macs import block_cost, head_cost, stem_cost
from supernas.space.plan import BlockPlan, NetPlan, block_plan, plan
from supernas.strategies.proxyless.paths import Frame

UNITS = {"latency": "ms", "macs": "MACs", "params": "params"}


@dataclasses.dataclass(frozen=True)
class LayerCosts:
    """The cost of a stem, a block and a head, given their exact shapes."""

    stem: Callable[[NetPlan], float]
    block: Callable[[BlockPlan], float]
    head: Callable[[NetPlan], float]


def layer_costs(kind: str, table: LatencyTable | None = None) -> LayerCosts:
    """``kind``: "latency" (looks up ``table``, whose overhead is added to the stem), "macs" or
    "params"."""
    if kind == "latency":
        return LayerCosts(
            lambda net: table.lookup(stem_key(net)) + table.overhead_ms,
            lambda block: table.lookup(block_key(block)),
            lambda net: table.lookup(head_key(net)),
        )

    def pick(cost) -> float:
        return float(getattr(cost, kind))

    return LayerCosts(
        lambda net: pick(
            stem_cost(net.in_channels, net.stem_channels, net.stem_kernel_size, net.stem_size)
        ),
        lambda block: pick(block_cost(block)),
        lambda net: pick(
            head_cost(net.head_in_channels, net.head_channels, net.head_size, net.num_classes)
        ),
    )


class ExpectedPathCost:
    """``E[cost]`` of per-block candidate distributions ``q`` (see the module docstring)."""

    def __init__(self, frame: Frame, costs: LayerCosts, device: torch.device | str = "cpu") -> None:
        space = frame.space
        net = plan(space, frame.arch([0] * len(frame.candidates)))
        self.stem = costs.stem(net)
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
                        cost[c, j] = costs.block(block_plan(space, spec, op, width, size))
                    move[c, j, outs.index(width if op is None else op.out_channels)] = 1
            self.costs.append(cost.to(device))
            self.moves.append(move.to(device))
            widths = outs
        self.head = torch.tensor(
            [costs.head(dataclasses.replace(net, head_in_channels=w)) for w in widths],
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
