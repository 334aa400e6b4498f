"""Latency tables in each runtime: look-up-table sums against measured end-to-end latency.

For ``fmnist_small`` and ``proxyless_mobile`` (at 96 px with ``--quick``, 224 px otherwise;
the resolution is part of the space, so the table is built for that variant) and for each
deployment (torch eager fp32; ONNX Runtime fp32 and int8; OpenVINO fp32 and int8, those that are
installed), builds a latency table here (batch 1, one thread: every layer alone in the runtime's
own session, warm-up then the median of repeats, the median of those over interleaved passes
(``--estimate min``: the smallest, as older tables), plus the fitted per-network and per-layer
terms), then
measures ``--archs`` random archs exported end to end in the same runtime and precision, and
reports the mean absolute percentage error (a fraction), the fraction within +-10% and the
Spearman rank correlation of predicted against measured latency. The check measures the
archs twice: ``repeat_mape`` and ``repeat_within_10pct`` compare the two measurements, the
floor that no table can be judged below on this machine (on a shared host the same network's
latency moves between minutes). Goal: ``within_10pct`` >= 0.95
and Spearman >= 0.95 for every row (floor: MAPE <= 0.10, Spearman >= 0.9). ``--quick`` runs the
same comparison with fewer repeats and archs. Prints one JSON line per row, one JSON line last.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from _common import hardware, run_kind

from supernas.cost.latency import ESTIMATES
from supernas.cost.latency_build import Deployment, Timing, build_table, check_table
from supernas.runtimes import RUNTIMES, runtimes
from supernas.space import get_space

DEPLOYMENTS = [("torch", "fp32")] + [(r, p) for r in RUNTIMES for p in ("fp32", "int8")]
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


def _spaces(quick: bool):
    yield get_space("fmnist_small")
    mobile = get_space("proxyless_mobile")
    yield dataclasses.replace(mobile, resolutions=(96,)) if quick else mobile


def cpu_features() -> list[str]:
    """The int8 and wide-vector instruction sets this CPU offers, of `CPU_FEATURES`."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])  # fmt: skip
    return [feature for feature in CPU_FEATURES if feature in flags]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and archs")
    parser.add_argument("--archs", type=int, help="random archs checked per row")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="folder to keep the tables and checks in")
    parser.add_argument(
        "--spaces", nargs="+", choices=("fmnist_small", "proxyless_mobile"), help="default: both"
    )
    parser.add_argument(
        "--estimate",
        choices=ESTIMATES,
        default="median",
        help="an entry or network is the median (default) or the smallest of its pass medians",
    )
    args = parser.parse_args()
    archs = args.archs or (20 if args.quick else 40)
    repeats = {"warmup": 3, "repeats": 7} if args.quick else {"warmup": 5, "repeats": 15}
    timing = Timing(1, **repeats, rounds=3, estimate=args.estimate)
    installed = [d for d in DEPLOYMENTS if d[0] == "torch" or d[0] in runtimes()]
    results = []
    for space in _spaces(args.quick):
        if args.spaces and space.name not in args.spaces:
            continue
        for runtime, precision in installed:
            start = time.perf_counter()
            deployment = Deployment(runtime, precision, threads=args.threads)
            table = build_table(space, deployment, timing)
            built = time.perf_counter() - start
            check = check_table(table, space, archs)
            if args.out:
                args.out.mkdir(parents=True, exist_ok=True)
                name = f"{space.name}-{space.resolutions[0]}-{runtime}-{precision}"
                table.save(args.out / f"{name}.json")
                (args.out / f"{name}-check.json").write_text(json.dumps(check, indent=1))
            results.append(
                {
                    "space": space.name,
                    "resolution": space.resolutions[0] if len(space.resolutions) == 1 else None,
                    "runtime": f"{runtime} {table.runtime_version}",
                    "precision": precision,
                    "archs": archs,
                    "mape": round(check["mape"], 4),
                    "within_10pct": round(check["within_10pct"], 3),
                    "spearman": round(check["spearman"], 4),
                    "repeat_mape": round(check["repeat_mape"], 4),
                    "repeat_within_10pct": round(check["repeat_within_10pct"], 3),
                    "median_measured_ms": round(
                        sorted(r["measured_ms"] for r in check["rows"])[archs // 2], 4
                    ),
                    "entries": len(table.entries),
                    "overhead_ms": round(table.overhead_ms, 4),
                    "per_layer_ms": round(table.per_layer_ms, 4),
                    "build_s": round(built, 1),
                }
            )
            print(json.dumps(results[-1]), flush=True)
    goal = all(r["within_10pct"] >= 0.95 and r["spearman"] >= 0.95 for r in results)
    floor = all(r["mape"] <= 0.10 and r["spearman"] >= 0.9 for r in results)
    print(
        json.dumps(
            {
                "benchmark": "runtime_latency",
                "hardware": hardware(),
                "cpu_features": cpu_features(),
                "run": run_kind(args.quick, faithful=True),
                "threads": args.threads,
                "timing": dataclasses.asdict(timing),
                "results": results,
                "goal_met": goal,
                "floor_met": floor,
            }
        )
    )


if __name__ == "__main__":
    main()
