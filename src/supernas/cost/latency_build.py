"""Measuring latency tables on the device this runs on, and checking their predictions.

`build_table` times every layer a space can produce alone (each (block option, input shape),
every stem and head), in eval mode under ``torch.inference_mode``, with warm-up runs and the
median of repeats, at a fixed batch size and thread count, in interleaved passes over all
layers spread over some seconds; an entry is the median of its passes' medians (`ESTIMATES`).
Interleaving makes a burst of load spoil one pass rather than one entry, and the median over
passes is what the machine repeats: on a shared cloud host the speed moves both ways, and the
smallest pass (the estimate of older tables) caught a fast moment that came at random (one
network's smallest pass over six 10-second windows ranged over 25%, its median over 8%).
End-to-end measurements follow the same rule as the table they are compared with. It then fits
what a network costs beyond its entries on random archs (`fit_overhead`): a constant per network
and one per layer, robustly (Theil-Sen).
`check_table` measures other random archs end to end and reports the predictor's mean absolute
percentage error and the Spearman rank correlation between predicted and measured latency.

A `Deployment` says where layers and networks run: PyTorch eager on the CPU or a CUDA device,
or ONNX Runtime or OpenVINO on the CPU, in fp32 or int8. In an ONNX runtime each layer is
exported and loaded in a session of its own with the table's threads, as the finished model is
(`supernas.runtimes.compile_module`; int8 quantized exactly as the int8 export is), so a table
prices a layer in the runtime it will ship in.

Every timing first calls `keep_freed_memory`. With glibc's default malloc, the large
activations of a 224 px network are handed back to the OS when freed and page-faulted back in
on the next forward pass, which added 10-17 ms to 15-20 ms networks of ``proxyless_mobile`` on
one CPU thread. A layer timed alone reuses one buffer and never pays it, so no sum of layer
times can predict it. Keeping freed memory in the process (what jemalloc or tcmalloc, the
PyTorch CPU tuning guide's advice, also do) removes the cost from both measurements; a table
records the setting in ``allocator``, and a deployment that wants the predicted latency runs
with the same (``MALLOC_TRIM_THRESHOLD_`` and ``MALLOC_MMAP_THRESHOLD_`` below, or one of
those allocators).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import itertools
import math
import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm import tqdm

from supernas.cost.latency import (
    ESTIMATES,
    LatencyTable,
    block_key,
    device_name,
    head_key,
    net_keys,
    stem_key,
)
from supernas.errors import ConfigError
from supernas.nn.blocks import Head, Stem
from supernas.nn.standalone import build_block, build_model
from supernas.rng import derive_seed
from supernas.runtimes import (
    EXTRA,
    PRECISIONS,
    TIMED_RUNTIMES,
    compile_module,
    runtime_version,
    runtimes,
)
from supernas.space.arch import BlockArch
from supernas.space.choices import sample, smallest
from supernas.space.plan import NetPlan, block_plan, conv_out_size, plan
from supernas.space.space import SearchSpace


@dataclass(frozen=True)
class Timing:
    """How each layer or network is timed."""

    batch_size: int = 1
    warmup: int = 5
    repeats: int = 15
    rounds: int = 3  # interleaved passes at least
    spread_s: float = 10.0  # and passes until this long has passed (see `_interleaved`)
    estimate: str = "median"  # what a value is of its pass medians: one of `ESTIMATES`

    def __post_init__(self) -> None:
        for name in ("batch_size", "repeats", "rounds"):
            if getattr(self, name) < 1:
                raise ConfigError(f"latency timing: {name} must be at least 1")
        if self.warmup < 0:
            raise ConfigError("latency timing: warmup must be at least 0")
        if not 0 <= self.spread_s < math.inf:
            raise ConfigError("latency timing: spread must be a finite number of seconds >= 0")
        if self.estimate not in ESTIMATES:
            choices = ", ".join(ESTIMATES)
            raise ConfigError(f"latency timing: estimate {self.estimate!r} is not one of {choices}")

    @classmethod
    def of(cls, table: LatencyTable) -> Timing:
        """How ``table``'s entries were timed."""
        return cls(
            table.batch_size,
            table.warmup,
            table.repeats,
            table.rounds,
            table.spread_s,
            table.estimate,
        )


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
_TRIM_THRESHOLD = 2**31 - 1  # never hand the top of the heap back to the OS
_MMAP_THRESHOLD = 32 << 20  # glibc's largest: only blocks above 32 MiB go straight to mmap
KEPT_FREED_MEMORY = (
    f"glibc: MALLOC_TRIM_THRESHOLD_={_TRIM_THRESHOLD} MALLOC_MMAP_THRESHOLD_={_MMAP_THRESHOLD}"
)


