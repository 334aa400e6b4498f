"""BigNAS: sliced children (no retraining) against the same archs trained from scratch.

1. Trains one ``fmnist_bignas`` supernet on Fashion-MNIST with the BigNAS recipe
   (``recipes/bignas_fmnist.yaml``: sandwich rule, in-place distillation, exponential LR decay
   with a constant ending) for ``epochs`` passes over the weight split.
2. ``supernas select`` picks one child per budget coarse-to-fine on the arch split; each is
   sliced with BN recalibrated and evaluated on the test split (``sliced_acc``).
3. Each chosen arch is trained from scratch with the project's trainer for the same number of
   epochs on the same images (``scratch_acc``); ``max_gap_points`` is the largest
   ``scratch - sliced`` in points (BigNAS's claim: at most ~0, ours: at most 1 outside --quick).
4. Random in-budget children, scored exactly like the selection's candidates (same calibration
   and arch-split batches), against the chosen ones (``selected_arch_acc``/``random_arch_acc``).
5. ``sandwich_step_over_children``: median time of one sandwich step (4 children, one optimizer
   step) over the median sum of one plain training step of each of the same 4 children built
   as standalone models, interleaved in this process, on the CPU (goal <= 1.1).

BigNAS's claim is about a converged supernet (the paper trains for hundreds of epochs); on a
CPU the full setting trains 4 epochs on 12,000 images, where the sandwich's children still
trail. ``--device cuda --images 60000 --epochs N`` runs the same comparison at a length a GPU
allows. Prints one JSON line last. ``--quick`` runs a tiny setting in a few minutes.

``--reduced`` trains to convergence on a CPU instead: the smaller ``fmnist_bignas_tiny`` space
(16-24 px) on 24,000 images, where a supernet and its from-scratch counterparts each train
for 1, 2, 4, 8, 16, 32 and 64 epochs (``--lengths`` sets others), every length a whole run with
its own schedule (the BigNAS one for the supernet, the project's cosine one from scratch). Three
fixed children (biggest, a seeded random one, smallest) are compared at each length, sliced with BN
recalibrated against trained from scratch, on the whole test split: ``curve`` holds the gap per
length, ``max_gap_points`` the gap at the longest, ``gap_ratio_per_doubling`` the geometric
mean of how the max gap changed per doubling, and the plot goes to ``--plot``. The runs go to
two processes of one thread each: about two hours on 2 cores, half of it the 64-epoch runs
(``--lengths 64`` alone: a supernet and the three children from scratch, an hour each, side by
side), where the scratch runs stop improving. ``--schedule cosine`` trains the supernet with a
cosine to 0 instead of the paper's constant ending at 5% of the peak, and ``--clip-grad-norm 1``
clips the sandwich's summed gradient (their effects are measured in docs/results.md).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import itertools
import json
import math
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import hardware, run_kind

from supernas.api import _search_data, _sliced_and_tested, load_supernet, search, select, train
from supernas.cost.budget import Budget
from supernas.cost.macs import arch_cost
from supernas.data import build_data
from supernas.nn import Supernet, build_model
from supernas.nn.supernet import resize
from supernas.recipe import load_run_config
from supernas.space import Arch, biggest, get_space, sample, smallest
from supernas.strategies import SearchContext
from supernas.strategies.bignas import BigNAS
from supernas.strategies.evaluation import evaluate_child
from supernas.train.classifier import param_groups

RECIPE = Path(__file__).parents[1] / "recipes" / "bignas_fmnist.yaml"
BUDGETS = [3e6, 8e6, 20e6]


def settings(quick: bool) -> dict:
    if quick:
        return {
            "images": 1536,
            "test_images": 2000,
            "epochs": 1,
            "eval_batches": 3,
            "calibration": 2,
            "levels": (2, 1, 1),  # width, depth, expansion levels of the coarse grid
            "mutations": 2,
            "random": 2,
        }
    return {
        "images": 12000,
        "test_images": None,
        "epochs": 4,
        "eval_batches": 8,
        "calibration": 4,
        "levels": (3, 2, 2),
        "mutations": 6,
        "random": 4,
    }


REDUCED = {
    "space": "fmnist_bignas_tiny",
    "images": 24000,
    "test_images": None,
    "lengths": (1, 2, 4, 8, 16, 32, 64),
    "eval_batches": 8,
    "calibration": 8,
    "levels": (1, 1, 1),  # unused: the reduced setting compares fixed children
    "mutations": 1,
}
REDUCED_QUICK = {**REDUCED, "images": 1536, "test_images": 1000, "lengths": (1, 2)}


def run_config(s: dict, batch_size: int, device: str):
    widths, depths, expansions = s["levels"]
    epochs = s["epochs"]
    limit_test = "null" if s["test_images"] is None else s["test_images"]
    overrides = [
        f"space={s.get('space', 'fmnist_bignas')}",
        f"device={device}",
        "export=[state-dict]",
        f"data.limit_train={s['images']}",
        f"data.limit_test={limit_test}",
        f"data.batch_size={batch_size}",
        f"search.epochs={epochs}",
        "search.budget.target=null",  # derive the biggest; `select` picks the budgets' children
        f"search.lr_decay_epochs={epochs / 10}",  # x0.6 per tenth: the 5% floor at ~59% of the run
        "search.warmup_epochs=0.1",
        f"search.arch_eval_batches={s['eval_batches']}",
        "search.log_every=5",
        f"search.options.calibration_batches={s['calibration']}",
        f"search.options.selection.width_levels={widths}",
        f"search.options.selection.depth_levels={depths}",
        "search.options.selection.kernel_levels=1",
        f"search.options.selection.expansion_levels={expansions}",
        f"search.options.selection.mutations={s['mutations']}",
        f"train.epochs={epochs}",
        "train.warmup_epochs=0.1",
        f"seed={s.get('seed', 0)}",
    ]
    if s.get("schedule") is not None:
        overrides.append(f"search.schedule={s['schedule']}")
    if s.get("clip_grad_norm") is not None:
        overrides.append(f"search.options.clip_grad_norm={s['clip_grad_norm']}")
    return load_run_config(RECIPE, overrides)


def supernet_recipe(cfg) -> dict:
    """What the JSON records of how the supernet trained, beyond the recipe's defaults."""
    return {
        "seed": cfg.seed,
        "supernet_schedule": cfg.search.schedule,
        "supernet_clip_grad_norm": cfg.search.options.get("clip_grad_norm"),
    }


