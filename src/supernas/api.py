"""The Python API: what the CLI calls, and what a notebook calls.

    from supernas.api import search
    from supernas.recipe import load_run_config
    result = search(load_run_config("recipes/fmnist_random.yaml"))
    print(result.arch, result.test_top1)

A run directory holds ``config.yaml``, ``search/`` and ``train/`` (checkpoint, metrics.jsonl,
TensorBoard), ``arch.json``, ``candidates.json``, the exported model files, ``summary.json`` and
``report.md`` with its plots.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import yaml
from tqdm import tqdm

from supernas.config import from_dict, load_yaml
from supernas.cost.budget import Budget
from supernas.cost.latency import LatencyTable, check_path, check_plot_path, device_name
from supernas.cost.latency_build import (
    Deployment,
    Timing,
    build_table,
    check_table,
    latency_device,
    measure_model,
)
from supernas.cost.macs import arch_cost
from supernas.data import DataBundle, DataConfig, build_data, data_shape
from supernas.errors import CheckpointError, ConfigError, SupernasError
from supernas.export import check_installed, export_model
from supernas.nn import Supernet, build_model
from supernas.predict import (
    Prediction,
    check_contract,
    check_fits,
    onnx_contract,
    predictions,
    preprocess,
)
from supernas.recipe import RunConfig, search_schedule
from supernas.report import plot_cost_accuracy, plot_latency_check, write_report
from supernas.rng import derive_seed
from supernas.rundir import (
    ARCH,
    CHECKPOINT,
    RunDir,
    check_fresh,
    create_run_dir,
    discard_unstarted,
    exclusive,
)
from supernas.runtimes import int8_report
from supernas.space import SPACES, Arch, SearchSpace, arch_from_json, get_space
from supernas.strategies import STRATEGIES, SearchContext, Strategy, read_options
from supernas.strategies.evaluation import evaluate_child
from supernas.strategies.selection import SelectConfig, check_targets, select_children
from supernas.train import (
    ClassifierTask,
    DistEnv,
    LoopConfig,
    SearchTask,
    average_gradients,
    cleanup,
    evaluate_model,
    init_distributed,
    load_checkpoint,
    param_groups,
    resolve_device,
    run_loop,
    seed_everything,
    wrap_ddp,
)
from supernas.train.checkpoint import atomic_write_text, save_checkpoint
from supernas.train.distributed import from_main, rank_failures
from supernas.train.host import keep_freed_memory

log = logging.getLogger(__name__)


def _speak() -> None:
    """Progress lines for a caller who configured no logging (a notebook, a script): without
    a handler, Python drops INFO records and a run would be silent for minutes. A caller's own
    logging configuration, or the CLI's, is left alone."""
    package = logging.getLogger("supernas")
    if logging.getLogger().handlers or package.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    package.addHandler(handler)
    package.setLevel(logging.INFO)


@dataclass
class RunResult:
    run_dir: Path
    arch: Arch
    macs: int
    params: int
    test_top1: float
    exports: dict[str, Any]
    report: Path | None
    budget: dict[str, Any] = dataclasses.field(default_factory=dict)  # see `_budget_fields`
    warnings: list[str] = dataclasses.field(default_factory=list)  # see `near_chance`


