"""`RunConfig`: the typed form of a recipe (``recipes/*.yaml``), with its loading rules."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from supernas.config import apply_overrides, check_ranges, from_dict, load_yaml
from supernas.cost.budget import BudgetConfig
from supernas.data import DataConfig
from supernas.errors import ConfigError
from supernas.export import FORMATS as EXPORT_FORMATS
from supernas.train import Schedule, TrainConfig, cosine_with_warmup, exp_constant_end

SCHEDULES = ("cosine", "exp_constant_end")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """How the supernet is searched (each strategy's ``Config`` lists its ``options``)."""

    strategy: str = "random"
    epochs: int = 1  # passes over the weight split
    lr: float = 0.05  # supernet weights: SGD with Nesterov momentum
    momentum: float = 0.9
    weight_decay: float = 4e-5
    schedule: str = "cosine"  # "cosine" to 0, or "exp_constant_end" (BigNAS)
    warmup_epochs: float = 0.0  # linear warm-up of the weight LR
    lr_decay: float = 0.97  # exp_constant_end: multiply the LR by this ...
    lr_decay_epochs: float = 2.4  # ... every this many epochs ...
    lr_floor: float = 0.05  # ... down to this fraction of lr, then hold it
    budget: BudgetConfig = dataclasses.field(default_factory=BudgetConfig)  # metric, target, lut
    arch_eval_batches: int | None = 20  # arch-split batches to evaluate one candidate (None: all)
    limit_train: int | None = None  # search on this many training images (None: data.limit_train)
    channels_last: bool = True  # supernet in NHWC on CPU and CUDA (CPU: a step in ~0.6x the time)
    flush_denormal: bool = True  # CPU: values below 1e-38 are 0 (cold Gumbel steps 2.2x faster)
    log_every: int = 10
    checkpoint_every: int = 100  # steps between mid-epoch checkpoints
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    REPLACED: ClassVar[dict[str, str]] = {
        "budget_macs": "search.budget: {metric: macs, target: ...}",
    }

    def __post_init__(self) -> None:
        check_ranges(
            "search",
            self,
            positive=(
                "epochs",
                "lr",
                "lr_decay",
                "lr_decay_epochs",
                "log_every",
                "checkpoint_every",
                "arch_eval_batches",
                "limit_train",
            ),
            non_negative=("weight_decay", "warmup_epochs", "lr_floor"),
            fraction=("momentum",),
        )
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"search.schedule {self.schedule!r} is not one of {', '.join(SCHEDULES)}"
            )


def search_schedule(search: SearchConfig, steps_per_epoch: int) -> Schedule:
    """The supernet weights' LR schedule over the whole search."""
    warmup = round(search.warmup_epochs * steps_per_epoch)
    if search.schedule == "exp_constant_end":
        every = search.lr_decay_epochs * steps_per_epoch
        return exp_constant_end(search.lr, search.lr_decay, every, search.lr_floor, warmup)
    return cosine_with_warmup(search.lr, search.epochs * steps_per_epoch, warmup)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; written to ``config.yaml`` in its run directory."""

    space: str = "fmnist_small"  # a preset name (``supernas space list``) or a space YAML file
    seed: int = 0
    device: str = "auto"  # "auto", "cpu" or "cuda"
    timeout_s: float = 600.0  # torchrun: how long a process waits for the others at a collective
    keep_freed_memory: bool = True  # glibc keeps freed memory for reuse (CPU steps 0.9x the time)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    search: SearchConfig = dataclasses.field(default_factory=SearchConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)  # the final model
    export: list[str] = dataclasses.field(  # onnx-int8 is asked for: it times the model too
        default_factory=lambda: [name for name in EXPORT_FORMATS if name != "onnx-int8"]
    )

    def __post_init__(self) -> None:
        check_ranges("run", self, non_negative=("seed",), positive=("timeout_s",))
        if self.seed >= 2**32:  # NumPy's generators take no more
            raise ConfigError(f"run.seed = {self.seed} must be below 2**32")
        unknown = [name for name in self.export if name not in EXPORT_FORMATS]
        if unknown:  # found here, not after the search and the training
            raise ConfigError(
                f"export: unknown format {unknown[0]!r}; choose from {', '.join(EXPORT_FORMATS)}"
            )


PATH_KEYS = (("data", "data_dir"), ("space",), ("search", "budget", "lut"))


def load_run_config(recipe: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults, then the recipe, then ``--set`` overrides, all checked strictly.

    Paths in a recipe (``data.data_dir``, a space file, ``search.budget.lut``) are relative to
    the recipe's folder, paths given with ``--set`` to the working directory; both are made
    absolute here, so the run's ``config.yaml`` works from any directory.
    """
    data = load_yaml(recipe) if recipe is not None else {}
    if recipe is not None:
        _absolute_paths(data, Path(recipe).resolve().parent)
    data = apply_overrides(data, overrides or [])
    _absolute_paths(data, Path.cwd())
    return from_dict(RunConfig, data, str(recipe) if recipe is not None else "--set")


def _absolute_paths(data: dict[str, Any], base: Path) -> None:
    for *parents, key in PATH_KEYS:
        section = data
        for name in parents:
            section = section.get(name) if isinstance(section, dict) else None
        if not isinstance(section, dict) or not isinstance(section.get(key), str):
            continue
        value = section[key]
        is_file = key != "space" or value.endswith((".yaml", ".yml"))  # else a preset's name
        if is_file:
            section[key] = str(base / Path(value).expanduser())  # an absolute path stays