def random_vs_selected(cfg, run_dir: Path, chosen: list[dict], count: int) -> dict:
    """Arch-split top-1 of the chosen children and of random ones of the same budgets, scored
    with the calibration and arch batches that `api.select` uses."""
    space, device = get_space(cfg.space), torch.device(cfg.device)
    supernet = load_supernet(space, run_dir, device)
    data = build_data(_search_data(cfg))
    weight_loader = data.loader(data.weight, train=True, seed=cfg.seed + 1)
    calibration = list(itertools.islice(weight_loader, cfg.search.options["calibration_batches"]))
    arch_loader = data.loader(data.arch, train=False, seed=cfg.seed)
    batches = list(itertools.islice(arch_loader, cfg.search.arch_eval_batches))
    rng = random.Random(1)
    selected, randoms = [], []
    for child in chosen:
        draws = (sample(space, rng) for _ in range(100_000))
        fits = (a for a in draws if arch_cost(space, a).macs <= child["budget"])
        accs = [
            evaluate_child(supernet, a, calibration, batches, device)
            for a in itertools.islice(fits, count)
        ]
        selected.append(round(child["arch_top1"], 4))
        randoms.append(round(statistics.mean(accs), 4))
    return {"selected_arch_acc": selected, "random_arch_acc_mean": randoms}


