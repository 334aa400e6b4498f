"""The files of a run directory, each named here once.

A run of ``supernas search`` (``runs/<time>-<space>-<strategy>/``) holds::

    config.yaml         the resolved settings the run was started with
    search/             the search phase: checkpoint.pt, metrics.jsonl, tb/
    arch.json           the derived arch
    candidates.json     the archs scored while deriving it
    train/              training the arch from scratch: checkpoint.pt, metrics.jsonl, tb/
    sliced.pt           the deployed child of a method that does not retrain (BigNAS)
    model.*             the exports (`supernas.export` names them by format)
    summary.json        the figures of the run
    report.md, *.png    the report (`supernas.report`)
    select/             children picked later by ``supernas select``: <budget>/arch.json and
                        exports, selection.json, accuracy_vs_macs.png

A phase folder (``search/``, ``train/``) is what the training loop writes: its checkpoint,
metrics and TensorBoard events, named by `CHECKPOINT`, `METRICS` and `TENSORBOARD`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHECKPOINT = "checkpoint.pt"  # in a phase folder
METRICS = "metrics.jsonl"  # in a phase folder
TENSORBOARD = "tb"  # in a phase folder
ARCH = "arch.json"  # in a run, and in each select/<budget>/ folder
PHASES = ("search", "train")


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
    def candidates(self) -> Path:
        return self.root / "candidates.json"

    @property
    def sliced(self) -> Path:
        return self.root / "sliced.pt"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

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