@functools.cache
def keep_freed_memory() -> str:
    """Makes glibc malloc keep freed memory in this process; returns what the allocator does.

    Process-wide, set once (see the module docstring for why timings need it), and for good:
    glibc cannot return to its adaptive mmap threshold. So time in a process that does not
    train afterwards, or not under this setting: ``fmnist_small`` archs timed after a 4-epoch
    search that ran under it were 12-33% slower than in a fresh process, and after the same
    search run without it they were not. Elsewhere than glibc nothing changes and
    ``"default"`` is returned.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return "default"
    kept = mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) and mallopt(
        _M_MMAP_THRESHOLD, _MMAP_THRESHOLD
    )
    return KEPT_FREED_MEMORY if kept else "default"


@dataclass(frozen=True)
class _Layer:
    build: Callable[[], nn.Module]  # a fresh module whose forward takes the input alone
    input_shape: tuple[int, ...]  # without the batch dimension


class _Called(nn.Module):
    """``module(x, *args)`` as a module of ``x`` alone, so that it can be exported."""

    def __init__(self, module: nn.Module, *args) -> None:
        super().__init__()
        self.module, self.args = module, args

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x, *self.args)


@dataclass(frozen=True)
class Deployment:
    """Where layers and networks are timed: a runtime, a precision, a device and threads."""

    runtime: str = "torch"  # one of `supernas.runtimes.TIMED_RUNTIMES`
    precision: str = "fp32"
    device: torch.device = torch.device("cpu")
    threads: int = 1

    def __post_init__(self) -> None:
        if self.runtime not in TIMED_RUNTIMES:
            choices = ", ".join(TIMED_RUNTIMES)
            raise ConfigError(f"unknown runtime {self.runtime!r}; choose from {choices}")
        if self.precision not in PRECISIONS:
            choices = ", ".join(PRECISIONS)
            raise ConfigError(f"unknown precision {self.precision!r}; choose from {choices}")
        if self.runtime == "torch" and self.precision != "fp32":
            raise ConfigError("int8 latency is measured in onnxruntime or openvino, not torch")
        if self.runtime != "torch" and self.device.type != "cpu":
            raise ConfigError(f"runtime {self.runtime} is timed on the CPU, not {self.device}")
        if self.runtime != "torch" and self.runtime not in runtimes():
            raise ConfigError(f"runtime {self.runtime} is not installed: {EXTRA}")
        if self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")

    @classmethod
    def of(cls, table: LatencyTable, threads: int | None = None) -> Deployment:
        """The deployment ``table`` was measured in (optionally on other threads)."""
        device = latency_device(table.device)
        return cls(table.runtime, table.precision, device, threads or table.threads)

    @property
    def provider(self) -> str:
        """The execution provider (ONNX Runtime), device plugin (OpenVINO) or torch device."""
        providers = {"onnxruntime": "CPUExecutionProvider", "openvino": "CPU"}
        return providers.get(self.runtime, self.device.type)

    def compile(self, module: nn.Module, x: Tensor) -> Callable[[], object]:
        """A call that runs the eval-mode ``module`` on ``x`` in this deployment."""
        if self.runtime == "torch":
            module, x = module.eval().to(self.device), x.to(self.device)
            if x.is_cuda:
                return lambda: (module(x), torch.cuda.synchronize())
            return lambda: module(x)
        runner = compile_module(module.eval(), x, self.runtime, self.precision, self.threads)
        return runner.bound(x.numpy())


@contextmanager
def _threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def median_ms(run: Callable[[], object], timing: Timing) -> float:
    """Median wall time (ms) of ``run()`` over ``timing.repeats`` runs after the warm-up."""
    times = []
    with torch.inference_mode():
        for _ in range(timing.warmup):
            run()
        for _ in range(timing.repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _stems(space: SearchSpace) -> Iterator[NetPlan]:
    """One NetPlan per (resolution, stem width): only its stem fields are read."""
    base = plan(space, smallest(space))
    for resolution in space.resolutions:
        size = conv_out_size(resolution, space.stem.stride)
        for width in space.stem.out_channels:
            yield dataclasses.replace(
                base, resolution=resolution, stem_channels=width, stem_size=size
            )


def table_layers(space: SearchSpace) -> dict[str, _Layer]:
    """Every layer any child of ``space`` contains, by table key (a superset for tied spaces)."""
    layers: dict[str, _Layer] = {}
    states: set[tuple[int, int]] = set()
    for net in _stems(space):
        shape = (space.in_channels, net.resolution, net.resolution)
        factory = _stem_factory(space, net.stem_channels)
        layers[stem_key(net)] = _Layer(factory, shape)
        states.add((net.stem_channels, net.stem_size))
    for spec in space.blocks:
        reached = set(states) if spec.optional else set()
        options = [
            BlockArch(*values)
            for values in itertools.product(
                spec.out_channels,
                spec.expansions,
                spec.kernel_sizes,
                spec.attentions,
                spec.activations,
            )
        ]
        for channels, size in sorted(states):
            for option in options:
                block = block_plan(space, spec, option, channels, size)
                layers[block_key(block)] = _Layer(
                    _block_factory(block, space.kernel_sharing), (channels, size, size)
                )
                reached.add((block.out_channels, block.out_size))
        states = reached
    base = next(_stems(space))
    for channels, size in sorted(states):
        for hidden in space.head.hidden_channels:
            net = dataclasses.replace(
                base, head_in_channels=channels, head_channels=hidden, head_size=size
            )
            factory = _head_factory(space, channels, hidden)
            layers[head_key(net)] = _Layer(factory, (channels, size, size))
    return layers


def _stem_factory(space: SearchSpace, width: int):
    stem = space.stem
    return lambda: _Called(
        Stem(space.in_channels, width, stem.kernel_size, stem.stride), width, stem.activation
    )


def _block_factory(block, sharing: str):
    return lambda: _Called(build_block(block, sharing), block)


def _head_factory(space: SearchSpace, channels: int, hidden: int):
    head = space.head
    return lambda: _Called(
        Head(channels, hidden, space.num_classes, head.dropout), hidden, head.activation
    )


CHUNK = 256  # layers loaded at once: an ONNX session each (about 2.5 MiB), not all at once
FLOOR_MS = 1e-4  # an entry's least value once the call cost is taken off (entries are > 0)


class _Call(nn.Module):
    """Next to nothing computed from the input: what a session call costs at its shape."""

    def forward(self, x: Tensor) -> Tensor:
        return x[:, :1, :1, :1]


def _net_of_calls(
    layers: dict[str, _Layer], measured: list[float], deployment: Deployment, timing: Timing
) -> list[float]:
    """In an ONNX runtime, each layer's time less what a call of its session costs.

    A session call has a fixed cost (feeding the input, fetching the output; about 0.08 ms in
    OpenVINO, 0.01 ms in ONNX Runtime on one CPU thread) that a network pays once, not once per
    layer; the fitted per-network overhead then adds it back once. In torch eager every layer
    of a network pays its own module call, so its entries keep it.
    """
    if deployment.runtime == "torch":
        return measured
    shapes = sorted({layer.input_shape for layer in layers.values()})
    (calls,) = _interleaved([(_Call, shape) for shape in shapes], deployment, timing, False)
    call = dict(zip(shapes, calls, strict=True))
    return [
        max(ms - call[layer.input_shape], FLOOR_MS)
        for layer, ms in zip(layers.values(), measured, strict=True)
    ]


def _interleaved(
    builds: list[tuple[Callable[[], nn.Module], tuple[int, ...]]],
    deployment: Deployment,
    timing: Timing,
    progress: bool,
    measurements: int = 1,
) -> list[list[float]]:
    """Each module's median time (ms) on a random batch of its input shape, estimated
    (``timing.estimate``) over interleaved passes: at least ``timing.rounds``, and as many as
    fit in ``timing.spread_s``.
    ``measurements`` such measurements, one after the other on the same compiled modules:
    ``result[m][i]`` is module ``i``'s time in measurement ``m``.

    Passes go over the modules in turn, so a burst of load from other processes on a shared
    machine spoils one pass of a few runs rather than every repeat of one. On a shared
    machine such bursts last seconds (one 0.2 ms network's per-second median ranged over
    0.19-0.26 ms in a minute here), longer than a pass over small layers takes, so passes go
    on until ``timing.spread_s`` has passed and the estimate is over many moments.
    They go `CHUNK` modules at a time, so that a space's thousand layers are never all loaded.
    """
    keep_freed_memory()
    times: list[list[float]] = [[] for _ in range(measurements)]
    bar = tqdm(total=len(builds), desc="latency", unit="layer", disable=not progress)
    with _threads(deployment.threads):
        for start in range(0, len(builds), CHUNK):
            runs = [
                deployment.compile(build(), torch.randn(timing.batch_size, *shape))
                for build, shape in builds[start : start + CHUNK]
            ]
            for measured in times:
                measured += _estimated_medians(runs, timing)
            bar.update(len(runs))
    bar.close()
    return times


def _estimated_medians(runs: list[Callable[[], object]], timing: Timing) -> list[float]:
    passes, begun = [], time.perf_counter()
    while len(passes) < timing.rounds or time.perf_counter() - begun < timing.spread_s:
        passes.append([median_ms(run, timing) for run in runs])
    estimate = statistics.median if timing.estimate == "median" else min
    return [estimate(t) for t in zip(*passes, strict=True)]


def _arch_builds(space: SearchSpace, archs: list) -> list[tuple[Callable[[], nn.Module], tuple]]:
    """What `_interleaved` needs to time each arch's standalone model."""
    return [
        (
            functools.partial(build_model, space, arch),
            (space.in_channels, arch.resolution, arch.resolution),
        )
        for arch in archs
    ]


