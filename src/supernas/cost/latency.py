"""Latency look-up tables: per-layer latencies measured on one device, and the predictor.

ProxylessNAS (Cai et al., ICLR 2019, section 3.3; reference `latency_estimator.py`) predicts a
network's latency as the sum of its layers' latencies, each measured alone on the target device
and stored under a key that names the layer's type and exact shapes. A table holds one entry per
(block option, input shape) a space can produce, plus its stems and heads, and two terms fitted
on end-to-end measurements when the table is built (`supernas.cost.latency_build`): a constant
per network (a session call, feeding the input) and a constant per layer (``per_layer_ms``,
added to every entry looked up), for what a layer costs alone and not in a network or the
reverse: a runtime that fuses across layers converts and reorders a lone layer's input and
output, which inside a network only its ends do.

A table is only valid for the space, device and runtime it was measured in: the JSON records the
space name and fingerprint, the device kind and model, the runtime (``torch`` eager,
``onnxruntime`` or ``openvino``), its version, execution provider and precision (``fp32`` or
``int8``), the thread count, the batch size and the allocator setting; `LatencyTable.check`
refuses a table from another space or device, and `LatencyTable.check_runtime` one from another
runtime or precision than asked for.

Key examples (our blocks have more fields than the reference's ``expanded_conv`` keys)::

    stem-input:28x28x1-output:28x28x24-kernel:3-stride:1-act:relu
    mbconv-input:28x28x24-output:14x14x40-mid:144-kernel:5-stride:2-attn:1x40-act:hswish-shortcut:none
    head-input:7x7x80-hidden:256-classes:10-act:relu
"""

from __future__ import annotations

import json
import logging
import math
import platform
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from supernas.config import from_dict
from supernas.errors import ConfigError
from supernas.runtimes import PRECISIONS, TIMED_RUNTIMES
from supernas.space.arch import Arch
from supernas.space.choices import biggest, sample, smallest
from supernas.space.plan import BlockPlan, NetPlan, plan
from supernas.space.space import SearchSpace

FORMAT = 1

log = logging.getLogger(__name__)
# fields a table built before them lacks, and what each brought
_ADDED_SINCE = {
    "estimate": "entries were the median of their passes",
    "per_layer_ms": "the per-layer term was fitted",
}


def stem_key(net: NetPlan) -> str:
    size, res = net.stem_size, net.resolution
    return (
        f"stem-input:{res}x{res}x{net.in_channels}-output:{size}x{size}x{net.stem_channels}"
        f"-kernel:{net.stem_kernel_size}-stride:{net.stem_stride}-act:{net.stem_activation}"
    )


def block_key(block: BlockPlan) -> str:
    i, o = block.in_size, block.out_size
    return (
        f"mbconv-input:{i}x{i}x{block.in_channels}-output:{o}x{o}x{block.out_channels}"
        f"-mid:{block.mid_channels}-kernel:{block.kernel_size}-stride:{block.stride}"
        f"-attn:{block.attention}x{block.attn_channels}-act:{block.activation}"
        f"-shortcut:{block.shortcut}"
    )


def head_key(net: NetPlan) -> str:
    size = net.head_size
    return (
        f"head-input:{size}x{size}x{net.head_in_channels}-hidden:{net.head_channels}"
        f"-classes:{net.num_classes}-act:{net.head_activation}"
    )


def net_keys(net: NetPlan) -> list[str]:
    """The table keys whose sum predicts the latency of ``net`` (skipped blocks cost nothing)."""
    blocks = [block_key(b) for b in net.blocks if b is not None]
    return [stem_key(net), *blocks, head_key(net)]


def check_path(lut: str | Path) -> Path:
    """Where `supernas latency check` writes its result beside the table ``lut``: ``X.json``
    gets ``X.check.json``."""
    lut = Path(lut)
    return lut.with_name(f"{lut.stem}.check.json")


def check_plot_path(lut: str | Path) -> Path:
    """The plot of `check_path`'s result: ``X.check.png``."""
    return check_path(lut).with_suffix(".png")


def noisy_machine(check: dict) -> list[str]:
    """One line when a table check's own two measurements of its archs agree within 10% for
    fewer than 95% of them (`supernas.cost.latency_build.check_table`)."""
    if check.get("repeat_within_10pct", 1.0) >= 0.95:
        return []
    return [
        "this machine's own latency moves by more than 10% between measurements of one "
        f"network ({100 * check['repeat_mape']:.1f}% repeat MAPE), so no table can be judged "
        "finer than that here; check on a quiet machine (no other load, fixed clock)"
    ]


def describe_latency_range(
    space: SearchSpace, table: LatencyTable, draws: int = 1000, seed: int = 0
) -> str:
    """The predicted latency of the smallest and biggest child and the range over ``draws``
    uniform children: where a target can sit (the smallest child need not be the fastest)."""
    rng = random.Random(seed)
    values = sorted(table.predict(space, sample(space, rng)) for _ in range(draws))
    ends = [table.predict(space, arch) for arch in (smallest(space), biggest(space))]
    return (
        f"latency ({table.device_name}, batch {table.batch_size}, {table.threads} threads): "
        f"smallest child {ends[0]:.3g} ms, biggest {ends[1]:.3g} ms; {draws} random children "
        f"{values[0]:.3g}-{values[-1]:.3g} ms, median {values[len(values) // 2]:.3g} ms"
    )


