"""Random search through a weight-sharing supernet (the baseline every method must beat).

Training: each step trains one child drawn uniformly from the whole space (single-path uniform
sampling). Derivation: draw ``num_candidates`` archs within the MACs budget, evaluate each child
on the arch split with recalibrated BN, keep the best. The chosen arch is then trained from
scratch like any other method's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from supernas.errors import BudgetError
from supernas.space.arch import Arch
from supernas.space.choices import sample, smallest
from supernas.strategies.base import STRATEGIES, Batch, Strategy


@STRATEGIES.register("random")
class RandomSearch(Strategy):
    name = "random"

    @dataclass
    class Config:
        num_candidates: int = 20  # archs evaluated at derivation
        calibration_batches: int = 10  # training batches to recompute a candidate's BN
        max_draws: int = 10000  # give up finding in-budget archs after this many draws

    def __init__(self, supernet, config, context) -> None:
        super().__init__(supernet, config, context)
        self.candidates: list[dict] = []  # every evaluated candidate, for the report

    def step(self, batch: Batch, step: int) -> dict[str, float]:
        images, labels = (t.to(self.context.device) for t in batch)
        arch = sample(self.space, self.rng)
        optimizer = self.context.weight_optimizer
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.context.model(images, arch), labels)
        loss.backward()
        optimizer.step()
        return {"train/loss": loss.item(), "train/child_macs": self.context.cost(arch).macs}

    def _in_budget(self, arch: Arch) -> bool:
        budget = self.context.budget_macs
        return budget is None or self.context.cost(arch).macs <= budget

    def _candidates(self) -> list[Arch]:
        found: dict[str, Arch] = {}
        for _ in range(self.config.max_draws):
            arch = sample(self.space, self.rng)
            if self._in_budget(arch):
                found.setdefault(arch.digest, arch)
            if len(found) == self.config.num_candidates:
                break
        if not found:
            fallback = smallest(self.space)
            if not self._in_budget(fallback):
                raise BudgetError("no architecture of the space fits the budget")
            found[fallback.digest] = fallback
        return list(found.values())

    def derive(self) -> Arch:
        archs = self._candidates()
        self.candidates = [self.score(arch, self.config.calibration_batches) for arch in archs]
        scores = [record["arch_top1"] for record in self.candidates]
        return archs[scores.index(max(scores))]  # the first best, as drawn