def measure_archs(
    space: SearchSpace,
    archs: list,
    deployment: Deployment,
    timing: Timing,
    progress: bool = False,
) -> list[float]:
    """Measured end-to-end latency (ms) of the standalone model of each arch."""
    (times,) = _interleaved(_arch_builds(space, archs), deployment, timing, progress)
    return times


def measure_model(
    model: nn.Module, input_shape: tuple[int, ...], deployment: Deployment, timing: Timing
) -> float:
    """Measured latency (ms) of one model in ``deployment``."""
    ((ms,),) = _interleaved([(lambda: model, input_shape)], deployment, timing, progress=False)
    return ms


def _random_archs(space: SearchSpace, count: int, seed: int) -> list:
    rng = random.Random(seed)
    return [sample(space, rng) for _ in range(count)]


def latency_device(name: str) -> torch.device:
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"device {name!r} is not cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but torch sees no CUDA device")
    return torch.device(name)


def build_table(
    space: SearchSpace,
    deployment: Deployment = Deployment(),
    timing: Timing = Timing(),
    calibration_archs: int = 20,
    seed: int = 0,
    progress: bool = False,
) -> LatencyTable:
    """Measures every layer of ``space`` in ``deployment``; see the module docstring."""
    table = LatencyTable(
        space=space.name,
        fingerprint=space.fingerprint,
        device=deployment.device.type,
        device_name=device_name(deployment.device),
        torch_version=torch.__version__,
        threads=deployment.threads,
        batch_size=timing.batch_size,
        warmup=timing.warmup,
        repeats=timing.repeats,
        rounds=timing.rounds,
        spread_s=timing.spread_s,
        estimate=timing.estimate,
        allocator=keep_freed_memory(),
        runtime=deployment.runtime,
        precision=deployment.precision,
        runtime_version=runtime_version(deployment.runtime),
        provider=deployment.provider,
    )
    layers = table_layers(space)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        builds = [(layer.build, layer.input_shape) for layer in layers.values()]
        (measured,) = _interleaved(builds, deployment, timing, progress)
        measured = _net_of_calls(layers, measured, deployment, timing)
        table.entries = dict(zip(layers, measured, strict=True))
        archs = _random_archs(space, calibration_archs, derive_seed(seed, "calibration-archs"))
        measured = measure_archs(space, archs, deployment, timing)
    fit_overhead(table, space, archs, measured)
    return table


