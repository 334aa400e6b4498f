"""SPOS's evolution against the same number of random draws, on one trained supernet.

Trains the ``fmnist_small`` supernet with SPOS (`recipes/spos_fmnist.yaml`: one uniform child
per step) and runs its evolutionary search within the 4M MACs budget, which scores N distinct
children on the arch split. Then, on the same supernet with the same scoring (BN recomputed on
the same number of training batches, the same arch-split batches), draws N distinct in-budget
children uniformly, once per ``--random-seeds`` seed, and keeps the best of each draw. Goal:
the evolution's best arch-split top-1 is at least the mean of the random draws' bests.
``--quick`` runs the same comparison on 4,000 images for one epoch with a population of 10 for
3 generations: the supernet then scores children at 20-29% on the arch split, where the best of
29 draws is noise, so it only checks the script (its JSON says so). Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _common import hardware, run_kind

from supernas.api import (
    SearchSettings,
    _search_data,
    _strategy,
    load_supernet,
    run_search_phase,
)
from supernas.data import build_data
from supernas.recipe import load_run_config
from supernas.space import get_space, sample
from supernas.train.distributed import cleanup, init_distributed, resolve_device

RECIPE = Path(__file__).parents[1] / "recipes" / "spos_fmnist.yaml"


def _settings(args: argparse.Namespace) -> list[str]:
    return [
        "device=cpu",
        f"search.limit_train={args.images}",
        f"search.epochs={args.epochs}",
        "search.checkpoint_every=100000",
        f"search.options.population={args.population}",
        f"search.options.generations={args.generations}",
        f"search.options.parents={args.parents}",
    ]


def _random_draws(strategy, count: int, seed: int, calibration: int) -> list[float]:
    """Arch-split top-1 of ``count`` distinct in-budget children drawn uniformly."""
    rng, seen, scores = random.Random(seed), set(), []
    while len(scores) < count:
        arch = sample(strategy.space, rng)
        if strategy.in_budget(arch) and arch.digest not in seen:
            seen.add(arch.digest)
            scores.append(strategy.score(arch, calibration)["arch_top1"])
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run of the comparison")
    parser.add_argument("--random-seeds", type=int, nargs="+", default=None)
    args = parser.parse_args()
    quick = args.quick
    args.images = 4000 if quick else 12000
    args.epochs = 1 if quick else 2
    args.population, args.generations, args.parents = (10, 3, 4) if quick else (20, 5, 5)
    seeds = args.random_seeds or ([0, 1] if quick else [0, 1, 2])
    cfg = load_run_config(RECIPE, _settings(args))
    env = init_distributed(cfg.device)
    device = resolve_device(cfg.device, env)
    space = get_space(cfg.space)
    torch.manual_seed(cfg.seed)
    try:
        with tempfile.TemporaryDirectory() as folder:
            run_dir = Path(folder)
            start = time.perf_counter()
            arch, candidates, _ = run_search_phase(cfg, space, run_dir, False, env, device)
            search_s = time.perf_counter() - start
            supernet = load_supernet(space, run_dir, device)
            data = build_data(_search_data(cfg))
            settings = SearchSettings.of(cfg, space)
            strategy = _strategy(cfg, settings, supernet, data, device, env, 1)
            calibration = strategy.config.calibration_batches
            start = time.perf_counter()
            draws = {
                seed: _random_draws(strategy, len(candidates), seed, calibration) for seed in seeds
            }
            random_s = time.perf_counter() - start
    finally:
        cleanup(env)
    evolution_best = max(c["arch_top1"] for c in candidates)
    random_bests = [max(scores) for scores in draws.values()]
    random_mean = statistics.mean(random_bests)
    print(
        json.dumps(
            {
                "benchmark": "spos_evolution",
                "hardware": hardware(),
                "quick": quick,
                "run": run_kind(quick, faithful=False),
                "space": cfg.space,
                "budget_macs": cfg.search.budget.target,
                "images": args.images,
                "epochs": args.epochs,
                "population": args.population,
                "generations": args.generations,
                "evaluations": len(candidates),
                "evolution_arch": str(arch),
                "evolution_best_top1": round(100 * evolution_best, 2),
                "random_best_top1": [round(100 * b, 2) for b in random_bests],
                "random_best_top1_mean": round(100 * random_mean, 2),
                "search_s": round(search_s, 1),
                "random_draws_s": round(random_s, 1),
                "goal_met": evolution_best >= random_mean,
            }
        )
    )


if __name__ == "__main__":
    main()
