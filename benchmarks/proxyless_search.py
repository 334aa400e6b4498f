"""ProxylessNAS on Fashion-MNIST under a CPU latency target, and the same search under MACs.

Runs the search phase of ``fmnist_small`` twice with the same data, seed and schedule: once with
the latency term from a latency table of this CPU (batch 1, one thread; built here unless
``--lut`` names one), once with exact MACs in the same slot. The two derived archs are then
measured end to end on this CPU (standalone model, batch 1, one thread, the smallest over 5
interleaved passes of the median of 25 runs) and reported beside their predicted latency and
MACs. The claim checked: the latency-targeted arch measures within 10% of the target or under
it, and the two costs lead to different archs. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from _common import hardware

from supernas.api import run_search_phase
from supernas.cost.latency import LatencyTable
from supernas.cost.latency_build import Timing, build_table, measure_archs
from supernas.cost.macs import arch_cost
from supernas.recipe import load_run_config
from supernas.space import get_space
from supernas.train.distributed import DistEnv


def _search(args: argparse.Namespace, options: str) -> tuple:
    settings = [
        "space=fmnist_small",
        "device=cpu",
        "data.name=fashion_mnist",
        f"data.batch_size={args.batch_size}",
        "data.arch_fraction=0.2",
        f"search.limit_train={args.images}",
        f"search.epochs={args.epochs}",
        "search.lr=0.05",
        "search.log_every=20",
        "search.checkpoint_every=100000",
        "search.strategy=proxyless",
        f"search.options={options}",
    ]
    cfg = load_run_config(None, settings)
    space = get_space(cfg.space)
    torch.manual_seed(cfg.seed)
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        arch, _ = run_search_phase(cfg, space, Path(run_dir), False, DistEnv(), torch.device("cpu"))
        return arch, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short search (minutes)")
    parser.add_argument("--lut", type=Path, help="latency table of fmnist_small on this CPU")
    parser.add_argument("--latency-target", type=float, default=1.8, help="ms")
    parser.add_argument("--macs-target", type=float, default=6e6)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--images", type=int)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--arch-lr", type=float, default=0.03)
    parser.add_argument(
        "--loss", default="budget", help="budget (hinge), linear (paper) or mul_log (code)"
    )
    parser.add_argument("--loss-lambda", type=float, default=1.0, help="budget, linear: weight")
    args = parser.parse_args()
    args.epochs = args.epochs or (2 if args.quick else 4)
    args.images = args.images or (6000 if args.quick else 12000)
    torch.set_num_threads(1)
    space = get_space("fmnist_small")
    timing = Timing(batch_size=1, warmup=10, repeats=25, rounds=5)
    if args.lut is None:
        args.lut = Path(tempfile.mkdtemp()) / "lut.json"
        build_table(space, torch.device("cpu"), 1, timing).save(args.lut)
    table = LatencyTable.load(args.lut)
    common = (
        f"mode: two_path, arch_every: 1, arch_lr: {args.arch_lr}, warmup_epochs: 1, "
        f"loss: {args.loss}, loss_lambda: {args.loss_lambda}"
    )
    runs = {
        "latency": f"{{{common}, cost: latency, lut: {args.lut}, target: {args.latency_target}}}",
        "macs": f"{{{common}, cost: macs, target: {args.macs_target}}}",
    }
    results, archs = {}, []
    for name, options in runs.items():
        arch, seconds = _search(args, options)
        archs.append(arch)
        results[name] = {
            "target": args.latency_target if name == "latency" else args.macs_target,
            "arch": str(arch),
            "predicted_ms": round(table.predict(space, arch), 4),
            "macs": arch_cost(space, arch).macs,
            "search_s": round(seconds, 1),
        }
        print(json.dumps({name: results[name]}))
    # Both archs measured in the same interleaved passes, after the searches (a quiet CPU).
    measured = measure_archs(space, archs, torch.device("cpu"), timing)
    for record, ms in zip(results.values(), measured, strict=True):
        record["measured_ms"] = round(ms, 4)
    latency = results["latency"]
    print(
        json.dumps(
            {
                "benchmark": "proxyless_search",
                "hardware": hardware(),
                "epochs": args.epochs,
                "images": args.images,
                "loss": args.loss,
                "loss_lambda": args.loss_lambda,
                "arch_lr": args.arch_lr,
                "results": results,
                "latency_within_10pct_or_under": latency["measured_ms"]
                <= 1.1 * args.latency_target,
                "archs_differ": results["latency"]["arch"] != results["macs"]["arch"],
            }
        )
    )


if __name__ == "__main__":
    main()
