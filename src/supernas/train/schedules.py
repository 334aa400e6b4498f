"""Learning-rate schedules as step -> multiplier functions (for ``LambdaLR``)."""

from __future__ import annotations

import math
from collections.abc import Callable

Schedule = Callable[[int], float]


def cosine_with_warmup(total_steps: int, warmup_steps: int = 0, final_frac: float = 0.0) -> Schedule:
    """Linear warm-up from 0 to 1, then a cosine from 1 down to ``final_frac``."""

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * progress))

    return multiplier


def exp_constant_end(
    decay: float, decay_every_steps: float, floor_frac: float = 0.05, warmup_steps: int = 0
) -> Schedule:
    """BigNAS: linear warm-up, then ``decay ** (t / decay_every)`` until it reaches ``floor_frac``,
    constant from then on (the big children would overfit if it kept falling while the small
    ones still learn)."""

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(decay ** ((step - warmup_steps) / decay_every_steps), floor_frac)

    return multiplier
