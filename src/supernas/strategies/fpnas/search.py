"""FP-NAS (Yan et al., CVPR 2021, arXiv 2011.10949) on PARSEC (Casale et al., arXiv 1902.05116).

PARSEC's estimator. Each step draws K whole archs ``a_1..a_K ~ p(a|pi)``
(with replacement; the prior is the proposal) and runs each as a child of the supernet on the
batch, giving ``l_k = B * (mean CE_k + gamma * max(0, cost(a_k) / target - 1)) / T`` (the cost
hinge only in the arch step; ``cost`` and ``target`` those of ``search.budget``: exact MACs or
parameters, or latency predicted from a table; ``T`` the likelihood temperature, 1 by
default). With the self-normalised importance weights ``omega_k = softmax_k(-l_k)`` (no
gradient through them):

- weights:  ``grad_w ~= sum_k omega_k grad_w meanCE_k``, i.e. the gradient of
  ``-logsumexp_k(-l_k)`` divided by ``B`` so that the weight LR is in per-example units;
- arch:     ``grad_pi ~= -sum_k omega_k grad_pi log p(a_k|pi)`` (a minimisation of the
  surrogate ``-sum_k omega_k log p(a_k|pi)``); per factor ``omega``-weighted one-hot counts
  minus ``p``: self-normalisation is the baseline.

That is the self-normalised importance-sampling estimate of the gradient of the log marginal
likelihood ``log E_{p(a|pi)} p(y|X, w, a)``. Weight steps use the weight split and arch steps
the arch split, each with its own K samples (2K children per step). The first
``warmup_epochs`` train one uniform child per step and leave ``pi`` alone.

FP-NAS's additions:

- **Adaptive K**: ``K_t = clip(ceil(lambda * H(p_t)), K_min, K_max)`` with ``H`` the
  entropy in nats of the current distribution; ``adaptive: false`` keeps PARSEC's fixed K.
- **Coarse-to-fine**: factorised per decision until step ``joint_from * total``, then
  one categorical per block over the product of its decisions, initialised to the product of
  the factors (`ArchDistribution.to_joint`), with a fresh Adam. The factor logits then live on
  as a *factorised-only reference*: they keep being updated with the same samples, reweighted
  by ``p_factorised(a_k) / p_joint(a_k)`` (the samples come from the joint), so the metrics
  ``fpnas/entropy`` and ``fpnas/entropy_factorized`` compare the two schedules at every step
  at no extra forward pass. It is a reference only: derivation uses the joint distribution.
- **Split-Attention** is an ordinary decision (``attention`` in {0, 1, 2, 4} in the
  ``fbnetv2_f_pp`` and ``fpnas_l*`` spaces); see `supernas.nn.blocks.SplitAttention`.
- **Derivation**: the most probable arch; if it is over the budget (the MACs budget, and the
  latency target when a table is given), the most probable of ``max_draws`` drawn archs
  within it (the smallest arch if none).

Distributed (``torchrun``): every rank draws the same K archs from the shared seed, runs the
children ``k = rank, rank + W, ...`` on its own data shard, and the K losses are summed over
ranks (each rank fills only its entries), so ``omega`` is the same everywhere. The weight
gradients of each rank's share, scaled by ``W``, are averaged with ``context.reduce_gradients``
(the children run on the unwrapped supernet: with uneven shares DDP's per-backward all-reduce
would not line up across ranks). The arch update depends only on ``omega`` and the samples,
identical on every rank, so ``pi`` stays in sync without a gradient all-reduce.

Simplifications (say them when comparing with the paper): the children of a weight step keep
their graphs until ``omega`` is known (memory of K/W children, not one; a second forward per
child instead is not implemented); FP-NAS's lambda, theta and K bounds are not known from the
paper (defaults are ours).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from supernas.config import check_ranges
from supernas.errors import ConfigError
from supernas.space.arch import Arch
from supernas.space.choices import sample as uniform_sample
from supernas.strategies.base import OPTIONS, STRATEGIES, Batch, Cadence, Strategy
from supernas.strategies.fpnas.distribution import ArchDistribution, Sample


def adaptive_samples(entropy: float, scale: float, low: int, high: int) -> int:
    """FP-NAS's K: ``ceil(scale * entropy)`` clipped to ``[low, high]``."""
    return min(max(math.ceil(scale * entropy), low), high)


def importance_weights(losses: Tensor) -> Tensor:
    """Self-normalised weights ``softmax(-l)`` of K children's negative log-likelihoods."""
    return torch.softmax(-losses, 0)


