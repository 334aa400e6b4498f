"""A run's Markdown report, with PNG plots of its metric curves and of the searched candidates.

Plots are drawn on bare ``matplotlib.figure.Figure`` objects, which render with Agg, rather than
through ``pyplot``: importing this module then leaves a notebook's backend alone.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from supernas.cost.latency import noisy_machine
from supernas.rundir import METRICS, RunDir
from supernas.rundir import PHASES as RUN_PHASES
from supernas.train.checkpoint import atomic_write_bytes, atomic_write_text
from supernas.train.metrics import read_metrics

log = logging.getLogger(__name__)

PHASES = (".", *RUN_PHASES)  # folders of a run that may hold a metrics file
GROUPS = ("loss", "accuracy", "lr", "entropy", "other")  # one PNG each, in this order
MAX_PANELS = 12  # "other" series get a panel each, as their scales differ
TOP_CANDIDATES = 10  # rows of the candidates table

Series = tuple[list[float], list[float]]  # (steps, values)


def metric_series(records: Sequence[dict[str, Any]]) -> dict[str, Series]:
    """Every numeric key other than ``step``/``epoch``, as finite values against ``step``."""
    series: dict[str, Series] = {}
    for record in records:
        step = record.get("step")
        if not _is_number(step):
            continue
        for key, value in record.items():
            if key in ("step", "epoch") or not _is_number(value) or not math.isfinite(value):
                continue
            steps, values = series.setdefault(key, ([], []))
            steps.append(step)
            values.append(value)
    return series


def metric_group(key: str) -> str:
    """``"train/loss"`` → ``"loss"``, ``"val/top1"`` → ``"accuracy"``, ``"lr"`` → ``"lr"``."""
    parts = key.lower().split("/")
    if any("loss" in part for part in parts):
        return "loss"
    if any("top1" in part or "top5" in part or part.startswith("acc") for part in parts):
        return "accuracy"
    if any(part == "lr" or part.startswith("lr_") for part in parts):
        return "lr"
    if any(part.startswith("entropy") for part in parts):  # e.g. FP-NAS's schedules compared
        return "entropy"
    return "other"


def plot_metrics(records: Sequence[dict[str, Any]], out_dir: Path, prefix: str) -> list[Path]:
    """Writes ``{prefix}_{group}.png`` for each group with data; returns their paths."""
    grouped: dict[str, dict[str, Series]] = {}
    for key, points in metric_series(records).items():
        grouped.setdefault(metric_group(key), {})[key] = points
    paths = []
    for group in GROUPS:
        if group not in grouped:
            continue
        if group == "other":
            figure = _panels(grouped[group])
        else:
            figure = Figure(figsize=(6, 3.5))
            _lines(figure.add_subplot(), grouped[group], ylabel=group)
        path = Path(out_dir) / f"{prefix}_{group}.png"
        _save(figure, path)
        paths.append(path)
    return paths


def plot_cost_accuracy(
    points: Sequence[dict[str, Any]],
    chosen: Sequence[str],
    path: Path,
    accuracy_key: str = "arch_top1",
) -> Path:
    """Scatter of candidates' accuracy against MACs; those whose ``arch`` is in ``chosen`` red.

    Each point is a dict with ``macs``, ``accuracy_key`` (a fraction) and ``arch`` (its string).
    """
    figure = Figure(figsize=(6, 4))
    axis = figure.add_subplot()
    picked = [p for p in points if p.get("arch") in chosen]
    layers = (
        ("candidates", points, {"s": 14, "alpha": 0.6}),
        ("chosen", picked, {"s": 60, "color": "red"}),
    )
    for label, group, style in layers:
        macs = [p["macs"] / 1e6 for p in group]
        accuracy = [100 * p[accuracy_key] for p in group]
        axis.scatter(macs, accuracy, label=label, **style)
    axis.set_xlabel("MACs (M)")
    axis.set_ylabel(f"{accuracy_key} (%)")
    axis.legend()
    axis.grid(alpha=0.3)
    _save(figure, Path(path))
    return Path(path)


def plot_latency_check(check: dict[str, Any], path: Path) -> Path:
    """Predicted against measured latency of a table's check (`supernas latency check`), with
    the diagonal and the +-10% band."""
    figure = Figure(figsize=(5, 5))
    axis = figure.add_subplot()
    predicted = [row["predicted_ms"] for row in check["rows"]]
    measured = [row["measured_ms"] for row in check["rows"]]
    axis.scatter(measured, predicted, s=16)
    ends = [0.9 * min(predicted + measured), 1.1 * max(predicted + measured)]
    axis.plot(ends, ends, color="black", linewidth=1)
    axis.fill_between(ends, [0.9 * e for e in ends], [1.1 * e for e in ends], alpha=0.15)
    axis.set_xlabel("measured (ms)")
    axis.set_ylabel("predicted (ms)")
    axis.set_title(
        f"{check['space']}, {check['runtime']} {check['precision']}: MAPE "
        f"{100 * check['mape']:.1f}%, {100 * check['within_10pct']:.0f}% within 10%, "
        f"Spearman {check['spearman']:.3f}",
        fontsize=8,
    )
    axis.grid(alpha=0.3)
    _save(figure, Path(path))
    return Path(path)


def write_report(
    run_dir: Path,
    summary: dict[str, Any],
    arch_rows: Sequence[dict[str, Any]] | None = None,
    candidates: Sequence[dict[str, Any]] | None = None,
    selection: Sequence[dict[str, Any]] | None = None,
    latency_check: dict[str, Any] | None = None,
) -> Path:
    """Writes ``run_dir/report.md`` and its PNGs under ``run_dir/plots/``; returns the report.

    ``summary`` is a flat table of the run (space, strategy, arch, MACs, top-1, exported
    files...), ``arch_rows`` one dict per block, ``candidates`` the points of the search plot,
    ``selection`` the children that ``supernas select`` chose, ``latency_check`` the check of
    the latency table the search used (`supernas latency check`), where it has one.
    Curves come from the ``metrics.jsonl`` of the run folder and of its ``search/`` and
    ``train/`` phases.
    """
    run_dir = Path(run_dir)
    lines = [f"# supernas run `{run_dir.name}`", "", "## Summary", ""]
    lines += _table([{"field": key, "value": value} for key, value in summary.items()], run_dir)
    if arch_rows:
        lines += ["", "## Architecture", "", *_table(arch_rows, run_dir)]
    if candidates:
        path = run_dir / "plots" / "candidates.png"
        plot_cost_accuracy(candidates, [str(summary.get("arch", ""))], path)
        best = sorted(candidates, key=lambda c: -c["arch_top1"])[:TOP_CANDIDATES]
        lines += ["", "## Candidates", "", _image("candidates", path, run_dir), ""]
        lines += [f"Best {len(best)} of {len(candidates)} by arch-split top-1:", ""]
        lines += _table(best, run_dir)
    if selection:
        path = RunDir(run_dir).selection_plot
        lines += ["", "## Selected children (`supernas select`)", ""]
        if path.is_file():
            lines += [_image("selection", path, run_dir), ""]
        keep = ("budget", "metric", "arch", "arch_top1", "test_top1", "macs", "params")
        keep += ("latency_ms",)
        lines += _table([{k: c[k] for k in keep if k in c} for c in selection], run_dir)
    if latency_check:
        path = plot_latency_check(latency_check, RunDir(run_dir).latency_check_plot)
        keep = ("runtime", "precision", "device", "archs", "mape", "within_10pct", "spearman")
        keep += ("repeat_mape", "repeat_within_10pct")
        lines += ["", "## Latency table check", "", _image("latency check", path, run_dir), ""]
        lines += _table([{k: latency_check[k] for k in keep if k in latency_check}], run_dir)
        lines += ["", *(f"Warning: {line}." for line in noisy_machine(latency_check))]
    lines += ["", "## Curves", "", *_curves(run_dir)]
    path = RunDir(run_dir).report
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _curves(run_dir: Path) -> list[str]:
    lines: list[str] = []
    for phase in PHASES:
        folder = run_dir / phase
        source = (folder / METRICS).relative_to(run_dir).as_posix()
        if not (folder / METRICS).is_file():
            continue
        records = read_metrics(folder / METRICS)
        prefix = "run" if phase == "." else phase
        paths = plot_metrics(records, run_dir / "plots", prefix)
        count = f"{len(records)} record" + ("" if len(records) == 1 else "s")
        lines += [f"### {prefix} (`{source}`, {count})", ""]
        lines += [_image(p.stem, p, run_dir) for p in paths] or ["No numeric series to plot."]
        others = [k for k in metric_series(records) if metric_group(k) == "other"]
        if len(others) > MAX_PANELS:
            lines.append(f"Not plotted: {', '.join(others[MAX_PANELS:])}.")
        lines.append("")
    if not lines:
        where = ", ".join(f"`{p}/{METRICS}`" for p in PHASES)
        lines = [f"No metrics file found ({where}): no curves plotted."]
    return lines


def _lines(axis, series: dict[str, Series], ylabel: str) -> None:
    for key, (steps, values) in series.items():
        axis.plot(steps, values, label=key, marker="o" if len(steps) < 30 else None)
    axis.set_xlabel("step")
    axis.set_ylabel(ylabel)
    axis.legend(fontsize="small")
    axis.grid(alpha=0.3)


def _panels(series: dict[str, Series]) -> Figure:
    shown = list(series.items())[:MAX_PANELS]
    figure = Figure(figsize=(6, 1.8 * len(shown) + 0.6), layout="constrained")
    axes = figure.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0]
    for axis, (key, points) in zip(axes, shown, strict=True):
        _lines(axis, {key: points}, ylabel="")
    return figure


def _save(figure: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, lambda file: file.write(buffer.getvalue()))


def _table(rows: Sequence[dict[str, Any]], run_dir: Path) -> list[str]:
    """A Markdown table whose columns are every key of ``rows``, in first-seen order."""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    if not keys:
        return []
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(key, ""), run_dir) for key in keys) + " |")
    return lines


def _cell(value: Any, run_dir: Path) -> str:
    """Floats to 6 significant digits, files of the run as relative links, ``|`` escaped."""
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (str, Path)) and _inside(Path(value), run_dir):
        relative = Path(value).resolve().relative_to(run_dir.resolve()).as_posix()
        text = f"[{relative}]({relative})"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _inside(path: Path, run_dir: Path) -> bool:
    try:
        return path.is_file() and path.resolve().is_relative_to(run_dir.resolve())
    except (OSError, ValueError):  # a string too long or odd to be a path
        return False


def _image(title: str, path: Path, run_dir: Path) -> str:
    return f"![{title}]({path.relative_to(run_dir).as_posix()})"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
