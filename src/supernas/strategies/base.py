"""The interface every search method implements, the context a search gives it, and the
plumbing every method shares.

A strategy owns its architecture parameters and its random state, and decides how the shared
supernet runs on each batch (one sampled child, a masked mixture, binary gates, several samples,
a sandwich). It never owns a copy of the network. The weight optimiser is created by the search
task and handed in, so strategies do not depend on the training package.

What every method needs is written here once, so that a method file holds only what its paper
is known for: the resumable arch-split stream (`ArchStream`), the warm-up and arch-step cadence
(`Cadence`), the single-child weight step (`Strategy.train_child`), "the best in-budget arch,
else the smallest, else `BudgetError`" (`Strategy.in_budget`, `most_probable_in_budget`,
`smallest_in_budget`), the entropy of a distribution (`entropy`) and the scored candidates that
go to ``candidates.json`` (`Strategy.candidates`). The cost and its target come from one
`supernas.cost.budget.Budget` in the context.
"""

from __future__ import annotations

import abc
import contextlib
import itertools
import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from supernas.config import from_dict
from supernas.cost.budget import Budget
from supernas.errors import BudgetError, ConfigError
from supernas.nn.supernet import Supernet
from supernas.registry import Registry
from supernas.rng import random_state, set_random_state
from supernas.space.arch import Arch
from supernas.space.choices import smallest
from supernas.space.space import SearchSpace
from supernas.strategies.evaluation import evaluate_child
from supernas.strategies.selection import SelectConfig

Batch = tuple[Tensor, Tensor]


def _no_reduction(tensors: Iterable[Tensor]) -> None:
    return None


def _no_batches() -> Iterator[Batch]:
    raise ConfigError("this search was given no arch-split stream")


@dataclass
class SearchContext:
    """What a strategy may use besides the supernet.

    Under ``torchrun`` every rank builds the same strategy with the same seed, so Python-side
    draws (which child, which path) agree on every rank without communication; each rank sees
    its own shard of the data, and ``reduce_gradients`` averages what the shared weights' DDP
    hooks do not cover (architecture parameters, or supernet passes run outside ``model``).
    """

    budget: Budget  # the cost metric and the target the derived arch must meet
    model: torch.nn.Module  # what training steps call: the supernet, DDP-wrapped under torchrun
    weight_optimizer: torch.optim.Optimizer  # built by the search task, as the strategy asks
    arch_batches: Callable[[], Iterator[Batch]]  # a fresh pass over (part of) the arch split
    calibration_batches: Callable[[], Iterator[Batch]]  # training batches for BN recalibration
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    steps_per_epoch: int = 1  # weight-split batches per epoch (this rank's share)
    epochs: int = 1
    arch_stream: Callable[[], Iterator[Batch]] = _no_batches  # endless shuffled arch-split batches
    reduce_gradients: Callable[[Iterable[Tensor]], None] = _no_reduction  # mean over ranks
    rank: int = 0
    world_size: int = 1
    weight_decay: float = 0.0  # of conv and linear weights; see `Strategy.weight_decay_in_loss`

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs


