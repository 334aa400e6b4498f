"""Random search through a weight-sharing supernet (the baseline every method must beat).

Training: each step trains one child drawn uniformly from the whole space (single-path uniform
sampling). Derivation: draw ``num_candidates`` archs within the budget, evaluate each child
on the arch split with recalibrated BN, keep the best. The chosen arch is then trained from
scratch like any other method's.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from supernas.config import check_ranges
from supernas.space.arch import Arch
from supernas.space.choices import sample
from supernas.strategies.base import OPTIONS, STRATEGIES, Batch, Strategy


@STRATEGIES.register("random")
class RandomSearch(Strategy):
    name = "random"

    @dataclass
    class Config:
        num_candidates: int = 20  # archs evaluated at derivation
        calibration_batches: int = 10  # training batches to recompute a candidate's BN
        max_draws: int = 10000  # give up finding in-budget archs after this many draws

        def __post_init__(self) -> None:
            check_ranges(
                OPTIONS, self, positive=("num_candidates", "calibration_batches", "max_draws")
            )

    def step(self, batch: Batch, step: int) -> dict[str, float | Tensor]:
        arch = sample(self.space, self.rng)
        return {**self.train_child(batch, arch), "train/child_cost": self.context.budget.cost(arch)}

    def _candidates(self) -> list[Arch]:
        found: dict[str, Arch] = {}
        for _ in range(self.config.max_draws):
            arch = sample(self.space, self.rng)
            if self.in_budget(arch):
                found.setdefault(arch.digest, arch)
            if len(found) == self.config.num_candidates:
                break
        return list(found.values()) or [self.smallest_in_budget()]

    def derive(self) -> Arch:
        archs = self._candidates()
        self.candidates = [self.score(arch, self.config.calibration_batches) for arch in archs]
        scores = [record["arch_top1"] for record in self.candidates]
        return archs[scores.index(max(scores))]  # the first best, as drawn
