"""ProxylessNAS: path binarization, two-path gate gradients, latency in the loss.

Cai, Zhu and Han, "ProxylessNAS: Direct Neural Architecture Search on Target Task and Hardware",
ICLR 2019 (arXiv 1812.00332), sections 3.1-3.3, with the reference code's choices
(mit-han-lab/proxylessnas ``search/``) where it differs from the paper:

- Every block has logits ``alpha`` over its candidate ops (`paths.block_candidates`, the zero op
  included for optional blocks: depth search), initialised ``N(0, init_std)``. Every block
  chooses freely; tied-stage spaces are refused. Resolution, stem and head are fixed
  (``fixed``), as the paper searches only the blocks.
- Weight step: one path per block drawn from ``softmax(alpha)``; the supernet runs that one child
  (one path's activations in memory); CE with label smoothing; SGD on the weights.
- Architecture step (every ``arch_every`` weight steps after ``warmup_epochs``; plain CE on an
  arch-split batch, BN in train mode), ``mode``:
  ``two_path`` (paper): two distinct candidates drawn from ``softmax(alpha)``, the active one
  from their renormalised probabilities ``p~``; gate gradient ``<dL/dy, o_j>`` for both, mapped
  to ``alpha`` through the softmax Jacobian of ``p~``; after the Adam step the two logits are
  shifted so that ``sum_S exp(alpha)``, hence every other candidate's probability, is unchanged.
  ``full`` (the code's default ``full_v2``): one active path; every candidate's gate gradient,
  the others re-run on the block input in backward under ``no_grad``.
  ``reinforce``: ``samples`` children scored without gradients, reward ``acc * (T / cost) **
  reward_exponent``, gradient ``(R - b) * grad log p(a)``.
- A block whose active op is the zero op gets no update that step (its gradient, the cost
  term's included, is dropped, as ``set_arch_param_grad`` does).
- Cost term: ``E[cost]`` of the path distributions (`expected.ExpectedPathCost`; in ``two_path``
  mode ``p~`` on the two drawn candidates and 0 elsewhere, as the code) in the metric of
  ``search.budget`` (latency from a table, exact MACs or parameters; no cost term without a
  target); ``loss: mul_log`` is the code's default
  ``0.2 * CE * (log E / log T) ** 0.3``, ``loss: linear`` the paper's additive form
  ``CE + lam * (E - T) / T`` (the constant ``-lam`` does not change the gradient; nor does
  ``T`` change where the search settles, only the gradient's scale), ``loss: budget`` the
  hinge ``CE + lam * max(0, E / T - 1)``, a constraint: no push below the target, a pull back
  down from above it.
- Adam on ``alpha`` with ``betas = (0, 0.999)``: without momentum a candidate that gets no
  gradient does not move, which two-path mode relies on.
- DDP: every rank draws the same paths from a generator seeded alike; ``alpha`` gradients are
  averaged over ranks; the rescale is deterministic, so ``alpha`` stays identical.

Simplifications, stated: the REINFORCE baseline is a textbook moving average
``b <- decay * b + (1 - decay) * mean R`` (the code weights the new mean by 0.99) and each rank
keeps its own baseline over its own shard (their gradients are averaged); candidates re-run in
backward update their BN running statistics, as the reference's re-runs in train mode do; the
arch step's backward also fills the weights' gradients, which the next weight step discards.
Derivation is the argmax of every block's ``alpha`` (a chosen zero op skips the block). The
paper's target is a loss term only; ours is also the derived arch's bound: when the argmax
exceeds ``search.budget.target``, the most probable in-budget arch of ``max_draws`` draws is
derived instead, else the smallest child, so no method returns an arch over the budget.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from supernas.config import check_choices, check_ranges
from supernas.cost.penalty import FORMS, CostPenalty
from supernas.errors import ConfigError
from supernas.rng import derive_seed
from supernas.space.arch import Arch
from supernas.strategies.base import OPTIONS, STRATEGIES, Batch, Cadence, Strategy, entropy
from supernas.strategies.proxyless.expected import ExpectedPathCost
from supernas.strategies.proxyless.paths import FIXED, BlockPath, Frame, gated_forward

log = logging.getLogger(__name__)

MODES = ("two_path", "full", "reinforce")


@STRATEGIES.register("proxyless")
class ProxylessNAS(Strategy):
    name = "proxyless"

    @dataclass
    class Config:
        mode: str = "two_path"  # "two_path" (paper), "full" (reference code), "reinforce"
        loss: str = "mul_log"  # "mul_log" (reference code), "linear" (paper) or "budget"
        loss_alpha: float = 0.2  # mul_log: scale
        loss_beta: float = 0.3  # mul_log: exponent
        loss_lambda: float = 0.1  # linear, budget: weight of the relative excess
        arch_lr: float = 1e-3  # Adam, betas (0, 0.999)
        arch_every: int = 5  # weight steps per architecture step
        warmup_epochs: float = 0.0  # weights only, before any architecture step
        label_smoothing: float = 0.1  # weight steps (architecture steps use plain CE)
        init_std: float = 1e-3
        fixed: str = "biggest"  # resolution, stem and head width: "biggest" or "smallest"
        samples: int = 10  # reinforce: children per update
        reward_exponent: float = 0.1  # reinforce: R = acc * (T / cost) ** this
        baseline_decay: float = 0.99  # reinforce
        max_draws: int = 2000  # draws to find an in-budget arch when the argmax exceeds it

        REPLACED: ClassVar[dict[str, str]] = {
            "cost": "search.budget.metric (no cost term: leave search.budget.target unset)",
            "target": "search.budget.target",
            "lut": "search.budget.lut",
        }

        def __post_init__(self) -> None:
            check_ranges(
                OPTIONS,
                self,
                positive=("arch_lr", "arch_every", "samples", "max_draws"),
                non_negative=(
                    "loss_alpha",
                    "loss_beta",
                    "loss_lambda",
                    "warmup_epochs",
                    "init_std",
                    "reward_exponent",
                ),
                fraction=("label_smoothing", "baseline_decay"),
            )
            check_choices(OPTIONS, self, mode=MODES, loss=FORMS, fixed=FIXED)

    def __init__(self, supernet, config: Config, context) -> None:
        super().__init__(supernet, config, context)
        self.frame = Frame.of(self.space, config.fixed)
        self.cadence = Cadence.of(config.warmup_epochs, config.arch_every, context.steps_per_epoch)
        self.target = self._target()
        self.penalty = CostPenalty(
            form=config.loss, alpha=config.loss_alpha, beta=config.loss_beta, lam=config.loss_lambda
        )
        metric = context.budget.metric
        self.expected = (
            None if self.target is None else ExpectedPathCost(self.frame, metric, context.device)
        )
        self.generator = torch.Generator().manual_seed(derive_seed(context.seed, "paths"))
        init = torch.Generator().manual_seed(derive_seed(context.seed, "alpha-init"))
        self.alphas = [
            torch.nn.Parameter(
                (config.init_std * torch.randn(len(c), generator=init)).to(context.device)
            )
            for c in self.frame.candidates
        ]
        self.arch_optimizer = torch.optim.Adam(
            self.alphas, lr=config.arch_lr, betas=(0.0, 0.999), eps=1e-8
        )
        self.baseline: float | None = None

    def _target(self) -> float | None:
        budget = self.context.budget
        if budget.target is None:
            log.warning("proxyless: no search.budget.target, the search optimises accuracy alone")
        elif self.config.loss == "mul_log" and budget.target <= 1:
            raise ConfigError(
                f"loss mul_log needs a target above 1 {budget.metric.unit} (log T > 0); "
                "use loss: linear"
            )
        return budget.target

    def arch_parameters(self) -> list[Tensor]:
        return list(self.alphas)

    def probabilities(self) -> list[Tensor]:
        return [torch.softmax(a.detach(), 0) for a in self.alphas]

    def sample_paths(self) -> list[int]:
        """One candidate per block from ``softmax(alpha)`` (the same on every rank)."""
        return [
            int(torch.multinomial(p.cpu(), 1, generator=self.generator))
            for p in self.probabilities()
        ]

    def step(self, batch: Batch, step: int) -> dict[str, float | Tensor]:
        metrics = self.weight_step(batch)
        if self.cadence.arch_step_due(step):
            if self.config.mode == "reinforce":
                metrics.update(self.reinforce_step(self.arch_stream.next()))
            else:
                metrics.update(self.arch_step(self.arch_stream.next()))
        return metrics

    def weight_step(self, batch: Batch) -> dict[str, float | Tensor]:
        """One SGD step of the weights through one path per block drawn from softmax(alpha)."""
        arch = self.frame.arch(self.sample_paths())
        return self.train_child(batch, arch, self.config.label_smoothing)

    def _binarize(self, index: int) -> tuple[BlockPath, Tensor]:
        """The block's path for an architecture step and its cost weights ``q``."""
        alpha = self.alphas[index]
        p = torch.softmax(alpha, 0)
        n = len(alpha)
        if n == 1:
            return BlockPath(0), p
        if self.config.mode == "full":
            active = int(torch.multinomial(p.detach().cpu(), 1, generator=self.generator))
            members = tuple(range(n))
            probs, q = p, p
        else:
            drawn = torch.multinomial(
                p.detach().cpu(), 2, replacement=False, generator=self.generator
            )
            pair = drawn.to(alpha.device)
            probs = torch.softmax(alpha[pair], 0)
            pick = torch.multinomial(probs.detach().cpu(), 1, generator=self.generator)
            active = int(drawn[pick])
            members = tuple(int(i) for i in drawn)
            q = torch.zeros_like(p).index_put((pair,), probs)
        if self.frame.candidates[index][active] is None:
            return BlockPath(active, members), q
        one_hot = torch.tensor([float(j == active) for j in members], device=alpha.device)
        return BlockPath(active, members, one_hot + probs - probs.detach()), q

    def arch_step(self, batch: Batch) -> dict[str, float | Tensor]:
        """One gradient update of ``alpha`` in ``two_path`` or ``full`` mode."""
        images, labels = batch
        paths, q = zip(*(self._binarize(i) for i in range(len(self.alphas))), strict=True)
        logits = self.context.model(images, gated_forward(self.frame, paths))
        ce = F.cross_entropy(logits, labels)
        metrics = {"arch/ce": ce.detach()}
        loss = ce
        if self.expected is not None:
            expected = self.expected(q)
            loss = self.penalty(ce, expected, self.target)
            metrics[f"arch/expected_{self.context.budget.metric.record_key}"] = expected.detach()
        self.arch_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        updated = []
        for alpha, path in zip(self.alphas, paths, strict=True):
            if path.gates is None:  # zero op active, or a block without a choice
                alpha.grad = None
            else:
                updated.append((alpha, path.members))
        self.context.reduce_gradients([alpha for alpha, _ in updated])
        if self.config.mode == "two_path":
            self._rescaled_step(updated)
        else:
            self.arch_optimizer.step()
        metrics["arch/loss"] = loss.detach()
        return metrics

    @torch.no_grad()
    def _rescaled_step(self, updated: list[tuple[Tensor, tuple[int, ...]]]) -> None:
        """Adam step, then shift each block's two updated logits by the same amount so that
        their ``logsumexp`` (hence every other candidate's probability) is unchanged."""
        before = [torch.logsumexp(alpha[list(members)], 0) for alpha, members in updated]
        self.arch_optimizer.step()
        for (alpha, members), old in zip(updated, before, strict=True):
            index = list(members)
            alpha[index] -= torch.logsumexp(alpha[index], 0) - old

    def reinforce_step(self, batch: Batch) -> dict[str, float | Tensor]:
        """One REINFORCE update of ``alpha`` from ``samples`` children (no weight gradients)."""
        images, labels = batch
        samples, rewards = [], []
        with torch.no_grad():
            for _ in range(self.config.samples):
                active = self.sample_paths()
                arch = self.frame.arch(active)
                logits = self.supernet(images, arch)
                accuracy = (logits.argmax(1) == labels).float().mean().item()
                reward = accuracy
                if self.target is not None:
                    cost = self.context.budget.cost(arch)
                    reward *= (self.target / cost) ** self.config.reward_exponent
                samples.append(active)
                rewards.append(reward)
        mean = sum(rewards) / len(rewards)
        decay = self.config.baseline_decay
        self.baseline = (
            mean if self.baseline is None else decay * self.baseline + (1 - decay) * mean
        )
        log_p = [
            sum(torch.log_softmax(a, 0)[j] for a, j in zip(self.alphas, active, strict=True))
            for active in samples
        ]
        loss = -sum((r - self.baseline) * lp for r, lp in zip(rewards, log_p, strict=True))
        self.arch_optimizer.zero_grad(set_to_none=True)
        (loss / len(samples)).backward()
        self.context.reduce_gradients(self.alphas)
        self.arch_optimizer.step()
        return {"arch/reward": mean, "arch/baseline": self.baseline}

    def argmax_arch(self) -> Arch:
        return self.frame.arch([int(a.detach().argmax()) for a in self.alphas])

    def derive(self) -> Arch:
        """The argmax of every block (the paper); if it exceeds ``search.budget``, the most
        probable in-budget arch of ``max_draws`` draws from the paths' distributions."""
        argmax = self.argmax_arch()
        if self.in_budget(argmax):
            return argmax
        generator = torch.Generator().manual_seed(derive_seed(self.context.seed, "derive"))
        log_probs = [torch.log_softmax(a.detach().cpu().double(), 0) for a in self.alphas]
        draws = []
        for _ in range(self.config.max_draws):
            paths = [int(torch.multinomial(lp.exp(), 1, generator=generator)) for lp in log_probs]
            log_prob = sum(float(lp[j]) for lp, j in zip(log_probs, paths, strict=True))
            draws.append((self.frame.arch(paths), log_prob))
        return self.most_probable_in_budget(draws)

    def epoch_metrics(self) -> dict[str, float]:
        arch = self.argmax_arch()
        entropies = [entropy(alpha) for alpha in self.alphas]
        costs = self.context.budget.record(arch)
        metrics = {"arch/entropy": sum(entropies) / len(entropies)}
        metrics.update({f"cost/{key}": float(value) for key, value in costs.items()})
        log.info("proxyless argmax arch %s", arch)
        return metrics

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "generator": self.generator.get_state(),
            "alphas": [a.detach().clone() for a in self.alphas],
            "arch_optimizer": self.arch_optimizer.state_dict(),
            "baseline": self.baseline,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])
        with torch.no_grad():
            for alpha, saved in zip(self.alphas, state["alphas"], strict=True):
                alpha.copy_(saved)
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        self.baseline = state["baseline"]