def fit_overhead(table: LatencyTable, space: SearchSpace, archs: list, measured: list) -> None:
    """Sets ``table``'s per-network and per-layer terms from ``archs``' measured latencies.

    The gap (measured minus the entries' sum) is fitted as ``overhead + per_layer * layers`` by
    Theil-Sen: the per-layer term is the median slope over pairs of archs with different layer
    counts, the overhead the median remaining gap, so a few disturbed measurements move
    neither. A lone layer in a runtime that fuses across layers converts its input and output,
    which a network does at its ends only, and a constant per network cannot absorb what grows
    with the layer count: on ``proxyless_mobile`` in OpenVINO int8 the gap's correlation with
    the block count was -0.80. The per-layer term is kept above minus the smallest entry (a
    layer costs something), and is 0 where every arch has as many layers.
    """
    keys = [net_keys(plan(space, arch)) for arch in archs]
    layers = [len(k) for k in keys]
    gaps = [m - sum(table.entries[k] for k in ks) for ks, m in zip(keys, measured, strict=True)]
    slopes = [
        (gaps[i] - gaps[j]) / (layers[i] - layers[j])
        for i, j in itertools.combinations(range(len(archs)), 2)
        if layers[i] != layers[j]
    ]
    per_layer = statistics.median(slopes) if slopes else 0.0
    table.per_layer_ms = max(per_layer, FLOOR_MS - min(table.entries.values()))
    rest = [g - table.per_layer_ms * n for g, n in zip(gaps, layers, strict=True)]
    table.overhead_ms = statistics.median(rest) if rest else 0.0


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    ra, rb = _ranks(a), _ranks(b)
    return float(torch.corrcoef(torch.tensor([ra, rb], dtype=torch.float64))[0, 1])


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2
        start = end + 1
    return ranks


