"""ProxylessNAS on Fashion-MNIST under CPU latency targets, and the same search under MACs.

Runs the search phase of ``fmnist_small`` once per latency target (1.8 and 2.4 ms by default)
with the latency term from a latency table of this CPU (batch 1, one thread; built here unless
``--lut`` names one), and once with exact MACs in the same slot, all with the same data, seed and
schedule. The derived archs are then measured end to end on this CPU in a fresh process
(standalone model, batch 1, one thread, the smallest over 5 interleaved passes of the median of
25 runs) and reported beside their predicted latency and MACs. The claims checked: every
latency-targeted arch measures within 10% of its target or under it, and the latency and MACs
costs lead to different archs. Prints one JSON line last.

The arch LR (0.3) is far above the paper's 1e-3 because the search is far shorter: five of the
six blocks of ``fmnist_small`` have 72-73 candidates (ProxylessNAS's blocks have 7), and a
two-path step moves two of them, so in about 225 arch steps each of those logits is updated
only about 6 times.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

import torch
from _common import hardware, run_kind

from supernas.api import run_search_phase
from supernas.cost.latency import LatencyTable
from supernas.cost.latency_build import Deployment, Timing, build_table, measure_archs
from supernas.cost.macs import arch_cost
from supernas.recipe import load_run_config
from supernas.space import get_space
from supernas.space.arch import arch_from_string
from supernas.train.distributed import DistEnv

T = TypeVar("T")


def _search(args: argparse.Namespace, options: str, budget: str) -> tuple:
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
        f"search.budget={budget}",
    ]
    cfg = load_run_config(None, settings)
    space = get_space(cfg.space)
    torch.manual_seed(cfg.seed)
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        cpu = torch.device("cpu")
        arch = run_search_phase(cfg, space, Path(run_dir), False, DistEnv(), cpu).arch
        return arch, time.perf_counter() - start


def build_lut(path: Path, timing: Timing, runtime: str = "torch", precision: str = "fp32") -> None:
    """A latency table of ``fmnist_small`` on one thread, written to ``path``."""
    deployment = Deployment(runtime, precision, threads=1)
    build_table(get_space("fmnist_small"), deployment, timing).save(path)


def measure(
    texts: list[str], timing: Timing, runtime: str = "torch", precision: str = "fp32"
) -> list[float]:
    """End-to-end latency (ms) of ``fmnist_small`` archs on one thread."""
    torch.set_num_threads(1)
    space = get_space("fmnist_small")
    archs = [arch_from_string(space, text) for text in texts]
    return measure_archs(space, archs, Deployment(runtime, precision, threads=1), timing)


def in_fresh_process(function: Callable[..., T], *args: object) -> T:
    """``function(*args)`` run in a new process; every timing here runs this way.

    Timing sets glibc's malloc to keep freed memory, for the rest of the process (see
    `keep_freed_memory`), and training under that setting slows every later forward pass:
    timed in this process after the three searches, the archs measured 22-30% slower than in
    a fresh one (1.84 against 1.42 ms, for example). A deployed model runs in a process that
    has not trained, so the searches must not run under it and the timings must not follow them.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short search (minutes)")
    parser.add_argument("--lut", type=Path, help="latency table of fmnist_small on this CPU")
    parser.add_argument(
        "--latency-targets", type=float, nargs="+", default=[1.8, 2.4], help="ms, one search each"
    )
    parser.add_argument("--macs-target", type=float, default=6e6)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--images", type=int)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--arch-lr", type=float, default=0.3)
    parser.add_argument(
        "--loss", default="budget", help="budget (hinge), linear (paper) or mul_log (code)"
    )
    parser.add_argument("--loss-lambda", type=float, default=5.0, help="budget, linear: weight")
    args = parser.parse_args()
    args.epochs = args.epochs or (2 if args.quick else 4)
    args.images = args.images or (6000 if args.quick else 12000)
    torch.set_num_threads(1)
    space = get_space("fmnist_small")
    timing = Timing(batch_size=1, warmup=10, repeats=25, rounds=5)
    if args.lut is None:
        args.lut = Path(tempfile.mkdtemp()) / "lut.json"
        in_fresh_process(build_lut, args.lut, timing)
    table = LatencyTable.load(args.lut)
    common = (
        f"mode: two_path, arch_every: 1, arch_lr: {args.arch_lr}, warmup_epochs: 1, "
        f"loss: {args.loss}, loss_lambda: {args.loss_lambda}"
    )
    runs = [("latency", target) for target in args.latency_targets] + [("macs", args.macs_target)]
    results = []
    for cost, target in runs:
        source = f", lut: {args.lut}" if cost == "latency" else ""
        arch, seconds = _search(
            args, f"{{{common}}}", f"{{metric: {cost}, target: {target}{source}}}"
        )
        results.append(
            {
                "cost": cost,
                "target": target,
                "arch": str(arch),
                "predicted_ms": round(table.predict(space, arch), 4),
                "macs": arch_cost(space, arch).macs,
                "search_s": round(seconds, 1),
            }
        )
        print(json.dumps(results[-1]))
    # Every arch measured in the same interleaved passes, after the searches (a quiet CPU).
    measured = in_fresh_process(measure, [r["arch"] for r in results], timing)
    for record, ms in zip(results, measured, strict=True):
        record["measured_ms"] = round(ms, 4)
    latency = [r for r in results if r["cost"] == "latency"]
    macs_arch = results[-1]["arch"]
    print(
        json.dumps(
            {
                "benchmark": "proxyless_search",
                "hardware": hardware(),
                "run": run_kind(args.quick, faithful=True),
                "epochs": args.epochs,
                "images": args.images,
                "loss": args.loss,
                "loss_lambda": args.loss_lambda,
                "arch_lr": args.arch_lr,
                "results": results,
                "latency_within_10pct_or_under": all(
                    r["measured_ms"] <= 1.1 * r["target"] for r in latency
                ),
                "archs_differ": all(r["arch"] != macs_arch for r in latency),
            }
        )
    )


if __name__ == "__main__":
    main()
