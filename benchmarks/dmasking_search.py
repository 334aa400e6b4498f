"""DMaskingNAS on Fashion-MNIST against random archs of the same budget, same training recipe.

1. Runs the recipe (``recipes/fmnist_dmasking.yaml`` by default) with a search three times the
   demo's length (``SEARCH``: 4 epochs on 6,000 images, 1 of them weights only, 8 derived
   samples): the DMaskingNAS search under its MACs budget, then the derived arch trained from
   scratch with the recipe's unchanged training settings and tested (``searched_acc``).
   ``searched_macs`` is the derived arch's exact MACs, which must not exceed the budget. The
   demo's own 2-epoch search on 4,000 images is too short to beat random archs: the logits
   barely leave uniform and the budget term pulls every width down while the expected MACs of
   the uniform distribution (6M) exceed the budget.
2. Draws ``--random`` archs uniformly per decision, keeping those whose exact MACs lie between
   ``--floor`` times the budget and the budget (a random arch far below the budget would be an
   unfair opponent), and trains each from scratch with the same recipe, data and seed
   (``random_acc``, ``random_macs``).
3. ``beats_median``: the searched arch's test accuracy above the median of the random ones.

``--searched RUN_DIR`` takes step 1 from a finished run of the same recipe (e.g. ``make demo``)
instead of searching again; its settings are read from the run's ``config.yaml``. Each random
arch's test accuracy is kept in ``--cache`` under a key of the arch and everything its training
depends on (space, seed, data and train settings, torch threads), so trying other search
settings does not retrain the same random archs; a change to the training recipe retrains them.

Prints one JSON line last. ``--quick`` runs a tiny setting (a few minutes) to check the script.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _common import hardware, run_kind

from supernas.api import read_config, search, train
from supernas.cost.macs import arch_cost
from supernas.recipe import load_run_config
from supernas.space import Arch, SearchSpace, get_space, sample
from supernas.train.checkpoint import atomic_write_text

ROOT = Path(__file__).parents[1]
RECIPE = ROOT / "recipes" / "fmnist_dmasking.yaml"
CACHE = ROOT / "runs" / "benchmark-cache" / "dmasking_search"
SEARCH = [
    "search.epochs=4",
    "search.limit_train=6000",
    "search.options.warmup_epochs=1",
    "search.options.derive_samples=8",
]
QUICK = ["search.epochs=1", "search.limit_train=1000", "train.epochs=1", "data.limit_train=4000"]


def random_archs(space: SearchSpace, budget: float, floor: float, count: int, seed: int):
    """``count`` distinct archs drawn uniformly with exact MACs in [floor * budget, budget]."""
    rng, found = random.Random(f"random archs {seed}"), {}  # not the search's own stream
    while len(found) < count:
        arch = sample(space, rng)
        if floor * budget <= arch_cost(space, arch).macs <= budget:
            found.setdefault(arch.digest, arch)
    return list(found.values())


def training_key(cfg, arch: Arch) -> str:
    """What a from-scratch test accuracy depends on: the arch, the training settings and the
    thread count (which changes float summation order, and so the result by ~0.2 points)."""
    settings = {
        "arch": arch.digest,
        "threads": torch.get_num_threads(),
        "space": cfg.space,
        "seed": cfg.seed,
        "data": dataclasses.asdict(cfg.data),
        "train": dataclasses.asdict(cfg.train),
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


def trained_acc(cfg, arch: Arch, root: Path, cache: Path) -> float:
    """Test top-1 of ``arch`` trained from scratch, from ``cache`` when trained before."""
    cached = cache / f"{training_key(cfg, arch)}.json"
    if cached.exists():
        return json.loads(cached.read_text())["test_top1"]
    path = root / f"{arch.digest}.json"
    path.write_text(arch.to_json())
    acc = train(cfg, path, root / arch.digest).test_top1
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cached, json.dumps({"arch": str(arch), "test_top1": acc}))
    return acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--random", type=int, default=5, help="random archs to train")
    parser.add_argument("--floor", type=float, default=0.75, help="random archs' MACs >= this")
    parser.add_argument("--quick", action="store_true", help="tiny setting, checks the script")
    parser.add_argument("--searched", type=Path, help="a finished run of the recipe to reuse")
    parser.add_argument("--cache", type=Path, default=CACHE, help="random archs' results")
    args = parser.parse_args()
    if args.searched:
        cfg = read_config(args.searched)
    else:
        cfg = load_run_config(
            args.recipe, ["device=cpu", *(QUICK if args.quick else SEARCH), *args.set]
        )
    space, budget = get_space(cfg.space), cfg.search.budget.target
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        searched = search(cfg, args.searched or root / "search", resume=bool(args.searched))
        search_s = time.perf_counter() - start
        randoms = random_archs(space, budget, args.floor, args.random, cfg.seed)
        random_acc = [trained_acc(cfg, arch, root, args.cache) for arch in randoms]
    median = statistics.median(random_acc)
    result = {
        "benchmark": "dmasking_search",
        "hardware": hardware(),
        "recipe": str(args.searched or args.recipe.name),
        "search": {
            "epochs": cfg.search.epochs,
            "limit_train": cfg.search.limit_train,
            "options": cfg.search.options,
        },
        "budget_macs": budget,
        "searched_arch": str(searched.arch),
        "searched_macs": arch_cost(space, searched.arch).macs,
        "searched_acc": round(searched.test_top1, 4),
        "random_macs": [arch_cost(space, a).macs for a in randoms],
        "random_acc": [round(a, 4) for a in random_acc],
        "random_median_acc": round(median, 4),
        "within_budget": arch_cost(space, searched.arch).macs <= budget,
        "beats_median": searched.test_top1 > median,
        "search_and_train_s": round(search_s, 1),
        "wall_s": round(time.perf_counter() - start, 1),
        "run": run_kind(args.quick, faithful=False),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
