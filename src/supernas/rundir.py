"""The files of a run directory, each named here once.

A run of ``supernas search`` (``runs/<time>-<space>-<strategy>/``) holds::

    config.yaml         the resolved settings the run was started with
    space.yaml          the resolved space (stem and head fitted to the data): the run's own
    search/             the search phase: checkpoint.pt, metrics.jsonl, tb/, warnings.json
    arch.json           the derived arch
    candidates.json     the archs scored while deriving it
    train/              training the arch from scratch: checkpoint.pt, metrics.jsonl, tb/
    sliced.pt           the deployed child of a method that does not retrain (BigNAS)
    model.*             the exports (`supernas.export` names them by format)
    summary.json        the figures of the run
    preprocessing.json  what the model expects of an image: size, crop, mean, std, classes
    report.md, *.png    the report (`supernas.report`)
    select/             children picked later by ``supernas select``: <budget>/arch.json and
                        exports, selection.json, accuracy_vs_macs.png

A phase folder (``search/``, ``train/``) is what the training loop writes: its checkpoint,
metrics and TensorBoard events, named by `CHECKPOINT`, `METRICS` and `TENSORBOARD`.

One process writes a run directory at a time: `create_run_dir` never hands out a taken name
(two runs started in the same second get ``...-2``), and `exclusive` holds ``.lock`` (an
advisory ``flock``, released by the kernel however the process ends) while a run writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from supernas.errors import ConfigError

CHECKPOINT = "checkpoint.pt"  # in a phase folder
METRICS = "metrics.jsonl"  # in a phase folder
TENSORBOARD = "tb"  # in a phase folder
ARCH = "arch.json"  # in a run, and in each select/<budget>/ folder
PHASES = ("search", "train")
LOCK = ".lock"


def create_run_dir(parent: Path, name: str) -> Path:
    """A new, empty ``parent/name``, or ``name-2``, ``name-3``, ... where that is taken."""
    parent.mkdir(parents=True, exist_ok=True)
    for count in itertools.count(1):
        path = parent / (name if count == 1 else f"{name}-{count}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable")


def check_fresh(run_dir: Path) -> None:
    """Refuses to start a new run in a directory that already holds one."""
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise ConfigError(
            f"{run_dir} already exists and is not empty; continue its run with --resume "
            "or choose another --run-dir"
        )


def discard_unstarted(run_dir: Path, created: bool) -> None:
    """Removes what a run wrote before it stopped on a user error (a batch larger than the data,
    say) when that is only its settings: nothing to resume or lose, and the same ``--run-dir``
    is free again. A directory holding anything else is left as it is."""
    files = RunDir(run_dir)
    unstarted = {files.config.name, files.space.name, LOCK}
    if not run_dir.is_dir() or any(p.name not in unstarted for p in run_dir.iterdir()):
        return
    for name in unstarted:
        (run_dir / name).unlink(missing_ok=True)
    if created:
        run_dir.rmdir()


@contextlib.contextmanager
def exclusive(run_dir: Path) -> Iterator[None]:
    """Holds ``run_dir``'s lock while the block runs; another process holding it is a
    one-line `ConfigError`. Temporary files left by a write that was killed are removed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            raise ConfigError(
                f"{run_dir} is in use by another supernas process (pid {holder or '?'}); "
                "wait for it to end"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        for stale in run_dir.rglob(".*.tmp"):  # `atomic_write_bytes`'s temporary names
            stale.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory (see the module docstring)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def search(self) -> Path:
        return self.root / "search"

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def arch(self) -> Path:
        return self.root / ARCH

    @property
    def search_warnings(self) -> Path:
        return self.search / "warnings.json"

    @property
    def candidates(self) -> Path:
        return self.root / "candidates.json"

    @property
    def sliced(self) -> Path:
        return self.root / "sliced.pt"

    @property
    def space(self) -> Path:
        return self.root / "space.yaml"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def preprocessing(self) -> Path:
        return self.root / "preprocessing.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def select(self) -> Path:
        return self.root / "select"

    @property
    def selection(self) -> Path:
        return self.select / "selection.json"

    @property
    def selection_plot(self) -> Path:
        return self.select / "accuracy_vs_macs.png"

    @property
    def latency_check_plot(self) -> Path:
        return self.root / "plots" / "latency_check.png"
