"""Width rounding rules.

Two published rules exist and give different widths, so a space names the one it uses:

- ``"mobile_vision"``: FBNetV2/FP-NAS (`get_divisible_by` of mobile-vision): round half up to a
  multiple of ``divisor``, add one more step if that lost more than 5%.
- ``"ofa"``: BigNAS/OFA/AttentiveNAS (`make_divisible`): round half up via ``int(v + d/2)``,
  add one step if that lost more than 10%.

The cost model imports these same functions, so analytic counts cannot drift from the model.
"""

from __future__ import annotations

import math


def get_divisible_by(value: float, divisor: int) -> int:
    """mobile-vision's rounding; ``divisor == 1`` keeps the integer part."""
    rounded = int(value)
    if divisor > 1 and value % divisor != 0:
        rounded = max(math.floor(value / divisor + 0.5), 1) * divisor
        if rounded < 0.95 * value:
            rounded += divisor
    return max(rounded, divisor)


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """OFA/AttentiveNAS rounding to a multiple of ``divisor``."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


ROUNDING_RULES = {"mobile_vision": get_divisible_by, "ofa": make_divisible}


def round_width(value: float, divisor: int, rule: str) -> int:
    """Rounds a width with the named rule."""
    return ROUNDING_RULES[rule](value, divisor)
