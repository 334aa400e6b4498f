"""A tiny conv net and synthetic data for the training tests (no other supernas package).

The net has dropout and the data a random flip drawn from torch's global generator, so a
resume that restored the wrong RNG state, or drew batches in another order, changes the
weights and shows.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from supernas.train import ClassifierTask, DistEnv, TrainConfig

SAMPLES, CLASSES, SIZE, BATCH = 80, 4, 8, 8


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1, bias=False),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Dropout(0.3),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class FlipData(Dataset):
    """Fixed random images; each read flips the image with probability 1/2."""

    def __init__(self, samples: int = SAMPLES, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randn(samples, 1, SIZE, SIZE, generator=generator)
        self.labels = torch.randint(0, CLASSES, (samples,), generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if torch.rand(()) < 0.5:  # the global generator, as torchvision transforms use it
            image = image.flip(-1)
        return image, self.labels[index]


def train_loader(kind: str = "generator", env: DistEnv | None = None) -> DataLoader:
    """``generator``: shuffled by a seeded generator; ``global``: by torch's global one;
    ``distributed``: a `DistributedSampler` over ``env``'s ranks."""
    data = FlipData()
    if kind == "distributed":
        env = env or DistEnv()
        sampler = DistributedSampler(data, env.world_size, env.rank, seed=0, drop_last=True)
        return DataLoader(data, BATCH, sampler=sampler)
    generator = torch.Generator().manual_seed(0) if kind == "generator" else None
    return DataLoader(data, BATCH, shuffle=True, generator=generator, drop_last=True)


def eval_loader() -> DataLoader:
    return DataLoader(FlipData(16, seed=1), BATCH)


def classifier_task(
    steps_per_epoch: int, env: DistEnv | None = None, init_seed: int = 0, **overrides: object
) -> ClassifierTask:
    """A `TinyNet` task, its weights drawn with ``init_seed``, with EMA on so that it is
    resumed too."""
    torch.manual_seed(init_seed)
    settings = {"epochs": 2, "lr": 0.2, "ema_decay": 0.9, "warmup_epochs": 0.5, **overrides}
    cfg = TrainConfig(**settings)
    return ClassifierTask(
        TinyNet(), cfg, steps_per_epoch, eval_loader(), torch.device("cpu"), BATCH, env
    )


def flat_state(state: dict, prefix: str = "") -> dict[str, object]:
    """Nested state dict -> {"a.b.0": leaf}, for comparing two states leaf by leaf."""
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return {prefix: state}
    flat = {}
    for key, value in items:
        flat.update(flat_state(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def assert_same_state(actual: dict, expected: dict) -> None:
    """Every leaf equal: tensors bitwise (torch.equal), other values with ==."""
    actual, expected = flat_state(actual), flat_state(expected)
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(actual[key], value), key
        else:
            assert actual[key] == value, key
