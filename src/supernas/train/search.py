"""The task of running a search strategy inside the training loop."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from supernas.strategies.base import Strategy


class SearchTask:
    """Steps a strategy (which updates the supernet and its own parameters) and the LR schedule."""

    def __init__(self, strategy: Strategy, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        self.strategy = strategy
        self.scheduler = scheduler

    def train_step(self, batch: Any, step: int) -> dict[str, float | Tensor]:
        self.strategy.supernet.train()
        lr = self.scheduler.get_last_lr()[0]  # this step's rate, before the scheduler moves on
        values = self.strategy.step(batch, step)
        self.scheduler.step()
        return {**values, "lr": lr}

    def evaluate(self) -> dict[str, float]:
        return self.strategy.epoch_metrics()

    def state_dict(self) -> dict[str, Any]:
        return {
            "supernet": self.strategy.supernet.state_dict(),
            "optimizer": self.strategy.context.weight_optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "strategy": self.strategy.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.strategy.supernet.load_state_dict(state["supernet"])
        self.strategy.context.weight_optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.strategy.load_state_dict(state["strategy"])