def sandwich_ratio(batch_size: int, reps: int) -> float:
    """Median sandwich step over the median summed plain steps of its 4 children."""
    space = get_space("fmnist_bignas")
    torch.manual_seed(0)
    supernet = Supernet(space)
    optimizer = torch.optim.SGD(param_groups(supernet, 1e-5), lr=0.05, momentum=0.9)
    context = SearchContext(
        budget=Budget.of(space),
        model=supernet,
        weight_optimizer=optimizer,
        arch_batches=lambda: iter(()),
        calibration_batches=lambda: iter(()),
    )
    strategy = BigNAS(supernet, BigNAS.Config(), context)
    archs = strategy.children(0)
    models = [build_model(space, a).train() for a in archs]
    optimizers = [torch.optim.SGD(param_groups(m, 1e-5), lr=0.05, momentum=0.9) for m in models]
    images, labels = torch.randn(batch_size, 1, 28, 28), torch.randint(0, 10, (batch_size,))

    def plain(model, opt, arch) -> float:
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(resize(images, arch.resolution)), labels).backward()
        opt.step()
        return time.perf_counter() - start

    sandwich, separate = [], []
    for rep in range(reps + 1):  # the first round warms up
        start = time.perf_counter()
        supernet.train()
        strategy.step((images, labels), 0)
        elapsed = time.perf_counter() - start
        total = sum(plain(m, o, a) for m, o, a in zip(models, optimizers, archs, strict=True))
        if rep:
            sandwich.append(elapsed)
            separate.append(total)
    return statistics.median(sandwich) / statistics.median(separate)


def compared_children(space_name: str) -> list[Arch]:
    """The children the reduced setting follows: the biggest, a seeded random one, the smallest."""
    space = get_space(space_name)
    return [biggest(space), sample(space, random.Random(0)), smallest(space)]


def _one_thread() -> None:
    torch.set_num_threads(1)


def supernet_accuracies(s: dict, epochs: int, batch_size: int, device: str) -> list[float]:
    """Test top-1 of each compared child, sliced (BN recalibrated) from a supernet trained with
    the BigNAS recipe for ``epochs`` epochs."""
    cfg = run_config({**s, "epochs": epochs}, batch_size, device)
    device = torch.device(device)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "bignas"
        search(cfg, run_dir)
        supernet = load_supernet(get_space(cfg.space), run_dir, device)
        return [
            _sliced_and_tested(cfg, supernet, arch, device)[1]["test/top1"]
            for arch in compared_children(cfg.space)
        ]


def scratch_accuracy(s: dict, epochs: int, batch_size: int, device: str, index: int) -> float:
    """Test top-1 of compared child ``index`` trained from scratch for ``epochs`` epochs."""
    cfg = run_config({**s, "epochs": epochs}, batch_size, device)
    with tempfile.TemporaryDirectory() as tmp:
        arch_path = Path(tmp) / "arch.json"
        arch_path.write_text(compared_children(cfg.space)[index].to_json())
        return train(cfg, arch_path, Path(tmp) / "scratch").test_top1


def reduced_curve(s: dict, batch_size: int, device: str, plot: Path) -> dict:
    """Every (supernet | scratch child, length) run, longest first, over two one-thread
    processes; the gap per length, how it changed per doubling, and the plot."""
    lengths, archs = s["lengths"], compared_children(s["space"])
    jobs = {("sliced", e, 0): (supernet_accuracies, (s, e, batch_size, device)) for e in lengths}
    for e, i in itertools.product(lengths, range(len(archs))):
        jobs["scratch", e, i] = (scratch_accuracy, (s, e, batch_size, device, i))
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, context, initializer=_one_thread) as pool:
        futures = {
            pool.submit(fn, *args): key
            for key, (fn, args) in sorted(jobs.items(), key=lambda item: -item[0][1])
        }
        done = {}
        for future in concurrent.futures.as_completed(futures):
            done[futures[future]] = future.result()
            print(f"done {futures[future]}: {future.result()}", file=sys.stderr, flush=True)
    curve = []
    for e in lengths:
        sliced = done["sliced", e, 0]
        scratch = [done["scratch", e, i] for i in range(len(archs))]
        gaps = [100 * (b - a) for a, b in zip(sliced, scratch, strict=True)]
        curve.append(
            {
                "epochs": e,
                "sliced_acc": [round(a, 4) for a in sliced],
                "scratch_acc": [round(a, 4) for a in scratch],
                "max_gap_points": round(max(gaps), 2),
            }
        )
    plot_curve(curve, plot)
    space = get_space(s["space"])
    return {
        "space": s["space"],
        **supernet_recipe(run_config({**s, "epochs": lengths[-1]}, batch_size, device)),
        "train_images": s["images"],
        "test_images": s["test_images"] or "all",
        "children_macs": [arch_cost(space, a).macs for a in archs],
        "children_resolution": [a.resolution for a in archs],
        "curve": curve,
        "max_gap_points": curve[-1]["max_gap_points"],
        "within_1_point": curve[-1]["max_gap_points"] <= 1.0,
        "within_2_points": curve[-1]["max_gap_points"] <= 2.0,
        "gap_ratio_per_doubling": per_doubling([p["max_gap_points"] for p in curve], lengths),
        "scratch_gain_last_doubling_points": (
            round(100 * (max(curve[-1]["scratch_acc"]) - max(curve[-2]["scratch_acc"])), 2)
            if len(curve) > 1
            else None
        ),
        "plot": str(plot),
    }