def new_run_dir(cfg: RunConfig, kind: str, root: Path = Path("runs")) -> Path:
    """A new ``runs/<time>-<space>-<kind>``, kind being the strategy or "train"."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return create_run_dir(root, f"{stamp}-{Path(cfg.space).stem}-{kind}")


@contextlib.contextmanager
def _own_run_dir(
    cfg: RunConfig,
    space: SearchSpace,
    run_dir: Path | None,
    kind: str,
    resume: bool,
    env: DistEnv,
) -> Iterator[Path]:
    """The run's directory for as long as the run writes it: a new one when not given, an
    empty one for a new run, and locked on rank 0 (another process's run is refused). A new
    run that stops on a user error before its first step leaves no directory behind."""
    created = run_dir is None or not Path(run_dir).exists()
    if env.is_main:
        if run_dir is None:
            run_dir = new_run_dir(cfg, kind)
        elif not resume:
            check_fresh(Path(run_dir))
    run_dir = Path(from_main(run_dir, env))
    with exclusive(run_dir) if env.is_main else contextlib.nullcontext():
        if env.is_main and not resume:
            write_config(run_dir, cfg)
            space_yaml = yaml.safe_dump(space.to_dict(), sort_keys=False)
            atomic_write_text(RunDir(run_dir).space, space_yaml)
        try:
            yield run_dir
        except SupernasError:
            if env.is_main and not resume:  # under the lock: only this run's files go
                discard_unstarted(run_dir, created)
            raise


def run_space(cfg: RunConfig, run_dir: Path | None = None) -> SearchSpace:
    """The space of a run: the copy in its directory (so that editing the space file later
    changes nothing), else the named space with its stem and head fitted to the data. A run
    directory written before runs kept their space holds the named space unfitted."""
    if run_dir is not None:
        path = RunDir(run_dir).space
        return SearchSpace.from_yaml(path) if path.is_file() else get_space(cfg.space)
    space = get_space(cfg.space)
    in_channels, num_classes = data_shape(cfg.data)
    if not space.fit_data:
        _check_data_fits(space, in_channels, num_classes)  # before the run directory exists
        return space
    if (in_channels, num_classes) != (space.in_channels, space.num_classes):
        log.info(
            "space %s: %d input channels and %d classes, from the data (the space says %d and %d)",
            space.name, in_channels, num_classes, space.in_channels, space.num_classes,
        )  # fmt: skip
    return space.fitted(in_channels, num_classes)


def write_config(run_dir: Path, cfg: RunConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        RunDir(run_dir).config, yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)
    )


def read_config(run_dir: Path) -> RunConfig:
    path = RunDir(run_dir).config
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a supernas run directory (no config.yaml)")
    return from_dict(RunConfig, load_yaml(path, "run config"), str(path))


def _check_data_fits(space: SearchSpace, in_channels: int, num_classes: int) -> None:
    if (in_channels, num_classes) != (space.in_channels, space.num_classes):
        raise ConfigError(
            f"space {space.name} expects {space.in_channels}-channel images in "
            f"{space.num_classes} classes; the data set has {in_channels} channels and "
            f"{num_classes} classes"
        )


def _log_data(cfg: DataConfig, data: DataBundle) -> None:
    sizes = ", ".join(f"{name} {count}" for name, count in data.sizes().items())
    log.info("data %s: %s (%s images)", cfg.name, data.roles, sizes)
    log.info("augmentation of the weight split: %s", data.augment.describe())


def _endless(loader) -> Iterator:
    """Batches of ``loader`` pass after pass, reshuffled each pass (also across ranks)."""
    for epoch in itertools.count():
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        yield from loader


def _search_data(cfg: RunConfig) -> DataConfig:
    """The data settings of the search phase (``search.limit_train`` applied)."""
    if cfg.search.limit_train is None:
        return cfg.data
    return dataclasses.replace(cfg.data, limit_train=cfg.search.limit_train)


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """The strategy, its options and the budget of a recipe, checked before any work."""

    strategy: type[Strategy]
    options: Any
    budget: Budget

    @classmethod
    def of(cls, cfg: RunConfig, space: SearchSpace) -> SearchSettings:
        strategy = STRATEGIES.get(cfg.search.strategy)
        options = read_options(strategy, cfg.search.options)
        return cls(strategy, options, Budget(cfg.search.budget, space))


def _strategy(
    cfg: RunConfig,
    settings: SearchSettings,
    supernet: Supernet,
    data: DataBundle,
    device: torch.device,
    env: DistEnv,
    steps_per_epoch: int,
):
    search = cfg.search
    strategy_cls, options, budget = settings.strategy, settings.options, settings.budget
    decay = 0.0 if strategy_cls.weight_decay_in_loss else search.weight_decay
    optimizer = torch.optim.SGD(
        param_groups(supernet, decay),
        lr=search.lr,
        momentum=search.momentum,
        nesterov=search.momentum > 0,
    )
    arch_loader = data.loader(data.arch, train=False, seed=cfg.seed)
    arch_train = data.loader(
        data.arch,
        train=True,
        seed=derive_seed(cfg.seed, "arch-stream"),
        distributed=env.distributed,
    )
    calibration = data.loader(data.weight, train=True, seed=derive_seed(cfg.seed, "calibration"))
    context = SearchContext(
        budget=budget,
        model=wrap_ddp(supernet, env, device, find_unused_parameters=True),
        weight_optimizer=optimizer,
        arch_batches=lambda: itertools.islice(arch_loader, search.arch_eval_batches),
        calibration_batches=lambda: iter(calibration),
        device=device,
        seed=cfg.seed,
        steps_per_epoch=steps_per_epoch,
        epochs=search.epochs,
        arch_stream=lambda: _endless(arch_train),
        reduce_gradients=lambda tensors: average_gradients(tensors, env),
        rank=env.rank,
        world_size=env.world_size,
        weight_decay=search.weight_decay,
    )
    return strategy_cls(supernet, options, context)


class SearchOutcome(NamedTuple):
    arch: Arch
    candidates: list[dict]
    warnings: list[str]  # what the user must know about the search, one line each


def run_search_phase(
    cfg: RunConfig,
    space: SearchSpace,
    run_dir: Path,
    resume: bool,
    env: DistEnv,
    device: torch.device,
) -> SearchOutcome:
    """Trains the supernet with the strategy and derives an arch (skipped if already done)."""
    files = RunDir(run_dir)
    arch_path = files.arch
    if resume and arch_path.is_file():
        candidates = _read_json(files.candidates, [], dict)
        warnings = _read_json(files.search_warnings, [], str)
        return SearchOutcome(arch_from_json(space, arch_path.read_text()), candidates, warnings)
    settings = SearchSettings.of(cfg, space)
    data = build_data(_search_data(cfg), resolution=max(space.resolutions))
    _check_data_fits(space, data.in_channels, data.num_classes)
    if env.is_main:
        _log_data(cfg.data, data)
    supernet = Supernet(space).to(device)
    if cfg.search.channels_last:
        supernet.use_channels_last()
    loader = data.loader(data.weight, train=True, seed=cfg.seed, distributed=env.distributed)
    strategy = _strategy(cfg, settings, supernet, data, device, env, len(loader))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        strategy.context.weight_optimizer, search_schedule(cfg.search, len(loader))
    )
    loop = LoopConfig(
        epochs=cfg.search.epochs,
        seed=cfg.seed,
        log_every=cfg.search.log_every,
        checkpoint_every=cfg.search.checkpoint_every,
        desc="search",
        hint="lower search.lr (or the method's arch_lr in search.options)",
    )
    run_loop(SearchTask(strategy, scheduler), loader, loop, files.search, resume=resume, env=env)
    arch = strategy.derive()
    candidates = strategy.candidates
    warnings = near_uniform(strategy.spread())
    if env.is_main:
        for line in warnings:
            log.warning(line)
        atomic_write_text(files.candidates, json.dumps(candidates, indent=1))
        atomic_write_text(files.search_warnings, json.dumps(warnings))
        atomic_write_text(arch_path, arch.to_json())
    return SearchOutcome(arch, candidates, warnings)


NEAR_UNIFORM = 0.95  # share of the maximal entropy above which a distribution barely moved


def near_uniform(spread: float | None) -> list[str]:
    """One line when the architecture distribution ends near uniform."""
    if spread is None or spread < NEAR_UNIFORM:
        return []
    line = (
        f"the arch distribution ended near uniform (entropy {spread:.0%} of its maximum), so "
        "the derived arch is close to a random draw; search longer (search.epochs, "
        "search.limit_train) or raise the arch LR (search.options.arch_lr)"
    )
    return [line]


def train_arch(
    cfg: RunConfig,
    space: SearchSpace,
    arch: Arch,
    run_dir: Path,
    resume: bool,
    env: DistEnv,
    device: torch.device,
) -> tuple[torch.nn.Module, dict[str, float], DataBundle]:
    """Trains ``arch`` from scratch on the weight split (arch split for validation), then
    evaluates it once on the test split."""
    data = build_data(cfg.data, resolution=arch.resolution)
    _check_data_fits(space, data.in_channels, data.num_classes)
    if env.is_main:
        _log_data(cfg.data, data)
    model = build_model(space, arch)
    loader = data.loader(data.weight, train=True, seed=cfg.seed, distributed=env.distributed)
    val_loader = data.loader(data.arch, train=False, seed=cfg.seed)
    task = ClassifierTask(model, cfg.train, len(loader), val_loader, device, data.batch_size, env)
    loop = LoopConfig(
        epochs=cfg.train.epochs,
        seed=cfg.seed,
        log_every=cfg.train.log_every,
        checkpoint_every=cfg.train.checkpoint_every,
        desc="train",
        hint="lower train.lr, or set train.clip_grad_norm",
    )
    run_loop(task, loader, loop, RunDir(run_dir).train, resume=resume, env=env)
    test_loader = data.loader(data.test, train=False, seed=cfg.seed)
    test = evaluate_model(task.eval_model, test_loader, device, cfg.train.amp)
    return task.eval_model, {"test/top1": test["val/top1"], "test/loss": test["val/loss"]}, data


def load_supernet(space: SearchSpace, run_dir: Path, device: torch.device) -> Supernet:
    """The trained supernet of a run (``search/checkpoint.pt``, task state "supernet")."""
    path = RunDir(run_dir).search / CHECKPOINT
    task_state = load_checkpoint(path).get("task")
    weights = task_state.get("supernet") if isinstance(task_state, dict) else None
    if not isinstance(weights, dict):
        raise CheckpointError(f"checkpoint {path} holds no supernet weights")
    supernet = Supernet(space)
    try:
        supernet.load_state_dict(weights)
    except RuntimeError:
        raise CheckpointError(f"checkpoint {path} does not match space {space.name}") from None
    return supernet.to(device)


def _sliced_and_tested(
    cfg: RunConfig, supernet: Supernet, arch: Arch, device: torch.device
) -> tuple[torch.nn.Module, dict[str, float], DataBundle]:
    """``arch`` cut from ``supernet`` by the run's strategy (BN recalibrated, no training) and
    its test-split accuracy, both at the arch's resolution."""
    strategy_cls = STRATEGIES.get(cfg.search.strategy)
    options = read_options(strategy_cls, cfg.search.options)
    data = build_data(_search_data(cfg), resolution=arch.resolution)
    calibration = data.loader(data.weight, train=True, seed=derive_seed(cfg.seed, "calibration"))
    with torch.random.fork_rng(devices=[]):  # the same augmented batches on every call
        torch.manual_seed(derive_seed(cfg.seed, "calibration"))
        model = strategy_cls.deploy(supernet, arch, options, calibration, device)
    test = evaluate_model(model, data.loader(data.test, train=False, seed=cfg.seed), device)
    return model, {"test/top1": test["val/top1"], "test/loss": test["val/loss"]}, data


def slice_arch(
    cfg: RunConfig,
    space: SearchSpace,
    arch: Arch,
    run_dir: Path,
    env: DistEnv,
    device: torch.device,
) -> tuple[torch.nn.Module, dict[str, float], DataBundle]:
    """The final model of a method that does not retrain (BigNAS): ``arch`` sliced from the
    supernet in ``search/checkpoint.pt``, saved to ``sliced.pt`` for eval and export."""
    supernet = load_supernet(space, run_dir, device)
    model, test, data = _sliced_and_tested(cfg, supernet, arch, device)
    if env.is_main:
        _log_data(cfg.data, data)
        save_checkpoint(RunDir(run_dir).sliced, {"task": {"model": model.state_dict()}})
    return model, test, data


def _arch_rows(space: SearchSpace, arch: Arch) -> list[dict]:
    rows = []
    for index, (spec, block) in enumerate(zip(space.blocks, arch.blocks, strict=True)):
        rows.append(
            {
                "block": index,
                "stage": spec.stage,
                "stride": spec.stride,
                **(block.to_dict() if block.present else {"present": False}),
            }
        )
    return rows


def finish(
    cfg: RunConfig,
    space: SearchSpace,
    arch: Arch,
    model: torch.nn.Module,
    test: dict[str, float],
    data: DataBundle,
    run_dir: Path,
    extra: dict[str, Any],
    candidates: list[dict],
    search_warnings: Sequence[str] = (),
) -> RunResult:
    """Writes the model's preprocessing, exports the model, writes summary.json and the
    report (rank 0 only)."""
    cost = arch_cost(space, arch)
    budget = _budget_fields(Budget(cfg.search.budget, space), arch)
    warnings = [*search_warnings, *near_chance(space.num_classes, candidates, test["test/top1"])]
    preprocessing = data.preprocessing()
    atomic_write_text(RunDir(run_dir).preprocessing, json.dumps(preprocessing, indent=1))
    exports = _export(model, space, arch, preprocessing, run_dir, cfg.export, data)
    int8 = _int8_fields(exports, data, arch)
    drop = 100 * (int8.get("fp32_onnx_test_top1", 0) - int8.get("int8_onnx_test_top1", 0))
    if drop > INT8_DROP_POINTS:
        warnings.append(
            f"the int8 model scores {drop:.2f} points below fp32 on the test split "
            f"(more than {INT8_DROP_POINTS:g}); ship the fp32 model or calibrate on more data"
        )
    summary = {
        "space": space.name,
        "strategy": cfg.search.strategy,
        "arch": str(arch),
        "resolution": arch.resolution,
        "macs_M": round(cost.macs / 1e6, 3),
        "params_M": round(cost.params / 1e6, 4),
        "test_top1": round(test["test/top1"], 4),
        "data": cfg.data.name,
        "splits": data.roles,
        "split_sizes": " / ".join(f"{k} {v}" for k, v in data.sizes().items()),
        "augment": data.augment.describe(),
        **budget,
        **({"warning": " / ".join(warnings)} if warnings else {}),
        **extra,
        **{f"export_{k}": v["path"] for k, v in exports.items()},
        **int8,  # fp32_* and int8_*: the int8 model against fp32 (onnx-int8 exports only)
    }
    atomic_write_text(RunDir(run_dir).summary, json.dumps(summary, indent=1))
    report = write_report(run_dir, summary, _arch_rows(space, arch), candidates)
    if budget.get("budget_metric") == "latency":
        budget.update(_latency_in_fresh_process(run_dir))
        warnings += [budget["latency_warning"]] if "latency_warning" in budget else []
    return RunResult(
        run_dir, arch, cost.macs, cost.params, test["test/top1"], exports, report, budget, warnings
    )


def _latency_in_fresh_process(run_dir: Path) -> dict[str, Any]:
    """`measure_latency` in a process of its own: timed inside the process that trained, the
    same models measured 12-33% slower (allocator state; docs/latency.md)."""
    command = [sys.executable, "-m", "supernas", "-q", "latency", "measure", str(run_dir)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        log.warning("the latency of the model could not be measured: %s", done.stderr.strip())
        return {}
    summary = _read_json(RunDir(run_dir).summary, {})
    return {k: v for k, v in summary.items() if k.startswith("latency_")}


def near_chance(num_classes: int, candidates: list[dict], test_top1: float) -> list[str]:
    """One line each when the search's candidates or the final model score near chance
    (below 1.5 times it): a choice among candidates that all guess is a random one."""
    chance, lines = 1 / num_classes, []
    scores = [c["arch_top1"] for c in candidates if "arch_top1" in c]
    if scores and max(scores) < 1.5 * chance:
        lines.append(
            f"every candidate scored at most {max(scores):.1%} on the arch split, near chance "
            f"({chance:.1%}), so the choice among them was random; search longer "
            "(search.epochs, search.limit_train)"
        )
    if test_top1 < 1.5 * chance:
        lines.append(
            f"test top-1 {test_top1:.1%} is near chance ({chance:.1%}): the model did not "
            "learn; train longer (train.epochs) or check the data"
        )
    for line in lines:
        log.warning(line)
    return lines


def _budget_fields(budget: Budget, arch: Arch) -> dict[str, Any]:
    """The summary's account of the budget: its metric, target, the arch's cost in it and
    whether it fits; a warning when it does not (an arch given to ``train``, say)."""
    if budget.target is None and budget.name == "macs":
        return {}  # the MACs are in the summary already
    cost = budget.cost(arch)
    fields: dict[str, Any] = {"budget_metric": budget.name, "budget_cost": round(cost, 4)}
    if budget.target is not None:
        fields.update(budget_target=budget.target, within_budget=cost <= budget.target)
        if cost > budget.target:
            log.warning(
                "the arch costs %s, over the budget of %s",
                budget.describe(cost),
                budget.describe(budget.target),
            )
    return fields


def _keep_freed_memory(cfg: RunConfig) -> None:
    if cfg.keep_freed_memory and not keep_freed_memory():
        log.info("keep_freed_memory: not glibc, or glibc refused it; the allocator is as it was")


def restarted(run_dir: Path | None) -> bool:
    """Whether this process is a worker that ``torchrun --max-restarts`` restarted after a
    failure, on a run directory that the failed attempt began: it then resumes by itself."""
    again = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    return again and run_dir is not None and RunDir(Path(run_dir)).config.is_file()


def search(cfg: RunConfig, run_dir: Path | None = None, resume: bool = False) -> RunResult:
    """Search, derive, train the derived arch from scratch, evaluate, export and report."""
    _speak()
    _keep_freed_memory(cfg)
    if cfg.search.flush_denormal:
        # At a low Gumbel-softmax temperature the relaxed weights underflow into denormals,
        # which the CPU computes at a fraction of its speed (DMaskingNAS's late steps took
        # 2.1x as long); as zeros they change nothing a float32 sum can hold. Set before the
        # first parallel op: threads started earlier keep the slow mode.
        torch.set_flush_denormal(True)
    env = init_distributed(cfg.device, cfg.timeout_s)
    try:
        with rank_failures(env, cfg.timeout_s):
            return _search(cfg, run_dir, resume or restarted(run_dir), env)
    finally:
        cleanup(env)


def _search(cfg: RunConfig, run_dir: Path | None, resume: bool, env: DistEnv) -> RunResult:
    seed_everything(cfg.seed)
    space = run_space(cfg, run_dir if resume else None)
    SearchSettings.of(cfg, space)  # bad options, budget or table fail before the run directory
    check_installed(cfg.export)
    device = resolve_device(cfg.device, env)
    with _own_run_dir(cfg, space, run_dir, cfg.search.strategy, resume, env) as run_dir:
        return _search_in(cfg, space, run_dir, resume, env, device)


def _search_in(
    cfg: RunConfig,
    space: SearchSpace,
    run_dir: Path,
    resume: bool,
    env: DistEnv,
    device: torch.device,
) -> RunResult:
    start = time.perf_counter()
    arch, candidates, warnings = run_search_phase(cfg, space, run_dir, resume, env, device)
    searched = time.perf_counter()
    if STRATEGIES.get(cfg.search.strategy).retrains:
        model, test, data = train_arch(cfg, space, arch, run_dir, resume, env, device)
        final = "train_s"
    else:
        model, test, data = slice_arch(cfg, space, arch, run_dir, env, device)
        final = "slice_s"
    times = {
        "search_s": round(searched - start, 1),
        final: round(time.perf_counter() - searched, 1),
    }
    if not env.is_main:
        return RunResult(run_dir, arch, 0, 0, test["test/top1"], {}, None)
    return finish(cfg, space, arch, model, test, data, run_dir, times, candidates, warnings)


def train(
    cfg: RunConfig, arch_path: Path, run_dir: Path | None = None, resume: bool = False
) -> RunResult:
    """Trains a given arch (JSON) from scratch, evaluates, exports and reports."""
    _speak()
    _keep_freed_memory(cfg)
    env = init_distributed(cfg.device, cfg.timeout_s)
    try:
        with rank_failures(env, cfg.timeout_s):
            return _train(cfg, arch_path, run_dir, resume or restarted(run_dir), env)
    finally:
        cleanup(env)


def _train(
    cfg: RunConfig, arch_path: Path, run_dir: Path | None, resume: bool, env: DistEnv
) -> RunResult:
    seed_everything(cfg.seed)
    if not resume:
        cfg = _with_arch_space(cfg, Path(arch_path))
    space = run_space(cfg, run_dir if resume else None)
    arch = load_arch(space, Path(arch_path))
    Budget(cfg.search.budget, space)  # the summary reports against it: check it before work
    check_installed(cfg.export)
    device = resolve_device(cfg.device, env)
    with _own_run_dir(cfg, space, run_dir, "train", resume, env) as run_dir:
        if env.is_main and not resume:
            atomic_write_text(RunDir(run_dir).arch, arch.to_json())
        start = time.perf_counter()
        model, test, data = train_arch(cfg, space, arch, run_dir, resume, env, device)
        if not env.is_main:
            return RunResult(run_dir, arch, 0, 0, test["test/top1"], {}, None)
        extra = {"train_s": round(time.perf_counter() - start, 1)}
        return finish(cfg, space, arch, model, test, data, run_dir, extra, [])


def _with_arch_space(cfg: RunConfig, arch_path: Path) -> RunConfig:
    """The config with the space the arch file names, where the recipe left the default: an
    arch of another preset then trains without ``--set space=``."""
    try:
        named = json.loads(arch_path.read_text()).get("space")
    except (OSError, ValueError, AttributeError, RecursionError):
        return cfg  # load_arch says what is wrong with the file
    default = RunConfig.__dataclass_fields__["space"].default
    if cfg.space != default or not isinstance(named, str) or named == default:
        return cfg
    if named not in SPACES.names():
        return cfg  # a space file's arch: the recipe must name the file
    log.info("space %s, as the arch file %s says", named, arch_path)
    return dataclasses.replace(cfg, space=named)


def _read_json(path: Path, default: Any, items: type | None = None) -> Any:
    """A run's JSON file, ``default`` when absent. A damaged one (not JSON, or not an object
    or list like ``default``, or a list with an item that is not ``items``) is a one-line
    error, not a crash in whatever reads it next."""
    if not path.is_file():
        return default
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ConfigError(f"{path} is damaged: it is not JSON") from None
    if default is None:
        return value
    if not isinstance(value, type(default)):
        raise ConfigError(f"{path} is damaged: it holds no JSON {type(default).__name__}")
    if items is not None and not all(isinstance(item, items) for item in value):
        raise ConfigError(f"{path} is damaged: an entry is not a {items.__name__}")
    return value


def load_arch(space: SearchSpace, path: Path) -> Arch:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read arch file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"arch file {path} is not UTF-8 text") from None
    return arch_from_json(space, text)


def load_trained(run_dir: Path) -> tuple[RunConfig, SearchSpace, Arch, torch.nn.Module]:
    """The config, space, arch and trained model of a finished or interrupted run."""
    cfg = read_config(run_dir)
    space = run_space(cfg, run_dir)
    files = RunDir(run_dir)
    arch = load_arch(space, files.arch)
    model = build_model(space, arch)
    path = files.train / CHECKPOINT
    if not path.is_file() and files.sliced.is_file():
        path = files.sliced  # a method that deploys sliced children (BigNAS)
    task_state = load_checkpoint(path).get("task")
    weights = None
    if isinstance(task_state, dict):
        ema = task_state.get("ema", {"module": task_state.get("model")})  # the EMA if kept
        weights = ema.get("module") if isinstance(ema, dict) else None
    if not isinstance(weights, dict):
        raise CheckpointError(f"checkpoint {path} holds no trained model weights")
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        raise CheckpointError(f"checkpoint {path} does not match the arch in arch.json") from None
    return cfg, space, arch, model


def evaluate(run_dir: Path) -> dict[str, float]:
    """Test-split top-1 of the model trained in ``run_dir``."""
    cfg, _, arch, model = load_trained(run_dir)
    data = build_data(cfg.data, resolution=arch.resolution)
    loader = data.loader(data.test, train=False, seed=cfg.seed)
    result = evaluate_model(model, loader, torch.device("cpu"))
    return {"test/top1": result["val/top1"], "test/loss": result["val/loss"]}


def export(run_dir: Path, formats: list[str], out_dir: Path | None = None) -> dict[str, Any]:
    """Exports a run's model; with ``onnx-int8`` the result also holds ``int8``, the int8
    model against fp32 (`supernas.runtimes.int8_report`)."""
    cfg, space, arch, model = load_trained(run_dir)
    preprocessing = _read_json(RunDir(run_dir).preprocessing, {})
    data = build_data(cfg.data, resolution=arch.resolution) if "onnx-int8" in formats else None
    exports = _export(model, space, arch, preprocessing, Path(out_dir or run_dir), formats, data)
    return {**exports, **({"int8": _int8_fields(exports, data, arch)} if data else {})}


INT8_DROP_POINTS = 1.0  # an int8 model further below fp32 on the test split gets a warning
CALIBRATION_BATCHES = 8  # training batches that calibrate an int8 model's activation ranges


def _export(
    model: torch.nn.Module,
    space: SearchSpace,
    arch: Arch,
    preprocessing: dict[str, Any],
    out_dir: Path,
    formats: list[str],
    data: DataBundle | None = None,
) -> dict[str, Any]:
    """The exports of a run's model; an ONNX file carries the arch and the preprocessing.
    ``data``'s weight split, transformed as at inference (no augmentation: the ranges are
    those the deployed model will see), calibrates an ``onnx-int8`` export."""
    example = torch.randn(2, space.in_channels, arch.resolution, arch.resolution)
    metadata = {"supernas.arch": str(arch), "supernas.space": space.name}
    if preprocessing:
        metadata["supernas.preprocessing"] = json.dumps(preprocessing)
    calibration: Iterable[torch.Tensor] = ()
    if data is not None:
        loader = data.loader(data.weight_plain, train=False, seed=0)
        calibration = (images for images, _ in itertools.islice(loader, CALIBRATION_BATCHES))
    elif "onnx-int8" in formats:
        raise ConfigError("an onnx-int8 export needs the run's data to calibrate it")
    return export_model(model, example, out_dir, formats, metadata, calibration)


def _int8_fields(exports: dict[str, Any], data: DataBundle, arch: Arch) -> dict[str, Any]:
    """The int8 model's test top-1, size and latency against fp32 (empty without one)."""
    if "onnx-int8" not in exports:
        return {}
    test = data.loader(data.test, train=False, seed=0)
    shape = (data.in_channels, arch.resolution, arch.resolution)
    paths = (Path(exports["onnx"]["path"]), Path(exports["onnx-int8"]["path"]))
    return int8_report(*paths, lambda: iter(test), shape)


def report(run_dir: Path) -> Path:
    """Rewrites the report of ``run_dir`` from its files."""
    cfg = read_config(run_dir)
    space = run_space(cfg, run_dir)
    files = RunDir(run_dir)
    summary_path = files.summary
    summary = _read_json(summary_path, {})
    arch_path = files.arch
    rows = _arch_rows(space, load_arch(space, arch_path)) if arch_path.is_file() else []
    candidates_path = files.candidates
    candidates = _read_json(candidates_path, [], dict)
    selection = _read_json(files.selection, {}).get("chosen", [])
    if not isinstance(selection, list) or not all(isinstance(c, dict) for c in selection):
        raise ConfigError(f"{files.selection} is damaged: its chosen children are not a list")
    lut = cfg.search.budget.lut if cfg.search.budget.metric == "latency" else None
    latency_check = _read_json(check_path(lut), None) if lut else None
    return write_report(run_dir, summary, rows, candidates, selection, latency_check)


def select(
    run_dir: Path, budgets: list[float], config: SelectConfig | None = None
) -> list[dict[str, Any]]:
    """Children of a BigNAS run's supernet for several budgets, without retraining; the
    budgets are in the unit of the run's ``search.budget.metric`` (MACs by default).

    Coarse-to-fine selection scored on the arch split (`strategies.selection`); each chosen
    child is sliced with BN recalibrated, evaluated on the test split and exported, with its
    arch JSON, to ``select/<budget>/``. ``select/selection.json`` lists the chosen children and
    every candidate; ``select/accuracy_vs_macs.png`` plots them.
    """
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    strategy_cls = STRATEGIES.get(cfg.search.strategy)
    options = read_options(strategy_cls, cfg.search.options)
    select_config, calibration_batches = strategy_cls.selection(options)
    space = run_space(cfg, run_dir)
    budget = Budget(cfg.search.budget, space)
    check_targets(space, budget, budgets)  # before the supernet and the data load
    check_installed(cfg.export)
    device = resolve_device(cfg.device, DistEnv())
    supernet = load_supernet(space, run_dir, device)
    data = build_data(_search_data(cfg), resolution=max(space.resolutions))
    weight_loader = data.loader(data.weight, train=True, seed=derive_seed(cfg.seed, "calibration"))
    calibration = list(itertools.islice(weight_loader, calibration_batches))
    arch_loader = data.loader(data.arch, train=False, seed=cfg.seed)
    batches = list(itertools.islice(arch_loader, cfg.search.arch_eval_batches))
    with tqdm(desc="select", unit="child", disable=None) as bar:  # no bar in a log file
        found = select_children(
            space,
            lambda arch: evaluate_child(supernet, arch, calibration, batches, device),
            budget,
            budgets,
            config or select_config,
            progress=lambda _: bar.update(),
        )
    files = RunDir(run_dir)
    chosen = []
    for target, record in found.chosen.items():
        arch = found.archs[record["arch"]]
        model, test, data = _sliced_and_tested(cfg, supernet, arch, device)
        folder = files.select / budget.metric.label(target)
        atomic_write_text(folder / ARCH, arch.to_json())
        preprocessing = data.preprocessing()
        atomic_write_text(folder / files.preprocessing.name, json.dumps(preprocessing, indent=1))
        exports = _export(model, space, arch, preprocessing, folder, cfg.export, data)
        chosen.append(
            {
                "budget": target,
                "metric": budget.name,
                "folder": str(folder),
                **record,
                "test_top1": test["test/top1"],
                **{f"export_{k}": v["path"] for k, v in exports.items()},
            }
        )
    selection = {"chosen": chosen, "candidates": found.candidates}
    atomic_write_text(files.selection, json.dumps(selection, indent=1))
    plot_cost_accuracy(found.candidates, [c["arch"] for c in chosen], files.selection_plot)
    report(run_dir)
    return chosen


def build_latency_table(
    space: str,
    device: str,
    out: Path,
    threads: int | None = None,
    timing: Timing | None = None,
    runtime: str = "torch",
    precision: str = "fp32",
) -> LatencyTable:
    """Measures the latency table of ``space`` in ``runtime`` and ``precision`` on this
    machine's ``device`` and writes it."""
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give the table's file name")
    out.parent.mkdir(parents=True, exist_ok=True)  # a folder that cannot be made fails now
    if not os.access(out.parent, os.W_OK):
        raise ConfigError(f"--out: cannot write in {out.parent}")
    threads = threads or torch.get_num_threads()
    deployment = Deployment(runtime, precision, latency_device(device), threads)
    table = build_table(get_space(space), deployment, timing or Timing(), progress=True)
    atomic_write_text(out, table.to_json())
    return table


def check_latency_table(
    lut: Path,
    archs: int,
    space: str | None = None,
    runtime: str | None = None,
    precision: str | None = None,
) -> dict[str, Any]:
    """Predicted against measured latency of ``archs`` random archs of the table's space, in
    the table's runtime and precision (refused if ``runtime`` or ``precision`` differ); the
    result and its plot go beside the table (`supernas.cost.latency.check_path`), whence the
    report of a run that searched against the table takes them."""
    table = LatencyTable.load(lut)
    table.check_runtime(runtime, precision)
    result = check_table(table, get_space(space or table.space), archs, progress=True)
    atomic_write_text(check_path(lut), json.dumps(result, indent=1))
    plot_latency_check(result, check_plot_path(lut))
    return result


def predict(source: Path, images: list[Path]) -> list[Prediction]:
    """Classifies image files with the model of a run directory or a supernas ONNX export,
    preprocessed as the model's contract says."""
    source = Path(source)
    missing = [image for image in images if not Path(image).is_file()]
    if missing:
        what = "is a folder, not an image file" if Path(missing[0]).is_dir() else "does not exist"
        raise ConfigError(f"image file {missing[0]} {what}")
    if source.is_dir():
        _, space, _, model = load_trained(source)
        path = RunDir(source).preprocessing
        if not path.is_file():
            raise ConfigError(f"{path} is missing: the run ended before its model was written")
        contract = check_contract(_read_json(path, None), str(path))
        check_fits(contract, space.in_channels, space.num_classes, str(path))
        batch = preprocess(images, contract)
        with torch.no_grad():
            logits = model.eval()(batch)
    elif source.suffix == ".onnx" and source.is_file():
        try:
            import onnxruntime
        except ImportError:
            raise ConfigError(
                "an ONNX model needs onnxruntime: pip install 'supernas[export]'"
            ) from None
        contract = onnx_contract(source)
        session = onnxruntime.InferenceSession(str(source), providers=["CPUExecutionProvider"])
        (inputs,), (outputs,) = session.get_inputs(), session.get_outputs()
        check_fits(contract, inputs.shape[1], outputs.shape[1], str(source))
        batch = preprocess(images, contract)
        (output,) = session.run(None, {"images": batch.numpy()})
        logits = torch.from_numpy(output)
    else:
        raise ConfigError(f"{source} is neither a run directory nor an .onnx file")
    return predictions(images, logits, contract["classes"])


def measure_latency(run_dir: Path, threads: int | None = None) -> dict[str, Any]:
    """Times the finished model of ``run_dir`` on this machine, as the run's latency table was
    measured (its device, runtime, precision, threads and batch size; else torch eager on the
    CPU, one thread, batch 1), and adds the figures to its summary and report. In an ONNX
    runtime the model is exported and, for an int8 table, quantized as `supernas export` does
    (calibrated on random images: what an int8 graph runs does not depend on its ranges)."""
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    cfg, space, arch, model = load_trained(run_dir)
    budget = Budget(cfg.search.budget, space)
    table = getattr(budget.metric, "table", None)
    deployment = Deployment.of(table, threads) if table else Deployment(threads=threads or 1)
    # One model: time it long enough (about 1 s at 2 ms) that a burst of other load spoils one
    # round, not the figure.
    timing = dataclasses.replace(
        Timing.of(table) if table else Timing(), warmup=20, repeats=100, rounds=5
    )
    shape = (space.in_channels, arch.resolution, arch.resolution)
    measured = measure_model(model, shape, deployment, timing)
    setting = (
        f"{device_name(deployment.device)}, {deployment.runtime} {deployment.precision}, "
        f"{deployment.threads} threads, batch {timing.batch_size}"
    )
    result: dict[str, Any] = {"latency_measured_ms": round(measured, 4), "latency_on": setting}
    if table is not None:
        result["latency_predicted_ms"] = round(budget.cost(arch), 4)
    if budget.name == "latency" and budget.target is not None and measured > budget.target:
        result["latency_warning"] = (
            f"measured {measured:.3g} ms is over the target of {budget.target:g} ms"
        )
        log.warning(result["latency_warning"])
    summary_path = RunDir(run_dir).summary
    if summary_path.is_file():
        summary = {**_read_json(summary_path, {}), **result}
        atomic_write_text(summary_path, json.dumps(summary, indent=1))
        report(run_dir)
    return result