@STRATEGIES.register("fpnas")
class FPNAS(Strategy):
    name = "fpnas"

    @dataclass
    class Config:
        adaptive: bool = True  # K from the entropy; False: K = samples (PARSEC)
        samples: int = 14  # K of the fixed mode (PARSEC's reference value)
        entropy_scale: float = 0.5  # lambda: samples per nat of entropy
        min_samples: int = 2  # K_min
        max_samples: int = 14  # K_max
        joint_from: float | None = 0.5  # switch to joint at this fraction of steps; None: never
        warmup_epochs: float = 0.0  # uniform single-child weight steps before any arch step
        arch_lr: float = 0.05  # Adam on the architecture logits
        temperature: float = 1.0  # T of the likelihood l/T (1: PARSEC's formula)
        cost_weight: float = 0.0  # gamma, nats per example per unit of relative excess cost
        max_draws: int = 2000  # draws to find the most probable in-budget arch
        calibration_batches: int = 10  # BN recalibration when evaluating the derived arch

        REPLACED: ClassVar[dict[str, str]] = {
            "target_macs": "search.budget.target",
            "target_ms": "search.budget.target (with search.budget.metric: latency)",
            "lut": "search.budget.lut",
        }

        def __post_init__(self) -> None:
            check_ranges(
                OPTIONS,
                self,
                positive=(
                    "samples",
                    "entropy_scale",
                    "min_samples",
                    "arch_lr",
                    "temperature",
                    "max_draws",
                    "calibration_batches",
                ),
                non_negative=("warmup_epochs", "cost_weight"),
            )
            if not self.min_samples <= self.max_samples:
                raise ConfigError(
                    f"{OPTIONS}.max_samples = {self.max_samples} must be at least min_samples "
                    f"({self.min_samples})"
                )
            if self.joint_from is not None and not 0 <= self.joint_from <= 1:  # NaN too
                raise ConfigError(f"{OPTIONS}.joint_from {self.joint_from} is not in [0, 1]")

    def __init__(self, supernet, config, context) -> None:
        super().__init__(supernet, config, context)
        self.distribution = ArchDistribution(self.space, context.device)
        self.arch_optimizer = self._adam()
        self.reference_optimizer: torch.optim.Optimizer | None = None  # factorised-only twin
        total = context.total_steps
        self.cadence = Cadence.of(config.warmup_epochs, 1, context.steps_per_epoch)
        self.switch_step = None if config.joint_from is None else round(config.joint_from * total)
        self.samples_drawn = 0
        if config.cost_weight > 0 and context.budget.target is None:
            raise ConfigError("fpnas: cost_weight needs search.budget.target")

    def _adam(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.distribution.parameters(), lr=self.config.arch_lr)

    def arch_parameters(self) -> list[Tensor]:
        return self.distribution.parameters()

    def num_samples(self) -> int:
        """K for the next step: from the entropy (adaptive) or fixed."""
        cfg = self.config
        if not cfg.adaptive:
            return cfg.samples
        entropy = self.distribution.entropy()
        return adaptive_samples(entropy, cfg.entropy_scale, cfg.min_samples, cfg.max_samples)

    def _share(self, count: int) -> range:
        """The sample indices this rank runs (round robin over ranks)."""
        return range(self.context.rank, count, self.context.world_size)

    def _gather(self, local: Tensor) -> Tensor:
        """Sums a vector over ranks (each rank filled only its own entries)."""
        if self.context.world_size > 1:
            dist.all_reduce(local)
        return local

    def step(self, batch: Batch, step: int) -> dict[str, float | Tensor]:
        if not self.cadence.searching(step):
            return self._warmup_step(batch)
        if self.switch_step is not None and step >= self.switch_step:
            self._switch_to_joint()
        entropy = self.distribution.entropy()
        count = self.num_samples()
        values = self._weight_step(batch, count)
        values.update(self._arch_step(count))
        self.samples_drawn += 2 * count
        values.update(
            {
                "fpnas/K": count,
                "fpnas/entropy": entropy,
                "fpnas/samples": 2 * count,
                "fpnas/samples_total": self.samples_drawn,
                "fpnas/joint": float(self.distribution.joint),
            }
        )
        if self.reference_optimizer is not None:
            values["fpnas/entropy_factorized"] = self.distribution.entropy(factorised=True)
        return values

    def _switch_to_joint(self) -> None:
        if self.distribution.joint:
            return
        # The factor logits keep their Adam state and go on as the factorised-only reference.
        self.reference_optimizer = self.arch_optimizer
        self.distribution.to_joint()
        self.arch_optimizer = self._adam()

    def _warmup_step(self, batch: Batch) -> dict[str, float | Tensor]:
        metrics = self.train_child(batch, uniform_sample(self.space, self.rng))
        self.samples_drawn += 1
        return {**metrics, "fpnas/samples_total": self.samples_drawn}

    def _weight_step(self, batch: Batch, count: int) -> dict[str, float | Tensor]:
        """Trains the shared weights with the omega-weighted gradient of K children."""
        images, labels = (t.to(self.context.device) for t in batch)
        samples = self.distribution.sample(count, self.rng)
        optimizer = self.context.weight_optimizer
        optimizer.zero_grad(set_to_none=True)
        means: dict[int, Tensor] = {}
        local = torch.zeros(count, device=self.context.device)
        for k in self._share(count):
            means[k] = F.cross_entropy(
                self.supernet(images, self.distribution.arch(samples[k])), labels
            )
            local[k] = means[k].detach() * labels.numel() / self.config.temperature
        omega = importance_weights(self._gather(local))
        if means:
            world = self.context.world_size
            (world * sum(omega[k] * means[k] for k in means)).backward()
        self.context.reduce_gradients(self.supernet.parameters())
        optimizer.step()
        return {
            "train/loss": (omega * local).sum() * (self.config.temperature / labels.numel()),
            "fpnas/ess_weights": 1 / (omega**2).sum(),
        }

    def _penalty(self, arch: Arch) -> float:
        if self.config.cost_weight == 0:
            return 0.0
        budget = self.context.budget
        return self.config.cost_weight * max(0.0, budget.cost(arch) / budget.target - 1)

    def _arch_step(self, count: int) -> dict[str, float | Tensor]:
        """Moves pi towards the archs with the highest importance weights on the arch split."""
        images, labels = self.arch_stream.next()
        samples = self.distribution.sample(count, self.rng)
        local = torch.zeros(count, device=self.context.device)
        with torch.no_grad():
            for k in self._share(count):
                arch = self.distribution.arch(samples[k])
                mean = F.cross_entropy(self.supernet(images, arch), labels)
                local[k] = (mean + self._penalty(arch)) * labels.numel() / self.config.temperature
        losses = self._gather(local)
        omega = importance_weights(losses)
        if self.reference_optimizer is not None:
            # Importance ratio p_factorised / p_joint: the samples come from the joint.
            with torch.no_grad():
                ratio = self.distribution.log_prob(samples, factorised=True)
                ratio -= self.distribution.log_prob(samples)
            reference = importance_weights(losses - ratio)
            self._descend(self.reference_optimizer, reference, samples, factorised=True)
        self._descend(self.arch_optimizer, omega, samples, factorised=False)
        return {
            "arch/loss": (omega * losses).sum() * (self.config.temperature / labels.numel()),
            "fpnas/ess_arch": 1 / (omega**2).sum(),
        }

    def _descend(
        self,
        optimizer: torch.optim.Optimizer,
        omega: Tensor,
        samples: list[Sample],
        factorised: bool,
    ) -> None:
        optimizer.zero_grad(set_to_none=True)
        surrogate = -(omega.detach() * self.distribution.log_prob(samples, factorised)).sum()
        surrogate.backward()
        optimizer.step()

    def most_probable(self) -> Arch:
        """The most probable arch, or the most probable in-budget one of many draws."""
        distribution = self.distribution
        mode = distribution.mode()
        if self.in_budget(distribution.arch(mode)):
            return distribution.arch(mode)
        drawn = list(dict.fromkeys(distribution.sample(self.config.max_draws, self.rng)))
        with torch.no_grad():
            log_probs = distribution.log_prob(drawn).tolist()
        draws = [(distribution.arch(s), lp) for s, lp in zip(drawn, log_probs, strict=True)]
        return self.most_probable_in_budget(draws)

    def derive(self) -> Arch:
        arch = self.most_probable()
        self.candidates = [self.score(arch, self.config.calibration_batches)]
        return arch

    def epoch_metrics(self) -> dict[str, float]:
        arch, budget = self.distribution.arch(self.distribution.mode()), self.context.budget
        return {
            "fpnas/entropy": self.distribution.entropy(),
            f"fpnas/mode_{budget.metric.record_key}": budget.cost(arch),
            "fpnas/arch_parameters": sum(t.numel() for t in self.arch_parameters()),
            "fpnas/samples_total": self.samples_drawn,
        }

    def state_dict(self) -> dict[str, Any]:
        reference = self.reference_optimizer
        return {
            **super().state_dict(),
            "distribution": self.distribution.state_dict(),
            "arch_optimizer": self.arch_optimizer.state_dict(),
            "reference_optimizer": None if reference is None else reference.state_dict(),
            "samples_drawn": self.samples_drawn,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.distribution.load_state_dict(state["distribution"])
        self.arch_optimizer = self._adam()
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        if state["reference_optimizer"] is not None:
            self.reference_optimizer = torch.optim.Adam(
                self.distribution.factor_logits, lr=self.config.arch_lr
            )
            self.reference_optimizer.load_state_dict(state["reference_optimizer"])
        self.samples_drawn = state["samples_drawn"]
