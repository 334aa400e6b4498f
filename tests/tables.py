"""Latency tables for tests: a tiny space to measure fast, and tables of every layer key of a
space with made-up positive entries."""

import torch

from supernas.cost.latency import LatencyTable
from supernas.cost.latency_build import Timing, table_layers
from supernas.space import BlockSpec, HeadSpec, SearchSpace, StemSpec

FAST = Timing(batch_size=1, warmup=1, repeats=2, rounds=2, spread_s=0)


def tiny_space(name="tiny") -> SearchSpace:
    return SearchSpace(
        name=name,
        in_channels=1,
        num_classes=4,
        resolutions=(8, 12),
        stem=StemSpec(out_channels=(8, 12), stride=1),
        blocks=(
            BlockSpec(1, 2, (8, 12), (2, 3), (3, 5), attentions=(0, 1)),
            BlockSpec(1, 1, (12,), (2,), (3,), activations=("relu", "hswish"), optional=True),
        ),
        head=HeadSpec(hidden_channels=(16, 24)),
    )


def fake_table(space: SearchSpace, scale: float = 1.0) -> LatencyTable:
    """A table of ``space`` whose entries are drawn from ``scale * U(0.1, 1.1)`` ms, with
    fitted terms of both kinds, so that every exact and expected cost must add them."""
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
        per_layer_ms=-0.02 * scale,
    )
