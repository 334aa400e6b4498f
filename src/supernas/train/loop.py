"""The one training loop, shared by final training and every search strategy.

A `Task` (a classifier in training, or a strategy searching) does the work of one step; the loop
owns the epochs, the order of batches, checkpoints, metrics and progress, in the plain order of
nanoGPT's ``train.py``.

A run that diverges stops: a non-finite loss in a step's metrics, or non-finite weights when a
checkpoint is due, raise `DivergenceError` naming the phase, the step and the setting to lower,
before anything is written, so the last checkpoint on disk is the last finite state and nothing
non-finite goes on to derivation, export or the report.

SIGINT and SIGTERM (what a scheduler sends before it kills) do not stop a step half-way: the
loop finishes the step, writes a checkpoint and raises `Interrupted`, which the CLI turns into
one line saying how to resume and exit code 128 + the signal. A second signal stops at once.

Resume is exact on the CPU: each epoch's batch order is a function of (seed, epoch) alone, the
checkpoint holds the task's state and the global RNGs, and a resumed run skips the batches its
epoch had already done, so it ends with the weights an uninterrupted run ends with. With loader
workers the order stays exact, but random augmentation in the workers does not, since a
different worker loads each batch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from supernas.errors import CheckpointError, ConfigError, DivergenceError, Interrupted
from supernas.rng import derive_seed
from supernas.rundir import CHECKPOINT
from supernas.train.checkpoint import load_checkpoint, save_checkpoint
from supernas.train.distributed import DistEnv, any_rank, barrier
from supernas.train.metrics import MetricsWriter
from supernas.train.seed import rng_state, set_rng_state

log = logging.getLogger(__name__)


Hook = Callable[[int, dict[str, float]], None]
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Task(Protocol):
    """What the loop trains: a standalone model (`ClassifierTask`) or a search (`SearchTask`)."""

    def train_step(self, batch: Any, step: int) -> dict[str, float | Tensor]:
        """One optimisation step on ``batch``; returns flat metrics (``train/loss``, ``lr``),
        numbers or 0-d tensors (read back by the loop only when it records them)."""
        ...

    def evaluate(self) -> dict[str, float]:
        """End-of-epoch validation metrics (``val/top1``, ...)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything the task needs to resume, as tensors, numbers, strings, lists, dicts."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class LoopConfig:
    """How the loop runs; what each step does is the task's business."""

    epochs: int
    seed: int = 0  # with the epoch number, fixes the batch order of each epoch
    log_every: int = 10  # steps between metric records and, off a TTY, progress log lines
    checkpoint_every: int = 100  # steps between mid-epoch checkpoints; each epoch end has one
    progress: bool = True  # a tqdm bar on rank 0 when stderr is a terminal
    desc: str = "train"  # label of the bar and the log lines
    hint: str = "lower the learning rate"  # what a divergence message suggests

    def __post_init__(self) -> None:
        for name in ("epochs", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")


def run_loop(
    task: Task,
    loader: DataLoader,
    cfg: LoopConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    env: DistEnv | None = None,
    on_step: Hook | None = None,
    on_epoch_end: Hook | None = None,
) -> dict[str, float]:
    """Trains ``task`` for ``cfg.epochs`` epochs over ``loader``; returns the last evaluation.

    Writes ``run_dir/checkpoint.pt`` and ``run_dir/metrics.jsonl`` (rank 0 only). Metric steps
    count from 1: the record of step 3 follows the third ``train_step``.

    Args:
        loader: A map-style loader with a batch size. Its sampler is reseeded every epoch.
        resume: Continue from ``run_dir/checkpoint.pt`` if there is one (from the start if not).
        on_step: Called after every step with the step number and the step's metrics (which
            may hold 0-d device tensors).
        on_epoch_end: Called after each evaluation with the epochs done and the evaluation.

    Raises:
        CheckpointError: The checkpoint is unreadable, or has another number of steps per
            epoch (the batch size or the number of processes changed).
        ConfigError: The loader yields no batch, or has no batch sampler, hence no batch
            order to resume.
    """
    if loader.batch_sampler is None:  # an iterable data set, or no batch size
        raise ConfigError("run_loop needs a DataLoader with a batch_size over a map-style data set")
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ConfigError("the training loader yields no batch; lower the batch size")
    env = env or DistEnv()
    path = run_dir / CHECKPOINT
    with _stop_requests() as requested:
        step = _resume(task, path, steps_per_epoch) if resume and path.is_file() else 0
        metrics = MetricsWriter(run_dir, resume_step=step, enabled=env.is_main)
        progress = _Progress(cfg, cfg.epochs * steps_per_epoch, step, env)
        pending = _PendingValues()
        evaluation: dict[str, float] = {}
        try:
            for epoch in range(step // steps_per_epoch, cfg.epochs):
                for batch in _epoch_batches(loader, epoch, cfg.seed, step % steps_per_epoch):
                    values = task.train_step(batch, step)
                    step += 1
                    pending.append((step, values))
                    if on_step is not None:
                        on_step(step, values)
                    epoch_end = step % steps_per_epoch == 0
                    log_due = step % cfg.log_every == 0 or epoch_end
                    save_due = step % cfg.checkpoint_every == 0
                    read = pending.read(cfg) if log_due or save_due or requested else {}
                    if log_due:
                        metrics.write(step, step / steps_per_epoch, read)
                    progress.step(step, read)
                    if not epoch_end:  # the epoch's last checkpoint follows evaluation
                        _save_or_stop(
                            task, path, step, steps_per_epoch, env, cfg, requested, save_due
                        )
                evaluation = task.evaluate()
                metrics.write(step, epoch + 1, evaluation)
                progress.epoch_end(epoch + 1, evaluation)
                if on_epoch_end is not None:
                    on_epoch_end(epoch + 1, evaluation)
                _save_or_stop(task, path, step, steps_per_epoch, env, cfg, requested, True)
        finally:
            progress.close()
            metrics.close()
    return evaluation or task.evaluate()  # empty when resumed after the last epoch


def _epoch_batches(loader: DataLoader, epoch: int, seed: int, skip: int) -> DataLoader:
    """A loader over the batches of ``epoch`` from the ``skip``-th on, in a fixed order.

    The order must not depend on how far the global RNG has advanced, which differs between a
    resumed run and an uninterrupted one. So a `DistributedSampler` gets ``set_epoch`` (its own
    seed applies), a sampler with a generator has it reseeded, and a sampler that draws from
    the global generator draws from a fork of it seeded for this epoch.
    """
    epoch_seed = derive_seed(seed, f"epoch/{epoch}")
    sampler = loader.sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    if isinstance(getattr(sampler, "generator", None), torch.Generator):
        sampler.generator.manual_seed(epoch_seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(epoch_seed)
        batches = list(loader.batch_sampler)[skip:]
    # Our own generator: a DataLoader draws its workers' base seed from the global RNG when it
    # has none, one draw an uninterrupted run makes at the epoch start and a resumed run later.
    return DataLoader(
        loader.dataset,
        batch_sampler=batches,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        prefetch_factor=loader.prefetch_factor,
        generator=torch.Generator().manual_seed(epoch_seed),
    )


def _resume(task: Task, path: Path, steps_per_epoch: int) -> int:
    state = load_checkpoint(path)
    if not {"step", "steps_per_epoch", "task", "rng"} <= state.keys():
        raise CheckpointError(f"checkpoint {path} is not a training checkpoint")
    if state["steps_per_epoch"] != steps_per_epoch:
        raise CheckpointError(
            f"checkpoint {path} was written with {state['steps_per_epoch']} steps per epoch and "
            f"this run has {steps_per_epoch}; resume with the same batch size and process count"
        )
    try:
        task.load_state_dict(state["task"])
    except (KeyError, ValueError, TypeError, RuntimeError) as error:  # another run's state
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(
            f"checkpoint {path} does not fit this run (another space, method or settings): {first}"
        ) from None
    set_rng_state(state["rng"])
    log.info("resuming from %s at step %d", path, state["step"])
    return int(state["step"])


@contextlib.contextmanager
def _stop_requests() -> Iterator[list[int]]:
    """Collects SIGINT and SIGTERM while the loop runs, instead of stopping mid-step; a second
    signal stops at once. Off the main thread (where handlers cannot be set) it collects none."""
    requested: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def request(signum: int, frame: object) -> None:
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)
        log.warning(
            "%s: finishing this step, then saving a checkpoint", signal.Signals(signum).name
        )

    previous = {signum: signal.signal(signum, request) for signum in STOP_SIGNALS}
    try:
        yield requested
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _save_or_stop(
    task: Task,
    path: Path,
    step: int,
    steps_per_epoch: int,
    env: DistEnv,
    cfg: LoopConfig,
    requested: list[int],
    due: bool,
) -> None:
    """Writes the checkpoint when ``due`` or when a stop was requested on any rank, and then
    stops with `Interrupted`."""
    stop = any_rank(bool(requested), env)
    if due or stop:
        _save(task, path, step, steps_per_epoch, env, cfg)
    if stop:
        signum = requested[0] if requested else signal.SIGTERM  # another rank's request
        raise Interrupted(signum, cfg.desc, step, str(path))


class _PendingValues:
    """Step metrics not yet read back from the device.

    A step returns its metrics as 0-d tensors where they come from the device, so that no step
    waits for the device to report a number. The loop reads them back together, one transfer
    for all of them, when a record, a checkpoint or a stop is due, and checks every step's
    losses in order then, so a non-finite loss is still named with the step it came from and
    never reaches a checkpoint.
    """

    def __init__(self) -> None:
        self._steps: list[tuple[int, dict[str, Any]]] = []

    def append(self, entry: tuple[int, dict[str, Any]]) -> None:
        self._steps.append(entry)

    def read(self, cfg: LoopConfig) -> dict[str, float]:
        """The last step's metrics as floats, after checking every pending step's losses."""
        tensors = [v for _, values in self._steps for v in values.values() if _is_tensor(v)]
        device = tensors[0].device if tensors else None
        numbers = iter(
            torch.stack([t.detach().reshape(()).float().to(device) for t in tensors]).tolist()
            if tensors
            else []
        )
        read: dict[str, float] = {}
        for step, values in self._steps:
            read = {k: next(numbers) if _is_tensor(v) else float(v) for k, v in values.items()}
            _check_losses(read, step, cfg)
        self._steps.clear()
        return read


def _is_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor)


def _check_losses(values: dict[str, float], step: int, cfg: LoopConfig) -> None:
    for key, value in values.items():
        if "loss" in key and not math.isfinite(value):
            raise DivergenceError(
                f"{cfg.desc} diverged at step {step}: {key} is {value}; {cfg.hint}"
            )


def _non_finite(state: Any) -> str | None:
    """The first key path of ``state`` holding a non-finite float tensor, if any."""
    if isinstance(state, torch.Tensor):
        return "" if state.is_floating_point() and not bool(state.isfinite().all()) else None
    if not isinstance(state, (dict, list, tuple)):
        return None
    items = state.items() if isinstance(state, dict) else enumerate(state)
    for key, value in items:
        found = _non_finite(value)
        if found is not None:
            return f"{key}.{found}".rstrip(".")
    return None


def _save(
    task: Task, path: Path, step: int, steps_per_epoch: int, env: DistEnv, cfg: LoopConfig
) -> None:
    # Every rank checks (their weights agree, so they stop together); rank 0 writes. The RNGs
    # of the others are not saved, so a resumed run gives every rank rank 0's, which equal
    # theirs when all ranks were seeded alike.
    task_state = task.state_dict()
    bad = _non_finite(task_state)
    if bad is not None:
        raise DivergenceError(
            f"{cfg.desc} diverged by step {step}: {bad} is not finite; {cfg.hint} "
            f"(the last checkpoint, {path}, is the last finite state)"
        )
    if env.is_main:
        state = {
            "step": step,
            "steps_per_epoch": steps_per_epoch,
            "task": task_state,
            "rng": rng_state(),
        }
        save_checkpoint(path, state)
    barrier(env)


class _Progress:
    """A tqdm bar on a terminal; elsewhere (a log file, a batch job) a log line every few steps."""

    def __init__(self, cfg: LoopConfig, total: int, step: int, env: DistEnv) -> None:
        self.cfg, self.total, self.enabled = cfg, total, env.is_main
        self.bar = None
        if env.is_main and cfg.progress and sys.stderr.isatty():
            self.bar = tqdm(total=total, initial=step, desc=cfg.desc, dynamic_ncols=True)

    def step(self, step: int, values: dict[str, float]) -> None:
        """``values``: the step's metrics when they were read back, else empty."""
        if self.bar is not None:
            self.bar.update()
            if step % self.cfg.log_every == 0 and "train/loss" in values:
                self.bar.set_postfix(loss=f"{values['train/loss']:.3f}")
        elif self.enabled and step % self.cfg.log_every == 0:
            log.info("%s step %d/%d %s", self.cfg.desc, step, self.total, _brief(values))

    def epoch_end(self, epoch: int, evaluation: dict[str, float]) -> None:
        if self.enabled:
            log.info("%s epoch %d/%d %s", self.cfg.desc, epoch, self.cfg.epochs, _brief(evaluation))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _brief(values: dict[str, float]) -> str:
    return " ".join(f"{key}={value:.4g}" for key, value in values.items())
