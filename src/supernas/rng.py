"""Seeds and random-state plumbing shared by every layer.

One run seed feeds many generators (the data order of each epoch, the arch-split stream, the
batches that recalibrate BatchNorm, a strategy's draws). `derive_seed` gives each purpose its
own seed from the run seed and the purpose's name, so streams do not overlap as ``seed + 1``
and ``seed * 1_000_003 + k`` can, and a new purpose cannot shift an existing one.
"""

from __future__ import annotations

import hashlib
import random


def derive_seed(seed: int, purpose: str) -> int:
    """The seed of ``purpose`` (e.g. ``"epoch/3"``) in a run seeded with ``seed``."""
    digest = hashlib.sha256(f"{seed}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2  # below 2**62: room for seed + epoch


def random_state(rng: random.Random) -> list:
    """A `random.Random`'s state as plain lists, which a weights-only checkpoint can hold."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_random_state(rng: random.Random, state: list) -> None:
    """Restores `random_state`'s output."""
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))
