"""Latency predictor accuracy: look-up-table sums against measured end-to-end latency on this CPU.

For ``fmnist_small`` and ``proxyless_mobile`` (at 96 px with ``--quick``, 224 px otherwise;
the resolution is part of the space, so the table is built for that variant), builds a latency
table here (batch 1, one thread: every layer alone, warm-up then the median of repeats, plus the
fitted per-network overhead), then measures ``--archs`` random archs end to end and reports the
mean absolute percentage error (a fraction) and the Spearman rank correlation of predicted vs
measured latency. Goal: MAPE <= 0.05, Spearman >= 0.95. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from _common import hardware, run_kind

from supernas.cost.latency_build import Deployment, Timing, build_table, check_table
from supernas.space import get_space


def _spaces(quick: bool):
    yield get_space("fmnist_small")
    mobile = get_space("proxyless_mobile")
    yield dataclasses.replace(mobile, resolutions=(96,)) if quick else mobile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and archs (<1 min)")
    parser.add_argument("--archs", type=int, help="random archs checked per space")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    archs = args.archs or (20 if args.quick else 30)
    timing = Timing(1, warmup=3, repeats=7, rounds=3) if args.quick else Timing(1, 5, 15, 3)
    results = []
    for space in _spaces(args.quick):
        start = time.perf_counter()
        table = build_table(space, Deployment(threads=args.threads), timing)
        built = time.perf_counter() - start
        check = check_table(table, space, archs)
        results.append(
            {
                "space": space.name,
                "resolution": space.resolutions[0] if len(space.resolutions) == 1 else None,
                "device": check["device"],
                "archs": archs,
                "mape": round(check["mape"], 4),
                "spearman": round(check["spearman"], 4),
                "within_10pct": round(check["within_10pct"], 3),
                "entries": len(table.entries),
                "overhead_ms": round(table.overhead_ms, 4),
                "build_s": round(built, 1),
            }
        )
        print(json.dumps(results[-1]))
    goal = all(r["mape"] <= 0.05 and r["spearman"] >= 0.95 for r in results)
    print(
        json.dumps(
            {
                "benchmark": "latency_predictor",
                "hardware": hardware(),
                "run": run_kind(args.quick, faithful=True),
                "threads": args.threads,
                "timing": dataclasses.asdict(timing),
                "results": results,
                "goal_met": goal,
            }
        )
    )


if __name__ == "__main__":
    main()
