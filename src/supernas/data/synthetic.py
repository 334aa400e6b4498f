"""A deterministic synthetic classification set, for tests and for trying the pipeline offline.

Each class has a smooth random prototype image; a sample is its class prototype plus pixel
noise. A model, even a linear one, can learn it, so a test can check that training lowers the
loss, while the whole set is a pure function of its seed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from supernas.data.datasets import ImageTensorDataset
from supernas.errors import DataError

_PROTOTYPE_GRID = 4  # prototypes are random on a 4 x 4 grid, then upsampled: smooth blobs
_NOISE_STD = 0.15  # on the [0, 1] pixel scale; prototypes differ by ~0.3 per pixel on average
_STREAMS = {"prototypes": 0, "train": 1, "test": 2}


def _generator(seed: int, stream: str) -> torch.Generator:
    # Separate, well-mixed streams per purpose, so the train and test draws of one seed never
    # overlap and seed 1's prototypes are unrelated to seed 0's samples.
    state = np.random.SeedSequence([seed, _STREAMS[stream]]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def make_synthetic(
    n: int,
    *,
    channels: int = 1,
    size: int = 28,
    num_classes: int = 10,
    seed: int = 0,
    train: bool = True,
) -> ImageTensorDataset:
    """Draws `n` uint8 images (n, channels, size, size) with balanced labels.

    The train and test sets of one seed share the prototypes and differ in their noise, like
    two samples of one distribution.

    Raises:
        DataError: A size, count or the seed is not positive (the seed may be 0).
    """
    for field, value, low in (
        ("n", n, 1),
        ("channels", channels, 1),
        ("size", size, 1),
        ("num_classes", num_classes, 2),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise DataError(f"synthetic {field} must be an integer >= {low}, got {value!r}")
    grid = min(_PROTOTYPE_GRID, size)
    coarse = torch.rand(num_classes, channels, grid, grid, generator=_generator(seed, "prototypes"))
    prototypes = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    samples = _generator(seed, "train" if train else "test")
    order = torch.randperm(n, generator=samples)
    labels = order % num_classes
    noise = torch.randn(n, channels, size, size, generator=samples) * _NOISE_STD
    pixels = (prototypes[labels] + noise).clamp(0.0, 1.0)
    return ImageTensorDataset((pixels * 255).round().to(torch.uint8), labels)
