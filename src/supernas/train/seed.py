"""The process's random number generators: seeding, and their state as checkpointable data.

A checkpoint is read with ``torch.load(weights_only=True)``, which accepts tensors, numbers,
strings, lists and dicts only, so each generator's state is converted to those here.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from supernas.rng import random_state, set_random_state


def seed_everything(seed: int) -> None:
    """Seeds Python's, NumPy's and torch's global generators (CUDA's through torch's)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global generator's state, as plain data a weights-only checkpoint can hold."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random_state(random),
        # int64: uint32 tensors support few operations on older torch versions.
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores the generators from `rng_state`'s output."""
    set_random_state(random, state["python"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
