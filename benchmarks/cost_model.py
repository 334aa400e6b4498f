"""Checks the analytic cost model against PyTorch's own counts on random children.

For every registered space, draws archs, builds the standalone model, and compares our MACs with
``FlopCounterMode`` / 2 and our parameter count with ``sum(p.numel())``. ImageNet presets run at
a reduced resolution unless ``--full`` (the formulas do not depend on it). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time

import torch
from _common import hardware, run_kind
from torch.utils.flop_counter import FlopCounterMode

from supernas.cost.macs import arch_cost
from supernas.nn import build_model
from supernas.space import SPACES, biggest, get_space, sample, smallest


def _counted(space, arch) -> tuple[float, int]:
    model = build_model(space, arch).eval()
    x = torch.randn(1, space.in_channels, arch.resolution, arch.resolution)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2, sum(p.numel() for p in model.parameters())


def check_space(name: str, archs: int, full: bool, seed: int) -> dict:
    space = get_space(name)
    if not full and max(space.resolutions) > 64:
        space = dataclasses.replace(space, resolutions=(64,))
    rng = random.Random(seed)
    picks = [smallest(space), biggest(space)] + [sample(space, rng) for _ in range(archs - 2)]
    mac_errors, param_errors = [], []
    for arch in picks:
        cost = arch_cost(space, arch)
        macs, params = _counted(space, arch)
        mac_errors.append(abs(cost.macs - macs) / macs)
        param_errors.append(abs(cost.params - params) / params)
    return {
        "space": name,
        "resolutions": list(space.resolutions),
        "archs": len(picks),
        "max_rel_mac_error": max(mac_errors),
        "max_rel_param_error": max(param_errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--archs", type=int, default=100, help="archs per space")
    parser.add_argument("--quick", action="store_true", help="20 archs per space")
    parser.add_argument("--full", action="store_true", help="ImageNet presets at full resolution")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    archs = 20 if args.quick else args.archs
    start = time.perf_counter()
    results = [check_space(name, archs, args.full, args.seed) for name in SPACES.names()]
    print(
        json.dumps(
            {
                "benchmark": "cost_model",
                "hardware": hardware(),
                "run": run_kind(args.quick, faithful=True),
                "results": results,
                "wall_s": round(time.perf_counter() - start, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
