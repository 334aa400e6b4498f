"""Latency tables for tests: every layer key of a space, with made-up positive entries."""

import torch

from supernas.cost.latency import LatencyTable
from supernas.cost.latency_build import table_layers
from supernas.space import SearchSpace


def fake_table(space: SearchSpace, scale: float = 1.0) -> LatencyTable:
    """A table of ``space`` whose entries are drawn from ``scale * U(0.1, 1.1)`` ms."""
    generator = torch.Generator().manual_seed(1)
    keys = sorted(table_layers(space))
    values = (scale * (0.1 + torch.rand(len(keys), generator=generator))).tolist()
    return LatencyTable(
        space=space.name,
        fingerprint=space.fingerprint,
        device="cpu",
        device_name="cpu:test",
        torch_version=torch.__version__,
        threads=1,
        batch_size=1,
        warmup=1,
        repeats=1,
        rounds=1,
        entries=dict(zip(keys, values, strict=True)),
        overhead_ms=0.05 * scale,
    )
