"""DMaskingNAS (FBNetV2): differentiable search of widths, resolution and block types by masking.

One logit vector ``alpha`` per decision of the space. Each forward draws Gumbel noise for every
decision and runs the soft supernet (`MaskedForward`) under ``g = softmax((alpha + G) / tau)``.

Schedule (FBNet's, arXiv 1812.03443, which FBNetV2 follows):

- the first ``warmup_epochs`` train the weights only (``alpha`` frozen at uniform);
- then weight steps on the weight split (plain cross-entropy, SGD) alternate with architecture
  steps on the arch split (cross-entropy times the cost factor, Adam on ``alpha``, the weights
  frozen and BN statistics left alone). FBNet alternates whole passes over the 80% / 20% splits;
  we interleave one arch step after every ``arch_every``-th weight step (`Cadence`), the same
  ratio for the default 4, so the loop stays step-driven and resumable;
- ``tau = tau0 * exp(-decay * step / steps_per_epoch)`` with the decay rescaled from FBNet's 90
  epochs to the run's length, so the final temperature is the paper's whatever the run length
  (FBNet lowers tau once per epoch; we lower it continuously).

The cost is the exact expectation of the child's cost in the search's budget metric (MACs,
parameters or table latency, ``search.budget``) under the same ``g`` (`supernas.cost.expected`),
and enters the loss in one of the forms of `supernas.cost.penalty` with the budget's target.
Derivation takes the argmax of every decision; with ``derive_samples > 0`` it also samples archs
from the final distribution and keeps the in-budget child with the best arch-split accuracy
(FBNet samples 6). A budget is met exactly: over-budget archs are never returned.

Under ``torchrun`` every rank draws the same Gumbel noise (a generator seeded alike), so all
ranks run the same soft architecture; ``alpha``'s gradients are averaged over ranks.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from supernas.config import check_choices, check_ranges
from supernas.cost.expected import ExpectedCost
from supernas.cost.penalty import FORMS, CostPenalty
from supernas.space.arch import Arch
from supernas.space.choices import arch_from_choices, choices_of, decisions
from supernas.strategies.base import OPTIONS, STRATEGIES, Batch, Cadence, Strategy, entropy
from supernas.strategies.dmasking.relaxed import KERNEL_MIXING, SUBSAMPLING, MaskedForward

log = logging.getLogger(__name__)


def temperature(tau0: float, decay: float, epoch: float) -> float:
    """FBNet's annealing ``tau0 * exp(-decay * epoch)`` (``epoch`` may be fractional)."""
    return tau0 * math.exp(-decay * epoch)


def gumbel_noise(count: int, generator: torch.Generator) -> Tensor:
    """``count`` standard Gumbel draws from ``generator`` (on the CPU, in float64)."""
    uniform = torch.rand(count, generator=generator, dtype=torch.float64)
    return -torch.log(-torch.log(uniform.clamp(1e-12, 1 - 1e-12)))


def gumbel_softmax(logits: Tensor, tau: float, generator: torch.Generator) -> Tensor:
    """Soft Gumbel-softmax weights; the noise comes from ``generator`` (on the CPU)."""
    noise = gumbel_noise(logits.numel(), generator).reshape(logits.shape)
    return torch.softmax((logits + noise.to(logits)) / tau, dim=-1)


@contextlib.contextmanager
def frozen_weights(model: nn.Module) -> Iterator[None]:
    """No weight gradients and no BN statistics updates (BN still uses batch statistics)."""
    params = [p for p in model.parameters() if p.requires_grad]
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for p in params:
        p.requires_grad_(False)
    for norm in norms:
        norm.track_running_stats = False
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
        for norm in norms:
            norm.track_running_stats = True