def device_name(device: torch.device) -> str:
    """The model of the device, e.g. ``"cuda:NVIDIA H100 80GB HBM3"`` or ``"cpu:<model name>"``."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{_cpu_model()}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


ESTIMATES = ("median", "min")  # what an entry is of its pass medians (`latency_build`)


@dataclass
class LatencyTable:
    """Per-layer latencies (ms) of one space on one device; see the module docstring."""

    space: str
    fingerprint: str  # the space's fingerprint: another definition under the same name is refused
    device: str  # "cpu" or "cuda"
    device_name: str
    torch_version: str
    threads: int  # torch intra-op threads during measurement
    batch_size: int
    warmup: int  # untimed runs before timing each entry
    repeats: int  # timed runs per pass; a pass's value is their median
    rounds: int  # interleaved passes over all entries at least
    spread_s: float = 0.0  # passes went on at least this long (0 in older tables)
    estimate: str = "min"  # an entry is this of its pass medians ("min" in older tables)
    allocator: str = "default"  # how CPU memory was allocated (see `latency_build`)
    runtime: str = "torch"  # "torch" (eager), "onnxruntime" or "openvino"
    precision: str = "fp32"  # "fp32" or "int8" (static QDQ, as `supernas export` quantizes)
    runtime_version: str = ""  # empty in tables written before runtimes were recorded
    provider: str = ""  # execution provider / device plugin, e.g. "CPUExecutionProvider"
    entries: dict[str, float] = field(default_factory=dict)
    overhead_ms: float = 0.0  # fitted per-network constant added to every prediction
    per_layer_ms: float = 0.0  # fitted, added to every entry looked up (0 in older tables)

    def lookup(self, key: str) -> float:
        """A layer's latency in a network: its entry plus the per-layer term."""
        try:
            return self.entries[key] + self.per_layer_ms
        except KeyError:
            raise ConfigError(
                f"latency table for {self.space} has no entry {key}; rebuild it for this space"
            ) from None

    def predict(self, space: SearchSpace, arch: Arch) -> float:
        """Predicted end-to-end latency (ms) of ``arch``: its entries plus the overhead."""
        return sum(self.lookup(k) for k in net_keys(plan(space, arch))) + self.overhead_ms

    def check(self, space: SearchSpace, device: torch.device | None = None) -> None:
        """Refuses a table measured for another space, or on another device than ``device``."""
        if (self.space, self.fingerprint) != (space.name, space.fingerprint):
            hint = ""
            if self.space == space.name:  # the same space fitted to other data, or edited
                hint = (
                    f": the run's space has {space.in_channels} input channels and "
                    f"{space.num_classes} classes (fitted to the data); build a table for it "
                    "from a space file with those values (supernas space show NAME --yaml)"
                )
            raise ConfigError(
                f"latency table was measured for space {self.space} ({self.fingerprint}), "
                f"not {space.name} ({space.fingerprint}){hint}"
            )
        if device is not None and device_name(device) != self.device_name:
            raise ConfigError(
                f"latency table was measured on {self.device_name}, not on {device_name(device)}"
            )

    def check_runtime(self, runtime: str | None, precision: str | None) -> None:
        """Refuses a table measured in another runtime or precision than asked for (None:
        any)."""
        for asked, name, own in (
            (runtime, "runtime", self.runtime),
            (precision, "precision", self.precision),
        ):
            if asked is not None and asked != own:
                raise ConfigError(
                    f"latency table was measured in {self.setting}, not with {name} {asked}; "
                    f"build one with 'supernas latency build --{name} {asked}'"
                )

    @property
    def setting(self) -> str:
        """The runtime, precision and thread count, e.g. "onnxruntime 1.23.2 int8, 1 thread"."""
        version = f" {self.runtime_version}" if self.runtime_version else ""
        threads = f"{self.threads} thread{'s' if self.threads > 1 else ''}"
        return f"{self.runtime}{version} {self.precision}, {threads}"

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=1, sort_keys=True)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read latency table {path}: {error}") from None
        if not isinstance(data, dict) or data.pop("format", None) != FORMAT:
            raise ConfigError(f"{path} is not a supernas latency table (format {FORMAT})")
        try:
            table = from_dict(cls, data, f"latency table {path}")  # each field's type checked
        except TypeError as error:  # a field missing
            raise ConfigError(f"malformed latency table {path}: {error}") from None
        table.validate(str(path))
        missing = [what for key, what in _ADDED_SINCE.items() if key not in data]
        if missing:
            log.warning(
                "latency table %s was built before %s; it is read as built, and a rebuild "
                "(supernas latency build) predicts better",
                path,
                " and ".join(missing),
            )
        return table

    def validate(self, where: str = "latency table") -> None:
        """Refuses entries that are not positive finite milliseconds, non-finite fitted terms
        (either may be negative) and a per-layer term that leaves a layer costing nothing,
        before any search reads them."""
        if not isinstance(self.entries, dict) or not self.entries:
            raise ConfigError(f"{where}: no entries")
        for key, value in self.entries.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}: entry {key} is {value!r}, not a number of ms")
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{where}: entry {key} is {value}, not a positive finite ms")
        for name in ("overhead_ms", "per_layer_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}: {name} is {value!r}, not a number")
            if not math.isfinite(value):
                raise ConfigError(f"{where}: {name} is {value}, not finite")
        if min(self.entries.values()) + self.per_layer_ms <= 0:
            raise ConfigError(f"{where}: per_layer_ms {self.per_layer_ms} makes a layer cost <= 0")
        if self.runtime not in TIMED_RUNTIMES or self.precision not in PRECISIONS:
            raise ConfigError(f"{where}: runtime {self.runtime!r} {self.precision!r} is unknown")
        if self.estimate not in ESTIMATES:
            raise ConfigError(f"{where}: estimate {self.estimate!r} is not one of {ESTIMATES}")
        for name in ("batch_size", "threads", "repeats", "rounds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{where}: {name} is {value!r}, not a positive integer")
