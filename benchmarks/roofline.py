"""Where the steps stand against this machine's peaks: a roofline of training and search steps.

1. Measures two peaks in this process: fp32 matrix multiplication (``torch.mm`` of two square
   matrices, GFLOP/s) and memory copy (``Tensor.copy_`` of a buffer far larger than the caches,
   GB/s counting the bytes read and written).
2. Keeps freed memory for reuse, as a run does (``keep_freed_memory``). Times a training
   step of ``fmnist_small``'s biggest child (batch 128, the final training's settings: SGD,
   label smoothing, clipping) and one search step of each method on ``fmnist_small`` (batch
   64: a DMaskingNAS weight and arch step, a ProxylessNAS weight and arch step, an FP-NAS step
   of K = 2, a BigNAS sandwich of 4 children), in channels-last (the default) and in NCHW,
   interleaved, the median of ``--repeats``.
3. For each step: its matmul FLOPs (convolutions and linear layers, forward and backward,
   counted per ATen operator), the bytes its operators move (every ATen operator reading its
   inputs and writing its outputs once: eager PyTorch fuses nothing, views move nothing), the
   achieved GFLOP/s and GB/s and their fractions of the two peaks.
4. The share of the training step's operator time spent in depthwise convolutions, 1x1
   convolutions, other convolutions, BatchNorm, activations and the rest (forward and backward),
   each ATen operator timed as it runs; and the seconds its depthwise convolutions spend in the
   forward, the input gradient and the weight gradient, each part timed alone.

Goal: a plain training step at >= 15% of the matmul peak. Prints one JSON line last.
``--quick`` is the same comparison with fewer repeats and a smaller matmul.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _common import hardware, run_kind
from torch.utils._python_dispatch import TorchDispatchMode

from supernas.config import from_dict
from supernas.cost.budget import Budget
from supernas.nn import Supernet, build_model
from supernas.space import biggest, get_space
from supernas.strategies import STRATEGIES, SearchContext
from supernas.train import TrainConfig
from supernas.train.classifier import build_optimizer
from supernas.train.host import keep_freed_memory

SPACE = get_space("fmnist_small")
BUDGET = 4e6  # the demo's MACs budget
SEARCH_BATCH = 64
TRAIN_BATCH = 128
FORMATS = {"channels_last": torch.channels_last, "nchw": torch.contiguous_format}
METHODS = {  # every step a search step: no warm-up, an arch step after each weight step
    "dmasking": {"warmup_epochs": 0, "arch_every": 1, "cost_loss": "budget"},
    "proxyless": {"warmup_epochs": 0, "arch_every": 1, "loss": "budget"},
    "fpnas": {"warmup_epochs": 0, "min_samples": 2, "max_samples": 2},
    "bignas": {"num_random": 2},
}
aten = torch.ops.aten


def matmul_peak(size: int, repeats: int) -> float:
    """Best fp32 GFLOP/s of ``torch.mm`` on two ``size`` x ``size`` matrices."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = min(_seconds(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def copy_peak(megabytes: int, repeats: int) -> float:
    """Best GB/s of a large copy, counting the bytes read and the bytes written."""
    source = torch.empty(megabytes * 2**20 // 4)
    target = torch.empty_like(source)
    target.copy_(source)
    best = min(_seconds(lambda: target.copy_(source)) for _ in range(repeats))
    return 2 * source.numel() * 4 / best / 1e9


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _batch(seed: int, size: int, memory_format) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    side = max(SPACE.resolutions)
    images = torch.randn(size, SPACE.in_channels, side, side, generator=generator)
    labels = torch.randint(0, SPACE.num_classes, (size,), generator=generator)
    return images.contiguous(memory_format=memory_format), labels


def train_step(memory_format) -> Callable[[int], None]:
    """A step of the final training on the biggest child, as ``ClassifierTask`` runs it."""
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=1)
    model = build_model(SPACE, biggest(SPACE)).to(memory_format=memory_format).train()
    optimizer = build_optimizer(model, cfg, cfg.lr)

    def step(seed: int) -> None:
        images, labels = _batch(seed, TRAIN_BATCH, memory_format)
        loss = F.cross_entropy(model(images), labels, label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
        optimizer.step()

    return step


def search_step(name: str, memory_format) -> Callable[[int], None]:
    """One step of method ``name`` on the supernet of ``fmnist_small``."""
    torch.manual_seed(0)
    supernet = Supernet(SPACE).train()
    if memory_format == torch.channels_last:
        supernet.use_channels_last()
    cls = STRATEGIES.get(name)
    context = SearchContext(
        budget=Budget.of(SPACE, BUDGET),
        model=supernet,
        weight_optimizer=torch.optim.SGD(supernet.parameters(), lr=0.01, momentum=0.9),
        arch_batches=lambda: iter([_batch(1, SEARCH_BATCH, memory_format)]),
        calibration_batches=lambda: iter([_batch(2, SEARCH_BATCH, memory_format)]),
        steps_per_epoch=1000,
        epochs=1,
        arch_stream=lambda: (_batch(i, SEARCH_BATCH, memory_format) for i in itertools.count(3)),
        weight_decay=4e-5,
    )
    strategy = cls(supernet, from_dict(cls.Config, METHODS[name], "search.options"), context)
    counter = itertools.count()

    def step(seed: int) -> None:
        strategy.step(_batch(seed, SEARCH_BATCH, memory_format), next(counter))

    return step


class _OperatorWork(TorchDispatchMode):
    """Matmul FLOPs (convolutions and matrix products, forward and backward) and the bytes
    every ATen operator reads and writes (views move none).

    A convolution's backward costs one forward-sized product per gradient it computes (input,
    weight); ``FlopCounterMode`` prices a grouped convolution's backward as a dense one, 50x too
    much for a depthwise convolution, so the FLOPs are counted here.
    """

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.flops += _flops(func, args, out)
        if not func.is_view:
            tensors = [*_tensors(args), *_tensors(kwargs or {}), *_tensors(out)]
            self.bytes += sum(t.numel() * t.element_size() for t in tensors)
        return out


def _flops(func, args, out) -> int:
    if func is aten.convolution.default:
        return 2 * out.numel() * args[1][0].numel()
    if func is aten.convolution_backward.default:
        grad_output, weight, output_mask = args[0], args[2], args[10]
        return 2 * grad_output.numel() * weight[0].numel() * sum(output_mask[:2])
    if func in (aten.mm.default, aten.addmm.default, aten.bmm.default):
        return 2 * out.numel() * args[-2].size(-1)
    return 0


class _OperatorTimes(TorchDispatchMode):
    """Seconds spent in each kind of ATen operator (see `_kind`)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        self.seconds[_kind(func, args)] += time.perf_counter() - start
        return out


ACTIVATIONS = ("relu", "hardswish", "silu", "sigmoid", "hardsigmoid", "threshold")


def _kind(func, args) -> str:
    name = func.__name__
    if func in (aten.convolution.default, aten.convolution_backward.default):
        weight = args[1] if func is aten.convolution.default else args[2]
        groups = args[8] if func is aten.convolution.default else args[9]
        if groups > 1 and groups == weight.size(0):
            return "depthwise"
        return "pointwise" if tuple(weight.shape[-2:]) == (1, 1) else "other_conv"
    if "batch_norm" in name:
        return "batchnorm"
    if any(name.startswith(a) for a in ACTIVATIONS):
        return "activation"
    return "other"


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def measure(steps: dict[str, Callable[[int], None]], repeats: int) -> dict[str, float]:
    """Median seconds per step of each of ``steps``, their runs interleaved."""
    for step in steps.values():
        step(0)  # lazily built state first (optimizer moments, cached tables)
    times: dict[str, list[float]] = {key: [] for key in steps}
    for repeat in range(1, repeats + 1):
        for key, step in steps.items():
            times[key].append(_seconds(lambda step=step, repeat=repeat: step(repeat)))
    return {key: statistics.median(values) for key, values in times.items()}


def work(step: Callable[[int], None]) -> tuple[float, float]:
    """(matmul FLOPs, operator bytes) of one step."""
    with _OperatorWork() as counted:
        step(10_000)
    return counted.flops, counted.bytes


def shares(step: Callable[[int], None], repeats: int) -> dict[str, float]:
    with _OperatorTimes() as times:
        for repeat in range(repeats):
            step(20_000 + repeat)
    total = sum(times.seconds.values())
    return {kind: round(seconds / total, 3) for kind, seconds in times.seconds.most_common()}


class _DepthwiseBackwards(TorchDispatchMode):
    """The arguments of every depthwise convolution's backward, to time its parts apart."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is aten.convolution_backward.default and _kind(func, args) == "depthwise":
            self.calls.append(args)
        return func(*args, **(kwargs or {}))


def depthwise_split(step: Callable[[int], None], repeats: int) -> dict[str, float]:
    """Seconds a step spends in its depthwise convolutions' forward, input gradient and weight
    gradient, each part run alone on the step's own tensors (the backward computes both
    gradients in one call, which times them together)."""
    with _DepthwiseBackwards() as seen:
        step(30_000)
    parts = {"forward": 0.0, "input_grad": 0.0, "weight_grad": 0.0}
    for args in seen.calls:
        _, x, weight, _, stride, padding, dilation, _, _, groups, _ = args
        conv = (stride, padding, dilation, False, [0, 0], groups)
        runs = {
            "forward": functools.partial(aten.convolution, x, weight, None, *conv),
            "input_grad": functools.partial(
                aten.convolution_backward, *args[:10], [True, False, False]
            ),
            "weight_grad": functools.partial(
                aten.convolution_backward, *args[:10], [False, True, False]
            ),
        }
        for part, run in runs.items():
            run()
            parts[part] += statistics.median(_seconds(run) for _ in range(repeats))
    return {part: round(seconds, 4) for part, seconds in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed steps (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, a smaller matmul")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kept = keep_freed_memory()
    repeats = 2 if args.quick else args.repeats
    peaks = {
        "matmul_gflops": round(
            matmul_peak(1024 if args.quick else 2048, 3 if args.quick else 10), 1
        ),
        "copy_gbps": round(copy_peak(256, 3 if args.quick else 10), 1),
    }
    builders = {"train": train_step} | {
        name: (lambda fmt, name=name: search_step(name, fmt)) for name in METHODS
    }
    steps = {
        (label, fmt): build(FORMATS[fmt]) for label, build in builders.items() for fmt in FORMATS
    }
    seconds = measure(steps, repeats)
    results = []
    for (label, fmt), step in steps.items():
        flops, moved = work(step)
        gflops, gbps = flops / seconds[label, fmt] / 1e9, moved / seconds[label, fmt] / 1e9
        results.append(
            {
                "step": label,
                "memory_format": fmt,
                "batch": TRAIN_BATCH if label == "train" else SEARCH_BATCH,
                "seconds": round(seconds[label, fmt], 4),
                "gflop": round(flops / 1e9, 3),
                "gflops": round(gflops, 2),
                "matmul_fraction": round(gflops / peaks["matmul_gflops"], 4),
                "gbytes": round(moved / 1e9, 3),
                "gbps": round(gbps, 2),
                "copy_fraction": round(gbps / peaks["copy_gbps"], 4),
            }
        )
    speedups = {
        label: round(seconds[label, "channels_last"] / seconds[label, "nchw"], 3)
        for label in builders
    }
    train = next(
        r for r in results if r["step"] == "train" and r["memory_format"] == "channels_last"
    )
    print(
        json.dumps(
            {
                "benchmark": "roofline",
                "kind": run_kind(args.quick, faithful=True),
                "hardware": hardware(),
                "keep_freed_memory": kept,
                "peaks": peaks,
                "results": results,
                "channels_last_time_ratio": speedups,
                "train_shares": shares(steps["train", "channels_last"], repeats),
                "train_shares_nchw": shares(steps["train", "nchw"], repeats),
                "train_depthwise_seconds": depthwise_split(
                    steps["train", "channels_last"], repeats
                ),
                "goal_matmul_fraction": 0.15,
                "goal_met": train["matmul_fraction"] >= 0.15,
            }
        )
    )


if __name__ == "__main__":
    main()
