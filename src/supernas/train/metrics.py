"""One writer for run metrics: flat records to ``metrics.jsonl`` and to TensorBoard.

A record is ``{"step": 120, "epoch": 1.5, "train/loss": 0.43, "lr": 0.05}``: the step and epoch
plus ``split/name`` keys, as in nanoGPT. JSONL is the record the report reads; TensorBoard is for
watching a run live.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from supernas.rundir import METRICS, TENSORBOARD
from supernas.train.checkpoint import atomic_write_text

log = logging.getLogger(__name__)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics file; ``[]`` when there is none.

    A last line cut short by a killed run is dropped. Any other unreadable line is skipped
    with a warning, so one bad line does not hide the records after it.
    """
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number < len(lines):
                log.warning("%s:%d is not JSON; skipped", path, number)
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class MetricsWriter:
    """Appends records to ``run_dir/metrics.jsonl`` and ``run_dir/tb``; a no-op when disabled.

    Each record is flushed as it is written, so a crash loses none that was written. A run
    resumed from a checkpoint at ``resume_step`` repeats the steps after it, so the records
    after it are dropped first (0, a fresh run, drops them all) and no record appears twice.
    Disable it on every rank but 0.
    """

    def __init__(self, run_dir: Path, *, resume_step: int = 0, enabled: bool = True) -> None:
        self.enabled = enabled
        if not enabled:
            return
        # Imported here: TensorBoard takes a second to import and only rank 0 needs it.
        from torch.utils.tensorboard import SummaryWriter

        path = run_dir / METRICS
        kept = [record for record in read_metrics(path) if record["step"] <= resume_step]
        atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in kept))
        self._file = path.open("a")
        # purge_step hides the events of the repeated steps in earlier event files.
        self._tensorboard = SummaryWriter(str(run_dir / TENSORBOARD), purge_step=resume_step + 1)

    def write(self, step: int, epoch: float, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": step, "epoch": epoch, **values}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        for key, value in values.items():
            self._tensorboard.add_scalar(key, value, step)

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            self._tensorboard.close()
