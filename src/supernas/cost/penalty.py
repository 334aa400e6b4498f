"""How a differentiable expected cost enters a search loss.

``target`` is the user's budget ``T`` in the cost's own unit (MACs, parameters or ms):

- ``mul_log`` (FBNet, FBNetV2; ProxylessNAS's code in its normalised form):
  ``alpha * CE * (log E[cost] / log T) ** beta``; FBNet writes ``alpha * CE * log(cost) ** beta``,
  whose scale depends on the unit; dividing by ``log T`` makes the factor ``alpha`` at the target.
- ``budget``: ``CE + lam * max(0, E[cost] / T - 1)``, which penalises only the excess.
- ``linear``: ``CE + lam * (E[cost] - T) / T``, which keeps pushing the cost down below ``T``.
- ``absolute`` (TuNAS, Bender et al., CVPR 2020, its absolute-value reward):
  ``CE + lam * |E[cost] / T - 1|``, which pulls the cost to ``T`` from either side, so a search
  whose expectation starts above the budget does not settle far below it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from supernas.errors import ConfigError

FORMS = ("mul_log", "budget", "linear", "absolute")


@dataclass(frozen=True)
class CostPenalty:
    form: str = "mul_log"
    alpha: float = 0.2  # mul_log: the scale of the loss at the target
    beta: float = 0.6  # mul_log: the exponent
    lam: float = 1.0  # budget / linear / absolute: the weight of the relative difference

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ConfigError(f"cost loss {self.form!r} is not one of {', '.join(FORMS)}")

    def __call__(self, ce: Tensor, expected: Tensor, target: float) -> Tensor:
        expected = expected.to(ce.dtype)
        if self.form == "mul_log":
            ratio = torch.log(expected) / torch.log(torch.tensor(float(target)))
            return self.alpha * ce * ratio.clamp_min(1e-6) ** self.beta
        relative = expected / target - 1
        if self.form == "budget":
            relative = relative.clamp_min(0)
        elif self.form == "absolute":
            relative = relative.abs()
        return ce + self.lam * relative