def check_table(
    table: LatencyTable, space: SearchSpace, archs: int, seed: int = 1000, progress: bool = False
) -> dict:
    """Predicted against measured end-to-end latency of ``archs`` random archs.

    Runs in the table's runtime and precision on its device kind, with its thread count and
    batch size; a table measured on another device model is refused.

    The archs are measured twice, and ``repeat_mape`` / ``repeat_within_10pct`` compare the
    second measurement with the first: the floor below which no table's error can be judged on
    this machine. On a shared host the same network's latency moves by 10-17% between
    measurements minutes apart, and a table's error is then mostly the machine's.
    """
    if archs < 2:
        raise ConfigError("latency check needs at least 2 archs")
    deployment = Deployment.of(table)
    table.check(space, deployment.device)
    timing = Timing.of(table)
    chosen = _random_archs(space, archs, seed)
    predicted = [table.predict(space, arch) for arch in chosen]
    builds = _arch_builds(space, chosen)  # compiled once, measured twice
    measured, again = _interleaved(builds, deployment, timing, progress, measurements=2)
    rows = [
        {"arch": str(arch), "predicted_ms": p, "measured_ms": m, "measured_again_ms": a}
        for arch, p, m, a in zip(chosen, predicted, measured, again, strict=True)
    ]
    errors = [abs(p - m) / m for p, m in zip(predicted, measured, strict=True)]
    drifts = [abs(a - m) / m for m, a in zip(measured, again, strict=True)]
    return {
        "space": space.name,
        "device": table.device_name,
        "runtime": table.runtime,
        "precision": table.precision,
        "archs": archs,
        "mape": sum(errors) / len(errors),
        "spearman": spearman(predicted, measured),
        "within_10pct": sum(e <= 0.1 for e in errors) / len(errors),
        "repeat_mape": sum(drifts) / len(drifts),
        "repeat_within_10pct": sum(d <= 0.1 for d in drifts) / len(drifts),
        "rows": rows,
    }
