"""FP-NAS adaptive sampling against PARSEC's fixed K, same steps, same data, same seed.

On ``fmnist_small`` (Fashion-MNIST), runs the FP-NAS search phase twice per fixed K: once with
a fixed K (PARSEC; K = 8, and the paper's K = 14 unless ``--quick``) and once with the adaptive
``K_t = clip(ceil(lambda * H_t), min_samples, K)`` where ``lambda = K / H_0`` (K starts at the
fixed value and falls with the entropy). Reports the samples drawn (weight and arch steps), the
search wall time, and the arch-split top-1 of each derived arch (cut from its supernet, BN
recalibrated), plus the entropies of the coarse-to-fine run against its factorised-only
reference. With ``--seeds`` every search runs once per seed (the seed moves the weight init,
the data order and the sampled archs) and the accuracies and wall times are means over the
seeds: one derived arch's arch-split top-1 varies by points between seeds (70.0-75.2% for
fixed K = 8 over seeds 0-2), far more than the 0.5 points the goal asks about. Goal: at least
40% fewer samples and a mean accuracy of the adaptive runs no more than 0.5 points below the
fixed ones, for every K (an adaptive run that scores higher meets it). Prints one JSON line
last; the headline keys are those of the largest K. ``--quick`` (K = 8 on 1,000 images, one
seed) only checks the script, and its JSON says so: a search that short leaves the entropy, and
so K, near its start (24% fewer samples, against 62-69% in the full run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _common import hardware, run_kind

from supernas.api import run_search_phase
from supernas.recipe import load_run_config
from supernas.rundir import METRICS
from supernas.space import get_space
from supernas.strategies.fpnas import ArchDistribution
from supernas.train import read_metrics
from supernas.train.distributed import cleanup, init_distributed, resolve_device


def _settings(args: argparse.Namespace, options: str, seed: int) -> list[str]:
    return [
        "space=fmnist_small",
        f"seed={seed}",
        "device=cpu",
        "data.name=fashion_mnist",
        f"data.batch_size={args.batch_size}",
        "data.arch_fraction=0.2",
        f"search.limit_train={args.images}",
        "search.epochs=1",
        "search.lr=0.05",
        "search.arch_eval_batches=null",
        f"search.log_every={args.log_every}",
        "search.checkpoint_every=100000",
        "search.strategy=fpnas",
        f"search.options={options}",
    ]


def _search(args: argparse.Namespace, options: str, seed: int) -> dict:
    cfg = load_run_config(None, _settings(args, options, seed))
    env = init_distributed(cfg.device)
    device = resolve_device(cfg.device, env)
    space = get_space(cfg.space)
    torch.manual_seed(cfg.seed)
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            start = time.perf_counter()
            arch, candidates, _ = run_search_phase(cfg, space, Path(run_dir), False, env, device)
            wall = time.perf_counter() - start
            records = [
                r for r in read_metrics(Path(run_dir) / "search" / METRICS) if "fpnas/K" in r
            ]
    finally:
        cleanup(env)
    last = records[-1]
    return {
        "samples": int(last["fpnas/samples_total"]),
        "arch_val_acc": round(100 * candidates[0]["arch_top1"], 2),
        "wall_s": round(wall, 1),
        "arch": str(arch),
        "entropy_end": round(last["fpnas/entropy"], 3),
        "entropy_factorized_end": round(last.get("fpnas/entropy_factorized", float("nan")), 3),
        "K_path": [int(r["fpnas/K"]) for r in records],
    }


def _mean(runs: list[dict], key: str) -> float:
    return round(statistics.mean(run[key] for run in runs), 2)


def compare(args: argparse.Namespace, fixed_k: int) -> dict:
    entropy0 = ArchDistribution(get_space("fmnist_small")).entropy()
    common = f"arch_lr: {args.arch_lr}, joint_from: {args.joint_from}"
    scale = fixed_k / entropy0
    adaptive_options = (
        f"{{adaptive: true, max_samples: {fixed_k}, min_samples: {args.min_samples}, "
        f"entropy_scale: {scale:.6f}, {common}}}"
    )
    fixed, adaptive = [], []
    for seed in args.seeds:
        fixed.append(_search(args, f"{{adaptive: false, samples: {fixed_k}, {common}}}", seed))
        adaptive.append(_search(args, adaptive_options, seed))
    fixed_samples, adaptive_samples = _mean(fixed, "samples"), _mean(adaptive, "samples")
    fixed_s, adaptive_s = _mean(fixed, "wall_s"), _mean(adaptive, "wall_s")
    return {
        "fixed_k": fixed_k,
        "fixed_samples": fixed_samples,
        "adaptive_samples": adaptive_samples,
        "sample_reduction": round(1 - adaptive_samples / fixed_samples, 4),
        "fixed_arch_val_acc": _mean(fixed, "arch_val_acc"),
        "adaptive_arch_val_acc": _mean(adaptive, "arch_val_acc"),
        "wall_s_fixed": fixed_s,
        "wall_s_adaptive": adaptive_s,
        "speedup": round(fixed_s / adaptive_s, 2),
        "entropy_scale": round(scale, 4),
        "fixed": fixed,
        "adaptive": adaptive,
    }


def meets_goal(run: dict) -> bool:
    """At least 40% fewer samples, and adaptive at most 0.5 points below fixed on average."""
    accuracy_kept = run["adaptive_arch_val_acc"] >= run["fixed_arch_val_acc"] - 0.5
    return run["sample_reduction"] >= 0.4 and accuracy_kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="K=8 only, fewer images")
    parser.add_argument("--images", type=int, default=None, help="training images searched on")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--arch-lr", type=float, default=0.2)
    parser.add_argument("--joint-from", type=float, default=0.5)
    parser.add_argument("--min-samples", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=1)
    parser.add_argument(
        "--seeds", type=int, nargs="+", help="one search per seed (default 0 1 2; 0 with --quick)"
    )
    args = parser.parse_args()
    if args.images is None:
        args.images = 1000 if args.quick else 6400
    if args.seeds is None:
        args.seeds = [0] if args.quick else [0, 1, 2]
    ks = (8,) if args.quick else (8, 14)
    runs = [compare(args, k) for k in ks]
    steps = len(runs[0]["fixed"][0]["K_path"])
    headline = {k: v for k, v in runs[-1].items() if k not in ("fixed", "adaptive")}
    result = {
        "benchmark": "fpnas_sampling",
        "quick": args.quick,
        "run": run_kind(args.quick, faithful=False),
        "space": "fmnist_small",
        "images": args.images,
        "steps": steps,
        "seeds": args.seeds,
        **headline,
        "goal_met": all(meets_goal(run) for run in runs),
        "runs": runs,
        "hardware": hardware(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
