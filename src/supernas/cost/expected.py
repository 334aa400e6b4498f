"""Differentiable expected cost of a distribution over archs (effective shape propagation).

FBNetV2 propagates *effective* widths (the probability-weighted mean width) from layer to layer so
that the cost of a relaxed network is differentiable in the architecture parameters. We propagate
the whole marginal distribution of each block's input width instead of only its mean: since a
block's cost depends on its input width and on its own choices, which are independent of it, the
expectation of each block's cost is then exact, and so is the total (the sum of the blocks').
The mean of the propagated distribution is FBNetV2's effective width.

For every block we precompute, once, the exact cost (the metric's `Metric.block`, the same
price the exact cost sums) on the grid resolution x input width x output width x expansion x
kernel x attention x activation, and contract it with the probabilities. Hence the expected cost
equals the exact cost for one-hot probabilities by construction, and its gradient reaches every
decision that changes the cost. Where a block's cost does not depend on its activation (MACs,
parameters) that axis is dropped, and activation decisions get no gradient.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from supernas.cost.metrics import Metric
from supernas.errors import ArchError
from supernas.space.arch import Arch, BlockArch
from supernas.space.choices import block_decisions, choices_of, decisions, smallest
from supernas.space.plan import block_plan, conv_out_size, plan
from supernas.space.space import SearchSpace

_FIELDS = ("expansion", "kernel_size", "attention")


@dataclass
class _BlockTerm:
    prefix: str  # decision prefix: "block{i}" or "stage{s}"
    depth_mask: Tensor | None  # tied spaces: 1 for the depth options that run this block
    optional: bool
    coupled: bool  # tied non-first block: its input width is its own output width
    in_to_out: Tensor  # [n_in_support, n_out_support] one-hot map of a skipped block's width
    out_to_out: Tensor  # [n_out_options, n_out_support]
    grid: Tensor  # [n_res, n_in, n_out, n_e, n_k, n_a], then n_activation where it matters
    priced_activation: bool  # the grid has the activation axis


def _one_hot_map(source: list[int], target: list[int]) -> Tensor:
    """Maps a distribution over ``source`` widths onto ``target`` (absent widths map to 0)."""
    table = torch.zeros(len(source), len(target), dtype=torch.float64)
    for i, width in enumerate(source):
        if width in target:
            table[i, target.index(width)] = 1.0
    return table


class ExpectedCost:
    """``ExpectedCost(space, metric)(probs)``: the expected cost in ``metric`` (a scalar tensor,
    differentiable in ``probs``).

    ``probs`` maps every decision name (see `supernas.space.decisions`) to a probability vector
    over its options; activation decisions may be omitted where the metric does not price them.
    """

    def __init__(
        self, space: SearchSpace, metric: Metric, device: torch.device | str = "cpu"
    ) -> None:
        self.space = space
        self.metric = metric
        self.options = {d.name: d.options for d in decisions(space)}
        frame = plan(space, smallest(space))  # the fixed fields of the stem and head plans
        resolutions = self.options["resolution"]
        stem_widths = list(self.options["stem.out_channels"])
        sizes = [conv_out_size(r, space.stem.stride) for r in resolutions]
        self.stem_grid = self._grid(
            lambda r, s: metric.stem(
                dataclasses.replace(
                    frame, resolution=resolutions[r], stem_size=sizes[r], stem_channels=s
                )
            ),
            range(len(resolutions)),
            stem_widths,
        )
        self.blocks: list[_BlockTerm] = []
        support = stem_widths
        for index, spec in enumerate(space.blocks):
            term, support = self._block_term(index, spec, support, sizes)
            self.blocks.append(term)
            sizes = [conv_out_size(s, spec.stride) for s in sizes]
        self.head_support = support
        self.head_grid = self._grid(
            lambda r, c, h: metric.head(
                dataclasses.replace(frame, head_size=sizes[r], head_in_channels=c, head_channels=h)
            ),
            range(len(resolutions)),
            support,
            self.options["head.hidden_channels"],
        )
        self._move(torch.device(device))

    def _move(self, device: torch.device) -> None:
        """Puts the tables where the probabilities live, once, so no step copies them."""
        self.stem_grid, self.head_grid = self.stem_grid.to(device), self.head_grid.to(device)
        for term in self.blocks:
            for name in ("depth_mask", "in_to_out", "out_to_out", "grid"):
                value = getattr(term, name)
                if value is not None:
                    setattr(term, name, value.to(device))

    @staticmethod
    def _grid(cost_fn, *axes) -> Tensor:
        values = [float(cost_fn(*point)) for point in itertools.product(*axes)]
        return torch.tensor(values, dtype=torch.float64).reshape([len(a) for a in axes])

    def _block_term(self, index, spec, support, sizes) -> tuple[_BlockTerm, list[int]]:
        space = self.space
        governed = block_decisions(space, index)
        prefix, depth_index, coupled = governed.prefix, governed.depth_index, governed.coupled
        outs = list(self.options[f"{prefix}.out_channels"])
        in_support = outs if coupled else support
        out_support = sorted(set(outs) | (set(in_support) if spec.optional else set()))

        def cost(r, c, o, e, k, a, activation):
            choice = BlockArch(o, e, k, a, activation)
            return self.metric.block(block_plan(space, spec, choice, c, sizes[r]))

        grid = self._grid(
            cost,
            range(len(sizes)),
            in_support,
            outs,
            *(self.options[f"{prefix}.{f}"] for f in (*_FIELDS, "activation")),
        )
        priced_activation = not torch.equal(grid, grid[..., :1].expand_as(grid))
        if not priced_activation:
            grid = grid[..., 0]
        depth_mask = None
        if depth_index is not None:
            depths = self.options[f"{prefix}.depth"]
            depth_mask = torch.tensor([float(d > depth_index) for d in depths], dtype=torch.float64)
        term = _BlockTerm(
            prefix,
            depth_mask,
            spec.optional,
            coupled,
            _one_hot_map(in_support, out_support),
            _one_hot_map(outs, out_support),
            grid,
            priced_activation,
        )
        return term, out_support

    def __call__(self, probs: Mapping[str, Tensor]) -> Tensor:
        try:
            return self._expected(probs)
        except KeyError as error:
            raise ArchError(f"expected cost: no probabilities for decision {error}") from None

    def _expected(self, probs: Mapping[str, Tensor]) -> Tensor:
        priced = {f"{t.prefix}.activation" for t in self.blocks if t.priced_activation}
        p = {
            name: probs[name].to(torch.float64)
            for name in self.options
            if "activation" not in name or name in priced
        }
        res = p["resolution"]
        total = torch.einsum("rs,r,s->", self.stem_grid, res, p["stem.out_channels"])
        width = p["stem.out_channels"]
        for term in self.blocks:
            present = self._presence(term, p)
            out = p[f"{term.prefix}.out_channels"]
            joint = torch.diag(out) if term.coupled else torch.outer(width, out)
            fields = [p[f"{term.prefix}.{f}"] for f in _FIELDS]
            if term.priced_activation:
                fields.append(p[f"{term.prefix}.activation"])
                block = torch.einsum("rioekaz,r,io,e,k,a,z->", term.grid, res, joint, *fields)
            else:
                block = torch.einsum("rioeka,r,io,e,k,a->", term.grid, res, joint, *fields)
            total = total + present * block
            if term.coupled:
                width = out @ term.out_to_out
            else:
                width = present * (out @ term.out_to_out) + (1 - present) * (width @ term.in_to_out)
        head = torch.einsum("rih,r,i,h->", self.head_grid, res, width, p["head.hidden_channels"])
        return total + head + self.metric.overhead

    @staticmethod
    def _presence(term: _BlockTerm, p: Mapping[str, Tensor]) -> Tensor | float:
        if term.depth_mask is not None:
            return p[f"{term.prefix}.depth"] @ term.depth_mask
        if term.optional:
            return p[f"{term.prefix}.present"][1]
        return 1.0


def one_hot_probs(space: SearchSpace, arch: Arch) -> dict[str, Tensor]:
    """The one-hot distribution of ``arch`` over every decision."""
    chosen = choices_of(space, arch)
    result = {}
    for decision in decisions(space):
        vector = torch.zeros(len(decision.options), dtype=torch.float64)
        vector[decision.options.index(chosen[decision.name])] = 1.0
        result[decision.name] = vector
    return result
