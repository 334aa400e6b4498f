"""The one training loop, shared by final training and every search strategy.

A `Task` (a classifier being trained, or a strategy searching) does the work of one step; the
loop owns epochs, the order of batches, checkpoints, metrics and progress. Each epoch's batch
order is a function of (seed, epoch) alone, so a run resumed from a mid-epoch checkpoint skips
exactly the batches already done and ends, on the CPU, with the same weights as a run that was
never interrupted.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from supernas.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from supernas.train.distributed import DistEnv, barrier
from supernas.train.metrics import MetricsWriter

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


class Task(Protocol):
    def train_step(self, batch: Any, step: int) -> dict[str, float]: ...
    def evaluate(self) -> dict[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class LoopConfig:
    epochs: int
    seed: int = 0
    log_every: int = 10  # steps between metric records and non-TTY log lines
    checkpoint_every: int = 100  # steps between mid-epoch checkpoints
    progress: bool = True  # a progress bar on a TTY (log lines otherwise)
    desc: str = "train"


def epoch_batches(loader: DataLoader, epoch: int, seed: int, skip: int) -> DataLoader:
    """A loader over the batches of ``epoch`` from the ``skip``-th on, in a fixed order."""
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    if loader.generator is not None:
        loader.generator.manual_seed(seed * 100_003 + epoch)
    batches = list(loader.batch_sampler)[skip:]
    return DataLoader(
        loader.dataset, batch_sampler=batches, num_workers=loader.num_workers,
        collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
    )


def _resume(task: Task, path: Path) -> int:
    state = load_checkpoint(path)
    task.load_state_dict(state["task"])
    set_rng_state(state["rng"])
    log.info("resumed %s at step %d", path, state["step"])
    return int(state["step"])


def _save(task: Task, path: Path, step: int, env: DistEnv) -> None:
    if env.is_main:
        save_checkpoint(path, {"step": step, "task": task.state_dict(), "rng": rng_state()})
    barrier(env)


def run_loop(task: Task, loader: DataLoader, cfg: LoopConfig, run_dir: Path, *,
             resume: bool = False, env: DistEnv = DistEnv()) -> dict[str, float]:
    """Runs ``cfg.epochs`` epochs of ``task`` over ``loader``; returns the last evaluation."""
    path = run_dir / CHECKPOINT
    step = _resume(task, path) if resume and path.is_file() else 0
    metrics = MetricsWriter(run_dir, env.is_main, resume_step=step)
    steps_per_epoch = len(loader)
    total = cfg.epochs * steps_per_epoch
    show_bar = cfg.progress and env.is_main and sys.stderr.isatty()
    bar = tqdm(total=total, initial=step, desc=cfg.desc, disable=not show_bar, dynamic_ncols=True)
    evaluation: dict[str, float] = {}
    try:
        for epoch in range(step // steps_per_epoch, cfg.epochs):
            skip = step - epoch * steps_per_epoch
            for batch in epoch_batches(loader, epoch, cfg.seed, skip):
                values = task.train_step(batch, step)
                step += 1
                bar.update()
                if step % cfg.log_every == 0 or step == total:
                    metrics.write(step, step / steps_per_epoch, values)
                    bar.set_postfix(loss=f"{values.get('train/loss', float('nan')):.3f}")
                    if not show_bar and env.is_main:
                        log.info("%s step %d/%d %s", cfg.desc, step, total, _brief(values))
                if step % cfg.checkpoint_every == 0 and step % steps_per_epoch:
                    _save(task, path, step, env)
            evaluation = task.evaluate()
            metrics.write(step, epoch + 1, evaluation)
            if env.is_main:
                log.info("%s epoch %d/%d %s", cfg.desc, epoch + 1, cfg.epochs, _brief(evaluation))
            _save(task, path, step, env)
        if not evaluation:  # resumed after the last epoch had finished
            evaluation = task.evaluate()
    finally:
        bar.close()
        metrics.close()
    return evaluation


def _brief(values: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in values.items() if isinstance(v, (int, float)))
