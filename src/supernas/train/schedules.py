"""Learning-rate schedules: pure functions of the step, held in frozen dataclasses.

``schedule.lr(step)`` is the learning rate of optimisation step ``step`` (0-based), and
``schedule(step)`` is its multiplier ``lr(step) / lr0``, the form ``LambdaLR`` calls::

    optimizer = torch.optim.SGD(params, lr=schedule.lr0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

Dataclasses rather than closures because ``LambdaLR.state_dict()`` saves a callable object's
fields (plain numbers here, which a weights-only checkpoint can hold) and drops closures.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

from supernas.errors import ConfigError


@dataclass(frozen=True)
class Schedule(abc.ABC):
    """A learning rate per step; subclasses define `multiplier`."""

    lr0: float  # the peak learning rate

    @abc.abstractmethod
    def multiplier(self, step: int) -> float:
        """``lr(step) / lr0``."""

    def __call__(self, step: int) -> float:
        return self.multiplier(step)

    def lr(self, step: int) -> float:
        return self.lr0 * self.multiplier(step)


def _warmup(step: int, warmup_steps: int) -> float:
    # Step 0 already gets a non-zero rate: a step with lr 0 would be wasted.
    return (step + 1) / warmup_steps


@dataclass(frozen=True)
class _CosineWithWarmup(Schedule):
    total_steps: int
    warmup_steps: int
    final_frac: float

    def multiplier(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup(step, self.warmup_steps)
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.final_frac + (1 - self.final_frac) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class _ExpConstantEnd(Schedule):
    decay: float
    decay_every_steps: float
    floor_frac: float
    warmup_steps: int

    def multiplier(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup(step, self.warmup_steps)
        exponent = (step - self.warmup_steps) / self.decay_every_steps
        return max(self.decay**exponent, self.floor_frac)


def cosine_with_warmup(
    lr0: float, total_steps: int, warmup_steps: int, final_frac: float = 0.0
) -> Schedule:
    """Linear warm-up to ``lr0``, then a half cosine down to ``final_frac * lr0`` at the end.

    Raises:
        ConfigError: ``warmup_steps`` is negative or exceeds ``total_steps``, or
            ``final_frac`` is outside [0, 1].
    """
    if not 0 <= warmup_steps <= total_steps:
        raise ConfigError(f"warm-up of {warmup_steps} steps does not fit in {total_steps} steps")
    _check_fraction("final_frac", final_frac)
    return _CosineWithWarmup(lr0, total_steps, warmup_steps, final_frac)


def exp_constant_end(
    lr0: float,
    decay: float,
    decay_every_steps: float,
    floor_frac: float = 0.05,
    warmup_steps: int = 0,
) -> Schedule:
    """BigNAS's "exponentially decaying with constant ending" (Yu et al., ECCV 2020).

    After a linear warm-up, ``max(lr0 * decay ** (t / decay_every_steps), floor_frac * lr0)``
    with ``t`` counted from the end of the warm-up; the paper uses EfficientNet's 0.97 every
    2.4 epochs and a floor of 5%. The floor is there because the big children overfit when the
    rate keeps falling while the small children still need it to learn.

    Raises:
        ConfigError: ``decay`` is outside (0, 1], ``decay_every_steps`` is not positive,
            ``floor_frac`` is outside [0, 1] or ``warmup_steps`` is negative.
    """
    if not 0 < decay <= 1:
        raise ConfigError(f"decay {decay} is not in (0, 1]")
    if decay_every_steps <= 0:
        raise ConfigError(f"decay_every_steps {decay_every_steps} is not positive")
    if warmup_steps < 0:
        raise ConfigError(f"warmup_steps {warmup_steps} is negative")
    _check_fraction("floor_frac", floor_frac)
    return _ExpConstantEnd(lr0, decay, decay_every_steps, floor_frac, warmup_steps)


def _check_fraction(name: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise ConfigError(f"{name} {value} is not in [0, 1]")