def per_doubling(gaps: list[float], lengths: tuple[int, ...]) -> float | None:
    """Geometric mean of the max gap's ratio per doubling of the epochs, from the first length
    to the last one whose gap is still positive (a ratio of gaps of mixed sign means nothing)."""
    pairs = [(g, e) for g, e in zip(gaps, lengths, strict=True) if g > 0]
    if len(pairs) < 2:
        return None
    (first, e0), (last, e1) = pairs[0], pairs[-1]
    return round((last / first) ** (1 / math.log2(e1 / e0)), 3)


def plot_curve(curve: list[dict], path: Path) -> None:
    """Max gap against epochs (log 2), beside each child's sliced and scratch accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [p["epochs"] for p in curve]
    figure, (gap_axis, acc_axis) = plt.subplots(1, 2, figsize=(11, 4))
    gap_axis.plot(epochs, [p["max_gap_points"] for p in curve], "o-", color="black")
    gap_axis.axhline(1.0, ls="--", color="grey", label="goal: 1 point")
    gap_axis.axhline(0.0, color="grey", lw=0.5)
    gap_axis.set(xscale="log", xlabel="epochs", ylabel="max gap, scratch - sliced (points)")
    gap_axis.set_xticks(epochs, [str(e) for e in epochs])
    gap_axis.legend()
    for i, name in enumerate(("biggest", "random", "smallest")):
        line = acc_axis.plot(epochs, [100 * p["scratch_acc"][i] for p in curve], "o-")[0]
        line.set_label(f"{name}: scratch (solid), sliced (dashed)")
        sliced = [100 * p["sliced_acc"][i] for p in curve]
        acc_axis.plot(epochs, sliced, "s--", color=line.get_color())
    acc_axis.set(xscale="log", xlabel="epochs", ylabel="test top-1 (%)")
    acc_axis.set_xticks(epochs, [str(e) for e in epochs])
    acc_axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def print_reduced(args: argparse.Namespace) -> None:
    s = dict(REDUCED_QUICK if args.quick else REDUCED)
    s.update({k: v for k, v in (("images", args.images), ("test_images", args.test_images)) if v})
    s.update(schedule=args.schedule, clip_grad_norm=args.clip_grad_norm, seed=args.seed)
    if args.lengths:
        s["lengths"] = tuple(sorted(set(args.lengths)))
    start = time.perf_counter()
    result = reduced_curve(s, args.batch_size, args.device, args.plot)
    record = {
        "benchmark": "bignas_children",
        "setting": "reduced",
        "quick": args.quick,
        "run": run_kind(args.quick, faithful=False),
        **result,
        "batch_size": args.batch_size,
        "device": args.device,
        "processes": 2,
        "threads_per_process": 1,
        "total_s": round(time.perf_counter() - start, 1),
        "hardware": hardware(),
    }
    print(json.dumps(record))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny setting, a few minutes")
    parser.add_argument(
        "--reduced",
        action="store_true",
        help="the convergence curve on fmnist_bignas_tiny (about two hours on 2 cores)",
    )
    parser.add_argument(
        "--plot", type=Path, default=Path("bignas_gap.png"), help="--reduced: where the plot goes"
    )
    parser.add_argument(
        "--schedule",
        choices=("exp_constant_end", "cosine"),
        help="the supernet's LR schedule: the paper's exponential decay held at 5%% of the peak "
        "(default), or a cosine to 0 like the scratch runs'",
    )
    parser.add_argument(
        "--clip-grad-norm",
        type=float,
        help="clip the sandwich's summed gradient at this norm (default: no clipping)",
    )
    parser.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        metavar="EPOCHS",
        help="--reduced: the lengths to train, each doubling the last (default: 1 2 4 8 16 32 "
        "64, about two hours); 64 alone is the end point in an hour, 32 64 the last doubling",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the runs' seed (initial weights, data order, augmentation); the children compared "
        "stay the same, so two seeds give the gap's spread",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, help="training images (weight + arch split)")
    parser.add_argument("--test-images", type=int, help="test images (default: all)")
    parser.add_argument("--epochs", type=int, help="supernet epochs = scratch epochs")
    parser.add_argument("--coarse-levels", type=int, nargs=3, help="width depth expansion")
    parser.add_argument("--mutations", type=int, help="fine-stage mutants per budget")
    parser.add_argument(
        "--device", default="cpu", help="cpu or cuda: where the supernet and scratch runs train"
    )
    args = parser.parse_args()
    if args.reduced:
        fixed = ("epochs", "coarse_levels", "mutations")  # the reduced setting sets these itself
        if any(getattr(args, name) is not None for name in fixed):
            parser.error(
                "--reduced trains the --lengths and selects nothing: drop --epochs, "
                "--coarse-levels and --mutations"
            )
        if args.lengths and min(args.lengths) < 1:
            parser.error("--lengths must be whole epochs, at least 1")
        print_reduced(args)
        return
    if args.lengths:
        parser.error("--lengths goes with --reduced")
    s = settings(args.quick)
    given = {
        "images": args.images,
        "test_images": args.test_images,
        "epochs": args.epochs,
        "levels": tuple(args.coarse_levels) if args.coarse_levels else None,
        "mutations": args.mutations,
        "schedule": args.schedule,
        "clip_grad_norm": args.clip_grad_norm,
        "seed": args.seed,
    }
    s.update({k: v for k, v in given.items() if v is not None})
    cfg = run_config(s, args.batch_size, args.device)
    start = time.perf_counter()
    ratio = sandwich_ratio(32 if args.quick else 64, 3 if args.quick else 5)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "bignas"
        t0 = time.perf_counter()
        derived = search(cfg, run_dir)
        supernet_s = time.perf_counter() - t0
        chosen = select(run_dir, BUDGETS)
        versus = random_vs_selected(cfg, run_dir, chosen, s["random"])
        scratch = []
        t0 = time.perf_counter()
        for index, child in enumerate(chosen):
            arch_path = Path(tmp) / f"arch{index}.json"
            arch_path.write_text((Path(child["folder"]) / "arch.json").read_text())
            result = train(dataclasses.replace(cfg), arch_path, Path(tmp) / f"scratch{index}")
            scratch.append(result.test_top1)
        scratch_s = time.perf_counter() - t0
    sliced = [c["test_top1"] for c in chosen]
    gaps = [100 * (b - a) for a, b in zip(sliced, scratch, strict=True)]
    print(
        json.dumps(
            {
                "benchmark": "bignas_children",
                "quick": args.quick,
                "run": run_kind(args.quick, faithful=False),
                "space": cfg.space,
                "train_images": s["images"],
                "test_images": s["test_images"] or "all",
                "epochs": s["epochs"],
                **supernet_recipe(cfg),
                "coarse_levels": list(s["levels"]),
                "mutations": s["mutations"],
                "batch_size": args.batch_size,
                "device": args.device,
                "budgets_macs": BUDGETS,
                "chosen_macs": [c["macs"] for c in chosen],
                "sliced_acc": [round(a, 4) for a in sliced],
                "scratch_acc": [round(a, 4) for a in scratch],
                "max_gap_points": round(max(gaps), 2),
                "within_1_point": max(gaps) <= 1.0,
                "biggest_sliced_acc": round(derived.test_top1, 4),
                **versus,
                "selected_beats_random": all(
                    a > b
                    for a, b in zip(
                        versus["selected_arch_acc"], versus["random_arch_acc_mean"], strict=True
                    )
                ),
                "sandwich_step_over_children": round(ratio, 3),
                "supernet_train_s": round(supernet_s, 1),
                "scratch_train_s": round(scratch_s, 1),
                "total_s": round(time.perf_counter() - start, 1),
                "hardware": hardware(),
            }
        )
    )


if __name__ == "__main__":
    main()
