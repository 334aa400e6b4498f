"""SPOS: single-path one-shot search with uniform sampling, then evolution.

Guo et al., "Single Path One-Shot Neural Architecture Search with Uniform Sampling", ECCV 2020
(arXiv 1904.00420), sections 3.2-3.4:

- **Supernet training** (section 3.2): each step trains one child drawn uniformly from the whole
  space, so every choice's weights are trained equally and the supernet's ranking of children
  is not biased towards the ones a controller happened to prefer.
- **Evolutionary search** (section 3.4, Algorithm 1) after training, with the supernet frozen:
  a population of ``population`` children drawn uniformly within the budget; each generation
  keeps the ``parents`` best seen so far (top-k), and breeds ``population // 2`` children by
  mutation (each decision redrawn uniformly with probability ``mutation_prob``) and the rest
  by crossover (each decision taken from one of two random parents). A child outside the
  budget is redrawn, as the paper rejects candidates that violate the constraint, so every
  child scored is within it.
- **Scoring** (section 3.4): each child is cut from the supernet, its BatchNorm statistics are
  recomputed on ``calibration_batches`` training batches (the paper's 20,000 images), and its
  top-1 on the arch split is its fitness. Children already scored are not scored again.

The derived arch is the best child scored, trained from scratch afterwards like any other
method's. Simplifications: the paper's population of 50, 20 generations and top-10 are the
defaults, but its channel-number search in the supernet blocks is the space's width choice,
and the FLOPs constraint is the search's budget (``search.budget``: MACs, parameters or latency).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from supernas.config import check_ranges
from supernas.errors import ConfigError
from supernas.space.arch import Arch
from supernas.space.choices import arch_from_choices, choices_of, decisions, sample
from supernas.strategies.base import OPTIONS, STRATEGIES, Batch, Strategy


@STRATEGIES.register("spos")
class SPOS(Strategy):
    name = "spos"

    @dataclass
    class Config:
        population: int = 50  # children per generation (the paper's 50)
        generations: int = 20  # generations after the first (the paper's 20)
        parents: int = 10  # top-k children that breed (the paper's 10)
        mutation_prob: float = 0.1  # chance that a mutation redraws a decision (paper: 0.1)
        calibration_batches: int = 10  # training batches to recompute a child's BN
        max_draws: int = 10000  # give up finding an in-budget child after this many draws

        def __post_init__(self) -> None:
            check_ranges(
                OPTIONS,
                self,
                positive=("calibration_batches", "max_draws"),
                non_negative=("generations",),
            )
            for name in ("population", "parents"):  # a crossover needs two parents
                if getattr(self, name) < 2:
                    raise ConfigError(f"{OPTIONS}.{name} = {getattr(self, name)} must be >= 2")
            if not 0 <= self.mutation_prob <= 1:  # NaN too
                raise ConfigError(f"{OPTIONS}.mutation_prob {self.mutation_prob} is not in [0, 1]")

    def step(self, batch: Batch, step: int) -> dict[str, float | Tensor]:
        return self.train_child(batch, sample(self.space, self.rng))

    def derive(self) -> Arch:
        """Algorithm 1: evolve in-budget children, scored on the arch split (module doc)."""
        config = self.config
        scored: dict[str, tuple[Arch, dict[str, Any]]] = {}
        generation = [self._draw(self._uniform) for _ in range(config.population)]
        for index in range(config.generations + 1):
            for arch in generation:
                if arch.digest not in scored:
                    record = self.score(arch, config.calibration_batches)
                    scored[arch.digest] = (arch, {**record, "generation": index})
            if index == config.generations:
                break
            ranked = sorted(scored.values(), key=lambda item: -item[1]["arch_top1"])
            parents = [arch for arch, _ in ranked[: config.parents]]
            generation = self._offspring(parents)
        self.candidates = [record for _, record in scored.values()]
        best = max(scored.values(), key=lambda item: item[1]["arch_top1"])
        return best[0]

    def _offspring(self, parents: list[Arch]) -> list[Arch]:
        half = self.config.population // 2
        mutants = [self._draw(lambda: self._mutate(self.rng.choice(parents))) for _ in range(half)]
        crosses = [
            self._draw(lambda: self._cross(*self.rng.sample(parents, 2)))
            for _ in range(self.config.population - half)
        ]
        return mutants + crosses

    def _uniform(self) -> Arch:
        return sample(self.space, self.rng)

    def _mutate(self, parent: Arch) -> Arch:
        chosen = choices_of(self.space, parent)
        for decision in decisions(self.space):
            if self.rng.random() < self.config.mutation_prob:
                chosen[decision.name] = self.rng.choice(decision.options)
        return arch_from_choices(self.space, chosen)

    def _cross(self, first: Arch, second: Arch) -> Arch:
        a, b = choices_of(self.space, first), choices_of(self.space, second)
        chosen = {name: (a if self.rng.random() < 0.5 else b)[name] for name in a}
        return arch_from_choices(self.space, chosen)

    def _draw(self, make: Callable[[], Arch]) -> Arch:
        """An in-budget child from ``make`` (redrawn until one fits), else the smallest."""
        for _ in range(self.config.max_draws):
            arch = make()
            if self.in_budget(arch):
                return arch
        return self.smallest_in_budget()