@STRATEGIES.register("dmasking")
class DMaskingNAS(Strategy):
    name = "dmasking"

    @dataclass
    class Config:
        warmup_epochs: float = 1.0  # weights only at first (FBNet: 10 of 90 epochs)
        arch_every: int = 4  # one arch step per this many weight steps (an 80/20 split)
        arch_lr: float = 0.01  # Adam on alpha (FBNet)
        arch_weight_decay: float = 5e-4
        temperature: float = 5.0  # Gumbel-softmax tau at the start (FBNet)
        temperature_decay: float = 0.045  # per epoch of a ...
        reference_epochs: float = 90.0  # ... search this long, rescaled to the run's epochs
        cost_loss: str = "mul_log"  # "mul_log" (FBNetV2), "budget", "linear" or "absolute"
        cost_alpha: float = 0.2
        cost_beta: float = 0.6
        cost_lambda: float = 1.0
        subsampling: str = "nearest"  # resolution paths: "nearest" (FBNetV2) or "resize"
        kernel_mixing: str = "outputs"  # kernel sizes: "outputs" (FBNet) or "weights" (faster)
        derive_samples: int = 0  # also evaluate this many archs sampled from the result
        calibration_batches: int = 10  # training batches to recompute a candidate's BN
        max_draws: int = 2000  # draws to find in-budget samples at derivation

        REPLACED: ClassVar[dict[str, str]] = {
            "cost_metric": "search.budget.metric",
            "cost_target": "search.budget.target",
        }

        def __post_init__(self) -> None:
            check_ranges(
                OPTIONS,
                self,
                positive=(
                    "arch_every",
                    "arch_lr",
                    "temperature",
                    "reference_epochs",
                    "calibration_batches",
                    "max_draws",
                ),
                non_negative=(
                    "warmup_epochs",
                    "arch_weight_decay",
                    "temperature_decay",
                    "cost_alpha",
                    "cost_beta",
                    "cost_lambda",
                    "derive_samples",
                ),
            )
            check_choices(
                OPTIONS,
                self,
                cost_loss=FORMS,
                subsampling=SUBSAMPLING,
                kernel_mixing=KERNEL_MIXING,
            )

    def __init__(self, supernet, config, context) -> None:
        super().__init__(supernet, config, context)
        device = context.device
        self.decisions = decisions(self.space)
        self.alpha = {
            d.name: nn.Parameter(torch.zeros(len(d.options), device=device)) for d in self.decisions
        }
        self.arch_optimizer = torch.optim.Adam(
            self.arch_parameters(),
            lr=config.arch_lr,
            betas=(0.9, 0.999),
            weight_decay=config.arch_weight_decay,
        )
        self.gumbel = torch.Generator().manual_seed(context.seed)
        self.expected_cost = ExpectedCost(self.space, context.budget.metric, device)
        self.penalty = CostPenalty(
            config.cost_loss, config.cost_alpha, config.cost_beta, config.cost_lambda
        )
        self.target = context.budget.target
        if self.target is None:
            log.warning("dmasking: no search.budget.target, the search optimises accuracy alone")
        self.cadence = Cadence.of(config.warmup_epochs, config.arch_every, context.steps_per_epoch)
        self._step = 0

    def arch_parameters(self) -> list[Tensor]:
        return list(self.alpha.values())

    # -- the search step -------------------------------------------------------------------

    @property
    def epochs_done(self) -> float:
        return self._step / self.context.steps_per_epoch

    def tau(self) -> float:
        config = self.config
        decay = config.temperature_decay * config.reference_epochs / self.context.epochs
        return temperature(config.temperature, decay, self.epochs_done)

    def sample_weights(self, differentiable: bool) -> dict[str, Tensor]:
        """One Gumbel-softmax draw for every decision at the current temperature.

        The noise of all decisions is drawn at once and copied to the device in one transfer;
        it is the same stream as one `gumbel_softmax` per decision in order.
        """
        sizes = [alpha.numel() for alpha in self.alpha.values()]
        like = next(iter(self.alpha.values()))
        noise = gumbel_noise(sum(sizes), self.gumbel).to(like.device, like.dtype, non_blocking=True)
        tau = self.tau()
        return {
            name: torch.softmax(((alpha if differentiable else alpha.detach()) + g) / tau, dim=-1)
            for (name, alpha), g in zip(self.alpha.items(), noise.split(sizes), strict=True)
        }

    def relaxed(self, weights: dict[str, Tensor]) -> MaskedForward:
        return MaskedForward(
            self.space, weights, self.config.subsampling, self.config.kernel_mixing
        )

    def step(self, batch: Batch, step: int) -> dict[str, float | Tensor]:
        self._step = step
        metrics = self.weight_step(batch)
        if self.cadence.arch_step_due(step):
            metrics.update(self.arch_step(self.arch_stream.next()))
        return metrics

    def weight_step(self, batch: Batch) -> dict[str, float | Tensor]:
        images, labels = (t.to(self.context.device) for t in batch)
        relaxed = self.relaxed(self.sample_weights(differentiable=False))
        optimizer = self.context.weight_optimizer
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.context.model(images, relaxed), labels)
        loss.backward()
        optimizer.step()
        return {"train/loss": loss.detach(), "search/temperature": self.tau()}

    def arch_step(self, batch: Batch) -> dict[str, float | Tensor]:
        """One Adam step on alpha: cross-entropy on the arch split times the cost factor."""
        images, labels = (t.to(self.context.device) for t in batch)
        weights = self.sample_weights(differentiable=True)
        with frozen_weights(self.supernet):
            ce = F.cross_entropy(self.supernet(images, self.relaxed(weights)), labels)
        expected = self.expected_cost(weights)
        loss = ce if self.target is None else self.penalty(ce, expected, self.target)
        self.arch_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.context.reduce_gradients(self.arch_parameters())
        self.arch_optimizer.step()
        return {
            "arch/loss": loss.detach(),
            "arch/ce": ce.detach(),
            f"arch/expected_{self.context.budget.metric.record_key}": expected.detach(),
        }

    # -- the result ------------------------------------------------------------------------

    def probabilities(self) -> dict[str, Tensor]:
        return {name: torch.softmax(a.detach().double(), -1) for name, a in self.alpha.items()}

    def argmax_arch(self) -> Arch:
        probs = self.probabilities()
        choices = {d.name: d.options[int(probs[d.name].argmax())] for d in self.decisions}
        return arch_from_choices(self.space, choices)

    def _sample_arch(self, probs: dict[str, Tensor]) -> tuple[Arch, float]:
        choices, log_prob = {}, 0.0
        for d in self.decisions:
            index = self.rng.choices(range(len(d.options)), weights=probs[d.name].tolist())[0]
            choices[d.name] = d.options[index]
            log_prob += math.log(float(probs[d.name][index]))
        return arch_from_choices(self.space, choices), log_prob

    def _log_prob(self, arch: Arch) -> float:
        probs = self.probabilities()
        total = 0.0
        for d, choice in zip(self.decisions, self._choices(arch), strict=True):
            total += math.log(float(probs[d.name][d.options.index(choice)]))
        return total

    def _choices(self, arch: Arch) -> list[Any]:
        chosen = choices_of(self.space, arch)
        return [chosen[d.name] for d in self.decisions]

    def _candidates(self) -> list[tuple[Arch, float]]:
        """The argmax arch and (when asked, or when it is over budget) in-budget samples."""
        argmax = self.argmax_arch()
        found = {argmax.digest: (argmax, self._log_prob(argmax))} if self.in_budget(argmax) else {}
        wanted = self.config.derive_samples + (1 if not found else 0)
        probs = self.probabilities()
        for _ in range(self.config.max_draws if wanted > 0 else 0):
            arch, log_prob = self._sample_arch(probs)
            if self.in_budget(arch) and arch.digest not in found:
                found[arch.digest] = (arch, log_prob)
            if len(found) >= self.config.derive_samples + 1:
                break
        if not found:
            fallback = self.smallest_in_budget()
            found[fallback.digest] = (fallback, self._log_prob(fallback))
        return list(found.values())

    def derive(self) -> Arch:
        """The argmax arch, or the best in-budget candidate on the arch split (see module doc)."""
        candidates = self._candidates()
        self.candidates = [
            {**self.score(arch, self.config.calibration_batches), "log_prob": round(log_prob, 4)}
            for arch, log_prob in candidates
        ]
        key = "arch_top1" if self.config.derive_samples else "log_prob"
        scores = [record[key] for record in self.candidates]
        return candidates[scores.index(max(scores))][0]

    def epoch_metrics(self) -> dict[str, float]:
        argmax, budget = self.argmax_arch(), self.context.budget
        return {
            f"search/argmax_{budget.metric.record_key}": budget.cost(argmax),
            "search/entropy": sum(entropy(alpha) for alpha in self.alpha.values()),
            "search/temperature": self.tau(),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "alpha": {name: a.detach().clone() for name, a in self.alpha.items()},
            "arch_optimizer": self.arch_optimizer.state_dict(),
            "gumbel": self.gumbel.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            for name, alpha in self.alpha.items():
                alpha.copy_(state["alpha"][name])
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        self.gumbel.set_state(state["gumbel"])
