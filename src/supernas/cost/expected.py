"""Differentiable expected cost of a distribution over archs (effective shape propagation).

FBNetV2 propagates *effective* widths (the probability-weighted mean width) from layer to layer so
that the cost of a relaxed network is differentiable in the architecture parameters. We propagate
the whole marginal distribution of each block's input width instead of only its mean: since a
block's cost depends on its input width and on its own choices, which are independent of it, the
expectation of each block's cost is then exact, and so is the total (the sum of the blocks').
The mean of the propagated distribution is FBNetV2's effective width.

For every block we precompute, once, the exact cost (`block_cost`, the same function the exact
model uses) on the grid resolution x input width x output width x expansion x kernel x attention,
and contract it with the probabilities. Hence the expected cost equals the exact cost for one-hot
probabilities by construction, and its gradient reaches every decision that changes the cost.
Activations cost no MACs, so their decisions get no gradient.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from supernas.cost.macs import block_cost, head_cost, stem_cost
from supernas.errors import ArchError
from supernas.space.arch import Arch, BlockArch
from supernas.space.choices import block_decisions, choices_of, decisions
from supernas.space.plan import block_plan, conv_out_size
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
    grid: Tensor  # [2 (macs, params), n_res, n_in, n_out, n_e, n_k, n_a]


def _one_hot_map(source: list[int], target: list[int]) -> Tensor:
    """Maps a distribution over ``source`` widths onto ``target`` (absent widths map to 0)."""
    table = torch.zeros(len(source), len(target), dtype=torch.float64)
    for i, width in enumerate(source):
        if width in target:
            table[i, target.index(width)] = 1.0
    return table


class ExpectedCost:
    """``ExpectedCost(space)(probs)`` gives expected (MACs, params) as differentiable tensors.

    ``probs`` maps every decision name (see `supernas.space.decisions`) to a probability vector
    over its options; activation decisions may be omitted.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.options = {d.name: d.options for d in decisions(space)}
        resolutions = self.options["resolution"]
        stem_widths = list(self.options["stem.out_channels"])
        sizes = [conv_out_size(r, space.stem.stride) for r in resolutions]
        self.stem_grid = self._grid(
            lambda r, s: stem_cost(space.in_channels, s, space.stem.kernel_size, sizes[r]),
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
            lambda r, c, h: head_cost(c, h, sizes[r], space.num_classes),
            range(len(resolutions)),
            support,
            self.options["head.hidden_channels"],
        )

    @staticmethod
    def _grid(cost_fn, *axes) -> Tensor:
        shape = [2, *(len(axis) for axis in axes)]
        values = [cost_fn(*point) for point in itertools.product(*axes)]
        flat = torch.tensor(
            [[v.macs for v in values], [v.params for v in values]], dtype=torch.float64
        )
        return flat.reshape(shape)

    def _block_term(self, index, spec, support, sizes) -> tuple[_BlockTerm, list[int]]:
        space = self.space
        governed = block_decisions(space, index)
        prefix, depth_index, coupled = governed.prefix, governed.depth_index, governed.coupled
        outs = list(self.options[f"{prefix}.out_channels"])
        in_support = outs if coupled else support
        out_support = sorted(set(outs) | (set(in_support) if spec.optional else set()))
        activation = spec.activations[0]

        def cost(r, c, o, e, k, a):
            choice = BlockArch(o, e, k, a, activation)
            return block_cost(block_plan(space, spec, choice, c, sizes[r]))

        grid = self._grid(
            cost,
            range(len(sizes)),
            in_support,
            outs,
            *(self.options[f"{prefix}.{f}"] for f in _FIELDS),
        )
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
        )
        return term, out_support

    def __call__(self, probs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        try:
            return self._expected(probs)
        except KeyError as error:
            raise ArchError(f"expected cost: no probabilities for decision {error}") from None

    def _expected(self, probs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        p = {
            name: probs[name].to(torch.float64) for name in self.options if "activation" not in name
        }
        res = p["resolution"]
        total = torch.einsum("xrs,r,s->x", self.stem_grid, res, p["stem.out_channels"])
        width = p["stem.out_channels"]
        for term in self.blocks:
            present = self._presence(term, p)
            out = p[f"{term.prefix}.out_channels"]
            joint = torch.diag(out) if term.coupled else torch.outer(width, out)
            fields = [p[f"{term.prefix}.{f}"] for f in _FIELDS]
            block = torch.einsum("xrioeka,r,io,e,k,a->x", term.grid, res, joint, *fields)
            total = total + present * block
            if term.coupled:
                width = out @ term.out_to_out
            else:
                width = present * (out @ term.out_to_out) + (1 - present) * (width @ term.in_to_out)
        head = torch.einsum("xrih,r,i,h->x", self.head_grid, res, width, p["head.hidden_channels"])
        total = total + head
        return total[0], total[1]

    @staticmethod
    def _presence(term: _BlockTerm, p: Mapping[str, Tensor]) -> Tensor:
        if term.depth_mask is not None:
            return p[f"{term.prefix}.depth"] @ term.depth_mask
        if term.optional:
            return p[f"{term.prefix}.present"][1]
        return torch.tensor(1.0, dtype=torch.float64)


def one_hot_probs(space: SearchSpace, arch: Arch) -> dict[str, Tensor]:
    """The one-hot distribution of ``arch`` over every decision."""
    chosen = choices_of(space, arch)
    result = {}
    for decision in decisions(space):
        vector = torch.zeros(len(decision.options), dtype=torch.float64)
        vector[decision.options.index(chosen[decision.name])] = 1.0
        result[decision.name] = vector
    return result
