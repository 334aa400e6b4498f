"""Candidate paths of every block, and the binary-gated forward pass of ProxylessNAS.

A block's candidate ops are the product of its options (width x expansion x kernel x attention
x activation) plus the zero op (the skipped block) when the block is optional. Resolution, stem
and head width are held fixed during a ProxylessNAS search (the paper searches only the blocks).

Candidates of different output widths are summed exactly by zero-padding every block output to
the widest width any path can carry at that point (the supernet's input width of the next block):
the next block's 1x1 expand conv reads all input channels and a zero channel contributes nothing,
so with one-hot gates the padded network computes exactly the child. Zero channels still receive
a gradient through the expand conv, which is what makes ``<dL/dy, o_j>`` meaningful for a wider
candidate ``o_j``. A block without an expand conv (expansion 1) and the identity shortcut read
only the true input width, so those two see no gradient on padded channels.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from supernas.errors import ConfigError
from supernas.nn.supernet import RelaxedForward, Supernet, resize
from supernas.space.arch import Arch, BlockArch, skipped_block
from supernas.space.choices import biggest, smallest
from supernas.space.plan import block_plan, conv_out_size
from supernas.space.space import SearchSpace

Candidate = BlockArch | None  # None: the zero op (the block is skipped)

FIXED = ("biggest", "smallest")  # the resolution, stem and head every path runs at


def block_candidates(space: SearchSpace, index: int) -> list[Candidate]:
    """Every op block ``index`` can be, the zero op last."""
    spec = space.blocks[index]
    options = itertools.product(
        spec.out_channels, spec.expansions, spec.kernel_sizes, spec.attentions, spec.activations
    )
    ops: list[Candidate] = [BlockArch(*values) for values in options]
    return [*ops, None] if spec.optional else ops


@dataclass(frozen=True)
class Frame:
    """The fixed parts of a ProxylessNAS search and the per-block candidate lists."""

    space: SearchSpace
    resolution: int
    stem_channels: int
    head_channels: int
    candidates: tuple[tuple[Candidate, ...], ...]
    in_sizes: tuple[int, ...]  # spatial input size of each block
    carried: tuple[int, ...]  # padded width of each block's output

    @classmethod
    def of(cls, space: SearchSpace, fixed: str) -> Frame:
        if space.tie_stages:
            raise ConfigError(
                f"proxyless needs blocks that choose freely; space {space.name} ties its stages"
            )
        if fixed not in FIXED:
            raise ConfigError(f"fixed {fixed!r} is not biggest or smallest")
        base = biggest(space) if fixed == "biggest" else smallest(space)
        size = conv_out_size(base.resolution, space.stem.stride)
        sizes, carried, width = [], [], base.stem_channels
        for spec in space.blocks:
            sizes.append(size)
            size = conv_out_size(size, spec.stride)
            width = max(max(spec.out_channels), width if spec.optional else 0)
            carried.append(width)
        candidates = tuple(tuple(block_candidates(space, i)) for i in range(len(space.blocks)))
        return cls(
            space,
            base.resolution,
            base.stem_channels,
            base.head_channels,
            candidates,
            tuple(sizes),
            tuple(carried),
        )

    def arch(self, active: Sequence[int]) -> Arch:
        """The child that runs candidate ``active[i]`` in every block ``i``."""
        blocks = []
        for index, (options, pick) in enumerate(zip(self.candidates, active, strict=True)):
            choice = options[pick]
            blocks.append(skipped_block(self.space, index) if choice is None else choice)
        return Arch(
            space=self.space.name,
            fingerprint=self.space.fingerprint,
            resolution=self.resolution,
            stem_channels=self.stem_channels,
            head_channels=self.head_channels,
            blocks=tuple(blocks),
        )


def pad_channels(x: Tensor, width: int) -> Tensor:
    return x if x.size(1) == width else F.pad(x, (0, 0, 0, 0, 0, width - x.size(1)))


def run_candidate(
    supernet: Supernet, frame: Frame, index: int, x: Tensor, width: int, op: Candidate
) -> Tensor:
    """Block ``index`` as ``op`` on the padded input ``x`` whose true width is ``width``."""
    if op is None:
        return pad_channels(x, frame.carried[index])
    space, block = frame.space, supernet.blocks[index]
    plan = block_plan(space, space.blocks[index], op, width, frame.in_sizes[index])
    hidden = block.expanded(x, plan, None) if plan.expand else x[:, :width]
    splits = block.splits(hidden, plan, None, max(plan.attention, 1))
    out = block.projected(block.attend(splits, plan, None), plan, None)
    return pad_channels(out + block.shortcut_of(x[:, :width], plan), frame.carried[index])


class _GateGradient(torch.autograd.Function):
    """Passes the active op's output through; its backward gives every gate ``<dL/dy, o_j>``.

    BinaryConnect-style gate gradient (ProxylessNAS eq. 4 and the reference ``full_v2``): the
    other candidates are re-run on the block input under ``no_grad`` in backward, one at a time,
    so none of their activations is kept. They run outside autograd, so DDP's bookkeeping of
    used parameters sees only the active path.
    """

    @staticmethod
    def forward(ctx, output: Tensor, gates: Tensor, block_input: Tensor, others: list) -> Tensor:
        ctx.others = others
        ctx.gates = (gates.dtype, gates.device)  # the alphas may live apart from the supernet
        ctx.save_for_backward(block_input, output)
        return output.view_as(output)

    @staticmethod
    def backward(ctx, grad: Tensor):
        block_input, output = ctx.saved_tensors
        with torch.no_grad():
            gate_grads = [
                (grad * (output if run is None else run(block_input))).sum() for run in ctx.others
            ]
        dtype, device = ctx.gates
        return grad, torch.stack(gate_grads).to(device, dtype), None, None


@dataclass(frozen=True)
class BlockPath:
    """One block's binarized state for a step.

    ``members`` are the candidates that get a gate (all of them, two, or none); ``gates`` is
    their one-hot gate vector carrying the softmax's straight-through gradient, or None.
    """

    active: int
    members: tuple[int, ...] = ()
    gates: Tensor | None = None


def gated_forward(frame: Frame, paths: Sequence[BlockPath]) -> RelaxedForward:
    """The relaxed forward that runs ``paths``; pass it to the (DDP-wrapped) supernet."""
    space = frame.space

    def forward(supernet: Supernet, x: Tensor) -> Tensor:
        x = supernet.stem(resize(x, frame.resolution), frame.stem_channels, space.stem.activation)
        width = frame.stem_channels
        for index, path in enumerate(paths):
            options = frame.candidates[index]
            active = options[path.active]
            y = run_candidate(supernet, frame, index, x, width, active)
            if path.gates is not None:
                others = [
                    None if j == path.active else _runner(supernet, frame, index, width, options[j])
                    for j in path.members
                ]
                y = _GateGradient.apply(y, path.gates, x, others)
            width = width if active is None else active.out_channels
            x = y
        return supernet.head(x, frame.head_channels, space.head.activation)

    return forward


def _runner(
    supernet: Supernet, frame: Frame, index: int, width: int, op: Candidate
) -> Callable[[Tensor], Tensor]:
    return lambda x: run_candidate(supernet, frame, index, x, width, op)


def weighted_forward(frame: Frame, weights: Sequence[Tensor]) -> RelaxedForward:
    """The all-paths baseline (DARTS-style): every block outputs ``sum_j w_j o_j(x)``.

    Every candidate's activations are kept for backward; benchmarks and tests compare the
    binarized forward against it. Inputs are mixtures of widths, so every candidate reads the
    full padded width.
    """
    space = frame.space

    def forward(supernet: Supernet, x: Tensor) -> Tensor:
        x = supernet.stem(resize(x, frame.resolution), frame.stem_channels, space.stem.activation)
        for index, mix in enumerate(weights):
            outputs = [
                run_candidate(supernet, frame, index, x, x.size(1), op)
                for op in frame.candidates[index]
            ]
            x = sum(w * o for w, o in zip(mix, outputs, strict=True))
        return supernet.head(x, frame.head_channels, space.head.activation)

    return forward
