"""A Markdown report of a run with PNG plots of its curves and of the searched candidates."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from supernas.train.checkpoint import atomic_write_bytes, atomic_write_text  # noqa: E402
from supernas.train.metrics import read_metrics  # noqa: E402

_GROUPS = {"loss": "loss", "top1": "accuracy", "lr": "learning rate"}


def _save_figure(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, lambda file: file.write(buffer.getvalue()))


def plot_curves(records: list[dict[str, Any]], out_dir: Path, prefix: str) -> list[Path]:
    """One PNG per group of series (losses, accuracies, learning rate, others) against step."""
    series: dict[str, dict[str, list]] = {}
    for record in records:
        for key, value in record.items():
            if key in ("step", "epoch") or not isinstance(value, (int, float)):
                continue
            group = next((g for k, g in _GROUPS.items() if k in key), "other")
            points = series.setdefault(group, {}).setdefault(key, [[], []])
            points[0].append(record["step"])
            points[1].append(value)
    paths = []
    for group, lines in sorted(series.items()):
        figure, axis = plt.subplots(figsize=(6, 3.5))
        for key, (steps, values) in lines.items():
            axis.plot(steps, values, label=key, marker="o" if len(steps) < 30 else None)
        axis.set_xlabel("step")
        axis.set_ylabel(group)
        axis.legend(fontsize="small")
        axis.grid(alpha=0.3)
        path = out_dir / f"{prefix}_{group.replace(' ', '_')}.png"
        _save_figure(figure, path)
        paths.append(path)
    return paths


def plot_cost_accuracy(candidates: Sequence[dict], chosen: Sequence[str], path: Path) -> Path:
    """Scatter of every evaluated candidate (arch-split top-1 against MACs), chosen in red."""
    figure, axis = plt.subplots(figsize=(6, 4))
    macs = [c["macs"] / 1e6 for c in candidates]
    accuracy = [100 * c["arch_top1"] for c in candidates]
    axis.scatter(macs, accuracy, s=14, alpha=0.6, label="candidates")
    picked = [c for c in candidates if c["arch"] in chosen]
    axis.scatter([c["macs"] / 1e6 for c in picked], [100 * c["arch_top1"] for c in picked],
                 s=60, color="red", label="chosen")
    axis.set_xlabel("MACs (M)")
    axis.set_ylabel("arch-split top-1 (%)")
    axis.legend()
    axis.grid(alpha=0.3)
    _save_figure(figure, path)
    return path


def _table(rows: Sequence[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return lines


def write_report(run_dir: Path, summary: dict[str, Any], arch_rows: Sequence[dict] = (),
                 candidates: Sequence[dict] = ()) -> Path:
    """Writes ``run_dir/report.md`` (and its plots) from a run's files and ``summary``."""
    lines = [f"# supernas run `{run_dir.name}`", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in summary.items()]
    if arch_rows:
        lines += ["", "## Architecture", "", *_table(arch_rows)]
    plots_dir = run_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    if candidates:
        chosen = [summary.get("arch", "")]
        path = plot_cost_accuracy(candidates, chosen, plots_dir / "candidates.png")
        lines += ["", "## Candidates", "", f"![candidates]({path.relative_to(run_dir)})", ""]
        lines += _table(sorted(candidates, key=lambda c: -c["arch_top1"])[:10])
    for phase in ("search", "train"):
        records = read_metrics(run_dir / phase / "metrics.jsonl")
        lines += ["", f"## {phase.capitalize()} curves", ""]
        if not records:
            lines.append("No metrics were recorded for this phase.")
        for path in plot_curves(records, plots_dir, phase):
            lines.append(f"![{path.stem}]({path.relative_to(run_dir)})")
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
