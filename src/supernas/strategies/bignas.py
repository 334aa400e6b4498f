"""BigNAS (Yu et al., ECCV 2020): one single-stage supernet, children deployed without retraining.

Training, one weight-split batch per step, gradients accumulated over the children and **one**
optimizer step (the sandwich rule):

1. the biggest child learns from the labels (label-smoothed cross-entropy), with the space's
   dropout and the weight decay, as an explicit L2 term on its loss only;
2. ``num_random`` uniformly drawn children, then the smallest child, learn from the biggest
   child's detached soft predictions (KL divergence, temperature 1: in-place distillation),
   with dropout off.

The children of a step are drawn from an RNG seeded by the run seed and the step, so every rank
under ``torchrun`` trains the same children and a resumed run draws what an uninterrupted one
would. At strategy start the last BN gamma of every block that has a shortcut in every child is
zeroed, so such blocks start as their shortcut (the identity when shapes match). The LR
schedule is the recipe's ``search.schedule: exp_constant_end``.

Weight decay (``weight_decay_in_loss``): the search's decay enters the biggest child's loss as
``0.5 * wd * sum(w ** 2)`` over the conv and linear weights that the biggest child uses, and the
search task builds the optimizer without decay, so decay acts once per step whatever the number
of children.

Derivation: the coarse-to-fine selection (`selection.py`) under ``search.budget``, each
candidate scored on the arch split with recalibrated BN; without a budget, the biggest child.
The derived child is deployed as sliced (`deploy`: BN recalibrated, no training).

``clip_grad_norm`` clips the norm of the sandwich's summed gradient before its step (off by
default; AttentiveNAS clips each value at 1.0 instead).

Simplifications against the paper: no drop-connect (the blocks have none), no clipping by value,
plain BN (not synchronised across ranks), and SGD rather than RMSProp (the search optimizer is
the project's).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from supernas.config import check_ranges
from supernas.nn.bn import recalibrate_bn
from supernas.nn.standalone import StandaloneModel, extract_child
from supernas.nn.supernet import Supernet, resize
from supernas.rng import derive_seed
from supernas.space.arch import Arch
from supernas.space.choices import biggest, sample, smallest
from supernas.space.space import SearchSpace
from supernas.strategies.base import OPTIONS, STRATEGIES, Batch, Strategy, accumulating
from supernas.strategies.evaluation import evaluate_child
from supernas.strategies.selection import SelectConfig, select_children


def residual_blocks(space: SearchSpace) -> list[int]:
    """Indices of the blocks that have a shortcut in every child of ``space``.

    Only those may start with a zero last gamma: a child without the shortcut would see the
    block output a constant.
    """
    if space.shortcut == "always":
        return list(range(len(space.blocks)))
    firsts = {stage[0] for stage in space.stages}
    result, widths = [], set(space.stem.out_channels)
    for index, spec in enumerate(space.blocks):
        coupled = space.tie_stages and index not in firsts  # input = its stage's own width
        same = coupled or (len(widths) == 1 and widths == set(spec.out_channels))
        if spec.stride == 1 and same:
            result.append(index)
        widths = set(spec.out_channels) | (widths if spec.optional else set())
    return result


@torch.no_grad()
def zero_init_residual_gamma(supernet: Supernet) -> list[int]:
    """Zeroes the project-BN gamma of every `residual_blocks` block; returns their indices."""
    indices = residual_blocks(supernet.space)
    for index in indices:
        supernet.blocks[index].project.bn.weight.zero_()
    return indices


def distillation_loss(student_logits: Tensor, teacher_probs: Tensor) -> Tensor:
    """KL(teacher || student) per sample, averaged; the teacher must come in detached."""
    return F.kl_div(F.log_softmax(student_logits, 1), teacher_probs, reduction="batchmean")


def sandwich(space: SearchSpace, rng: random.Random, num_random: int) -> list[Arch]:
    """Biggest, ``num_random`` uniform draws, smallest: the children of one step, in order."""
    return [biggest(space), *(sample(space, rng) for _ in range(num_random)), smallest(space)]


@STRATEGIES.register("bignas")
class BigNAS(Strategy):
    name = "bignas"
    retrains = False
    weight_decay_in_loss = True

    @dataclass
    class Config:
        num_random: int = 2  # random children per step besides the biggest and the smallest
        label_smoothing: float = 0.1  # on the biggest child's label loss
        zero_init_gamma: bool = True
        calibration_batches: int = 8  # training batches to recompute a child's BN
        clip_grad_norm: float | None = None  # max norm of the sandwich's summed gradient
        selection: SelectConfig = field(default_factory=SelectConfig)

        def __post_init__(self) -> None:
            check_ranges(
                OPTIONS,
                self,
                positive=("calibration_batches", "clip_grad_norm"),
                non_negative=("num_random",),
                fraction=("label_smoothing",),
            )

    def __init__(self, supernet, config, context) -> None:
        super().__init__(supernet, config, context)
        if config.zero_init_gamma:
            zero_init_residual_gamma(supernet)
        self._dropouts = [(m, m.p) for m in supernet.modules() if isinstance(m, nn.Dropout)]
        used = _params_used_by(supernet, biggest(self.space), context.device)
        self._decayed = [
            p for p in supernet.parameters() if p.requires_grad and p.dim() > 1 and id(p) in used
        ]

    def children(self, step: int) -> list[Arch]:
        """The sandwich of ``step``: a function of the run seed and the step only."""
        rng = random.Random(derive_seed(self.context.seed, f"sandwich/{step}"))
        return sandwich(self.space, rng, self.config.num_random)

    def _set_dropout(self, on: bool) -> None:
        for module, p in self._dropouts:
            module.p = p if on else 0.0

    def l2_penalty(self) -> Tensor:
        """``0.5 * wd * ||w||^2`` over the conv and linear weights the biggest child uses."""
        squares = sum(
            (p.pow(2).sum() for p in self._decayed), torch.zeros((), device=self.context.device)
        )
        return 0.5 * self.context.weight_decay * squares

    def step(self, batch: Batch, step: int) -> dict[str, float | Tensor]:
        images, labels = (t.to(self.context.device) for t in batch)
        model, optimizer = self.context.model, self.context.weight_optimizer
        teacher, *students, last = self.children(step)
        optimizer.zero_grad(set_to_none=True)
        self._set_dropout(True)
        # One gradient all-reduce per sandwich: the children's gradients add up on each rank
        # and the last child's backward averages the sum over ranks.
        with accumulating(model):
            logits = model(images, teacher)
            ce = F.cross_entropy(logits, labels, label_smoothing=self.config.label_smoothing)
            (ce + self.l2_penalty()).backward()
        soft = F.softmax(logits.detach(), 1)
        self._set_dropout(False)
        try:
            with accumulating(model):
                kl = [self._distil(images, soft, arch) for arch in students]
            kl.append(self._distil(images, soft, last))
        finally:
            self._set_dropout(True)
        if self.config.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.supernet.parameters(), self.config.clip_grad_norm)
        optimizer.step()
        return {
            "train/loss": ce.detach(),
            "train/kl_mean": sum(kl) / len(kl),
            "train/kl_smallest": kl[-1],
        }

    def _distil(self, images: Tensor, soft: Tensor, arch: Arch) -> Tensor:
        loss = distillation_loss(self.context.model(images, arch), soft)
        loss.backward()
        return loss.detach()

    def derive(self) -> Arch:
        budget = self.context.budget
        if budget.target is None:
            return biggest(self.space)
        context = self.context
        calibration = list(
            itertools.islice(context.calibration_batches(), self.config.calibration_batches)
        )
        batches = list(context.arch_batches())

        def score(arch: Arch) -> float:
            return evaluate_child(self.supernet, arch, calibration, batches, context.device)

        target = budget.target
        found = select_children(self.space, score, budget, [target], self.config.selection)
        self.candidates = found.candidates
        return found.archs[found.chosen[target]["arch"]]

    @classmethod
    def selection(cls, config: Config) -> tuple[SelectConfig, int]:
        return config.selection, config.calibration_batches

    @classmethod
    def deploy(
        cls, supernet: Supernet, arch: Arch, config: Config, calibration: Iterable, device
    ) -> StandaloneModel:
        """``arch`` sliced out of ``supernet`` with BN recalibrated: the model BigNAS ships."""
        return sliced_child(
            supernet, arch, itertools.islice(calibration, config.calibration_batches), device
        )


def sliced_child(
    supernet: Supernet, arch: Arch, calibration: Iterable, device: torch.device
) -> StandaloneModel:
    """The standalone child of ``arch`` with BN statistics recomputed on ``calibration``."""
    child = extract_child(supernet, arch)
    images = (resize(batch[0].to(device), arch.resolution) for batch in calibration)
    return recalibrate_bn(child, images, device)


def _params_used_by(supernet: Supernet, arch: Arch, device: torch.device) -> set[int]:
    """Ids of the parameters that receive a gradient from ``arch``'s forward (eval mode, so no
    BN statistic moves)."""
    was_training = supernet.training
    supernet.eval()
    try:
        size = arch.resolution
        x = torch.zeros(1, supernet.space.in_channels, size, size, device=device)
        params = [p for p in supernet.parameters() if p.requires_grad]
        grads = torch.autograd.grad(supernet(x, arch).sum(), params, allow_unused=True)
    finally:
        supernet.train(was_training)
    return {id(p) for p, g in zip(params, grads, strict=True) if g is not None}