class Strategy(abc.ABC):
    """One search method over a `Supernet`; subclasses register in `STRATEGIES`."""

    @dataclass
    class Config:
        """Method options (subclasses extend it); recipes set them under ``search.options``."""

    name: ClassVar[str]
    retrains: ClassVar[bool] = True  # False: the derived arch ships as sliced (see `deploy`)
    # True: the strategy applies ``context.weight_decay`` in its own loss, and the search task
    # builds the weight optimizer without decay (BigNAS decays the biggest child only).
    weight_decay_in_loss: ClassVar[bool] = False

    def __init__(self, supernet: Supernet, config: Config, context: SearchContext) -> None:
        self.supernet = supernet
        self.space: SearchSpace = supernet.space
        self.config = config
        self.context = context
        self.rng = random.Random(context.seed)
        self.arch_stream = ArchStream(context.arch_stream, context.device)
        self.candidates: list[dict[str, Any]] = []  # scored at derivation, for candidates.json

    def arch_parameters(self) -> list[Tensor]:
        """The architecture parameters (empty for methods without any)."""
        return []

    def spread(self) -> float | None:
        """Entropy of the architecture distribution as a share of its maximum: 1.0 is uniform,
        where the derived arch is a draw at random; None for methods without parameters."""
        logits = [p.detach().flatten() for p in self.arch_parameters() if p.numel() > 1]
        if not logits:
            return None
        return sum(entropy(t) for t in logits) / sum(math.log(t.numel()) for t in logits)

    @abc.abstractmethod
    def step(self, batch: Batch, step: int) -> dict[str, float | Tensor]:
        """One search step on a weight-split batch; returns flat metrics."""

    @abc.abstractmethod
    def derive(self) -> Arch:
        """The architecture the search has found."""

    @classmethod
    def deploy(
        cls,
        supernet: Supernet,
        arch: Arch,
        config: Config,
        calibration: Iterable[Batch],
        device: torch.device,
    ) -> torch.nn.Module:
        """The model of ``arch`` taken from the trained ``supernet`` without training, for
        methods whose ``retrains`` is False; ``calibration`` yields training batches. The
        others refuse: their supernet is not trained for its children to ship as cut."""
        raise ConfigError(f"{cls.name} retrains its arch from scratch; it ships no sliced child")

    @classmethod
    def selection(cls, config: Config) -> tuple[SelectConfig, int]:
        """How ``supernas select`` picks children of this method's trained supernet for
        several budgets: the selection settings and the BN calibration batches. Only methods
        whose children ship as sliced (``retrains`` False) can."""
        raise ConfigError(
            f"select needs a supernet trained for its children to ship as sliced (bignas); "
            f"{cls.name} retrains its arch from scratch"
        )

    def score(self, arch: Arch, calibration_batches: int) -> dict[str, Any]:
        """A candidates.json record: ``arch``'s cost and its arch-split top-1 as cut from the
        supernet, BN recomputed on ``calibration_batches`` training batches."""
        context = self.context
        calibration = itertools.islice(context.calibration_batches(), calibration_batches)
        accuracy = evaluate_child(
            self.supernet, arch, calibration, context.arch_batches(), context.device
        )
        return {"arch": str(arch), **context.budget.record(arch), "arch_top1": accuracy}

    def train_child(
        self, batch: Batch, arch: Arch, label_smoothing: float = 0.0
    ) -> dict[str, float | Tensor]:
        """One SGD step of the shared weights through the single child ``arch``."""
        images, labels = (t.to(self.context.device) for t in batch)
        optimizer = self.context.weight_optimizer
        optimizer.zero_grad(set_to_none=True)
        logits = self.context.model(images, arch)
        loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        loss.backward()
        optimizer.step()
        return {"train/loss": loss.detach()}

    def in_budget(self, arch: Arch) -> bool:
        """Whether ``arch`` may be derived: within the search's budget, if any."""
        return self.context.budget.fits(arch)

    def most_probable_in_budget(self, draws: Iterable[tuple[Arch, float]]) -> Arch:
        """The most probable of ``draws`` (arch, log-probability) within the budget, else the
        smallest child (for a mode or argmax that exceeds the budget)."""
        fitting = [(log_prob, arch) for arch, log_prob in draws if self.in_budget(arch)]
        if not fitting:
            return self.smallest_in_budget()
        return max(fitting, key=lambda pair: pair[0])[1]

    def smallest_in_budget(self) -> Arch:
        """The fallback when no candidate fits: the space's smallest child, if it fits."""
        fallback = smallest(self.space)
        if not self.in_budget(fallback):
            raise BudgetError("no architecture of the space fits the budget")
        return fallback

    def epoch_metrics(self) -> dict[str, float]:
        """Metrics logged at each epoch end (e.g. the cost of the current best arch)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": random_state(self.rng), "arch_stream": self.arch_stream.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_random_state(self.rng, state["rng"])
        # Checkpoints written before the shared stream counted its batches per strategy.
        used = state.get("arch_stream", {"used": state.get("arch_batches_used", 0)})
        self.arch_stream.load_state_dict(used)


class ArchStream:
    """Endless arch-split batches that a resumed search takes up where it stopped.

    Its state is the number of batches used; a resumed run skips that many of a fresh stream
    (whose order depends only on the seed), so it sees the batches an uninterrupted run would.
    """

    def __init__(self, open_stream: Callable[[], Iterator[Batch]], device: torch.device) -> None:
        self._open = open_stream
        self.device = device
        self.used = 0
        self._batches: Iterator[Batch] | None = None

    def next(self) -> Batch:
        if self._batches is None:
            self._batches = itertools.islice(self._open(), self.used, None)
        self.used += 1
        return tuple(t.to(self.device) for t in next(self._batches))

    def state_dict(self) -> dict[str, int]:
        return {"used": self.used}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.used = state["used"]
        self._batches = None


@dataclass(frozen=True)
class Cadence:
    """When architecture steps happen: none during the first ``warmup_steps`` steps, then one
    after every ``arch_every``-th weight step (counted from the run's first step)."""

    warmup_steps: int
    arch_every: int = 1

    @classmethod
    def of(cls, warmup_epochs: float, arch_every: int, steps_per_epoch: int) -> Cadence:
        if warmup_epochs < 0 or arch_every < 1:
            raise ConfigError(
                f"warmup_epochs must be >= 0 and arch_every >= 1, got {warmup_epochs} and "
                f"{arch_every}"
            )
        return cls(round(warmup_epochs * steps_per_epoch), arch_every)

    def searching(self, step: int) -> bool:
        """Whether the warm-up (weights only) is over at ``step``."""
        return step >= self.warmup_steps

    def arch_step_due(self, step: int) -> bool:
        """Whether an architecture step follows the weight step ``step``."""
        return self.searching(step) and (step + 1) % self.arch_every == 0


def accumulating(model: torch.nn.Module) -> contextlib.AbstractContextManager:
    """Forward and backward passes whose gradients add up on this rank without DDP's
    all-reduce (DDP's ``no_sync``), for every pass of a step but the last, so that a step of
    several children makes one all-reduce; a no-op for a model that is not DDP-wrapped."""
    no_sync = getattr(model, "no_sync", None)
    return no_sync() if no_sync is not None else contextlib.nullcontext()


def entropy(logits: Tensor) -> float:
    """Entropy in nats of the categorical distribution ``softmax(logits)``."""
    log_p = torch.log_softmax(logits.detach(), -1)
    return float(-(log_p.exp() * log_p).sum())


STRATEGIES: Registry[type[Strategy]] = Registry("strategy", ConfigError)
OPTIONS = "search.options"  # where a recipe holds a strategy's ``Config``


def read_options(strategy: type[Strategy], options: dict[str, Any]) -> Any:
    """``strategy``'s ``Config`` from a recipe's ``search.options``, every key, type and range
    checked, an error naming the strategy and the whole key (``search.options.arch_lr``)."""
    return from_dict(strategy.Config, options, f"search.strategy {strategy.name}", f"{OPTIONS}.")
