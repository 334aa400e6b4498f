"""The interface every search method implements, and the context a search gives it.

A strategy owns its architecture parameters and its random state, and decides how the shared
supernet runs on each batch (one sampled child, a masked mixture, binary gates, several samples,
a sandwich). It never owns a copy of the network. The weight optimiser is created by the search
task and handed in, so strategies do not depend on the training package.
"""

from __future__ import annotations

import abc
import itertools
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from supernas.cost.macs import Cost
from supernas.errors import BudgetError, ConfigError
from supernas.nn.supernet import Supernet
from supernas.registry import Registry
from supernas.space.arch import Arch
from supernas.space.choices import smallest
from supernas.space.space import SearchSpace
from supernas.strategies.evaluation import evaluate_child

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

    cost: Callable[[Arch], Cost]  # exact cost of an arch
    model: torch.nn.Module  # what training steps call: the supernet, DDP-wrapped under torchrun
    budget_macs: float | None  # derive an arch at most this expensive (None: no budget)
    weight_optimizer: torch.optim.Optimizer
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

    def __init__(self, supernet: Supernet, config: Config, context: SearchContext) -> None:
        self.supernet = supernet
        self.space: SearchSpace = supernet.space
        self.config = config
        self.context = context
        self.rng = random.Random(context.seed)
        check_budget(self.space, context)

    def arch_parameters(self) -> list[Tensor]:
        """The architecture parameters (empty for methods without any)."""
        return []

    @abc.abstractmethod
    def step(self, batch: Batch, step: int) -> dict[str, float]:
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

    def score(self, arch: Arch, calibration_batches: int) -> dict[str, Any]:
        """A candidates.json record: ``arch``'s cost and its arch-split top-1 as cut from the
        supernet, BN recomputed on ``calibration_batches`` training batches."""
        context = self.context
        calibration = itertools.islice(context.calibration_batches(), calibration_batches)
        accuracy = evaluate_child(
            self.supernet, arch, calibration, context.arch_batches(), context.device
        )
        cost = context.cost(arch)
        return {"arch": str(arch), "macs": cost.macs, "params": cost.params, "arch_top1": accuracy}

    def epoch_metrics(self) -> dict[str, float]:
        """Metrics logged at each epoch end (e.g. the cost of the current best arch)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.setstate(_rng_from_state(state["rng"]))


def check_budget(space: SearchSpace, context: SearchContext) -> None:
    """Refuses a budget below the smallest child before any work is done."""
    if context.budget_macs is None:
        return
    floor = context.cost(smallest(space)).macs
    if context.budget_macs < floor:
        raise BudgetError(
            f"budget {context.budget_macs / 1e6:.3g}M MACs is below the smallest child of "
            f"{space.name} ({floor / 1e6:.3g}M MACs)"
        )


def _rng_state(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_from_state(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


STRATEGIES: Registry[type[Strategy]] = Registry("strategy", ConfigError)
