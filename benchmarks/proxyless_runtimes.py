"""ProxylessNAS against an ONNX Runtime int8 latency table and against a PyTorch fp32 one.

The paper's point (Cai et al., ICLR 2019, section 4.2: the arch found for one device is not the
best on another) carried to deployment: the runtime and precision a model ships in shape the
arch as much as the device does. Builds two latency tables of ``fmnist_small`` on this CPU
(batch 1, one thread): PyTorch eager fp32 and ONNX Runtime int8 (each layer quantized as
``supernas export --format onnx-int8`` quantizes), or reads them from ``--tables``. Runs the
ProxylessNAS search of ``proxyless_search.py`` once against each, with the same target: the
same quantile (``--quantile``) of the predicted latency of 1,000 uniform random children in
each table, since one figure in ms means a different place in the two runtimes' ranges. Both
derived archs are then timed end to end in both runtimes, each in a fresh process, beside
their predicted latency in both tables. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import torch
from _common import hardware, run_kind
from proxyless_search import _search, build_lut, in_fresh_process, measure

from supernas.cost.latency import LatencyTable
from supernas.cost.latency_build import Timing
from supernas.cost.macs import arch_cost
from supernas.space import get_space, sample

SETTINGS = {"torch fp32": ("torch", "fp32"), "onnxruntime int8": ("onnxruntime", "int8")}
TIMING = Timing(batch_size=1, warmup=10, repeats=25, rounds=5)


def quantile_target(table: LatencyTable, quantile: float, draws: int = 1000) -> float:
    """The ``quantile`` of the predicted latency of ``draws`` uniform random children."""
    space, rng = get_space(table.space), random.Random(0)
    values = sorted(table.predict(space, sample(space, rng)) for _ in range(draws))
    return round(values[int(quantile * (draws - 1))], 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short search (minutes)")
    parser.add_argument("--tables", type=Path, help="folder to read or write the two tables")
    parser.add_argument("--quantile", type=float, default=0.3, help="of random children's ms")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--images", type=int)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--arch-lr", type=float, default=0.3)
    parser.add_argument("--loss", default="budget")
    parser.add_argument("--loss-lambda", type=float, default=5.0)
    args = parser.parse_args()
    args.epochs = args.epochs or (2 if args.quick else 4)
    args.images = args.images or (6000 if args.quick else 12000)
    torch.set_num_threads(1)
    folder = args.tables or Path(tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    tables = {}
    for name, (runtime, precision) in SETTINGS.items():
        path = folder / f"fmnist_small-{runtime}-{precision}.json"
        if not path.is_file():
            in_fresh_process(build_lut, path, TIMING, runtime, precision)
        tables[name] = (path, LatencyTable.load(path))
    common = (
        f"{{mode: two_path, arch_every: 1, arch_lr: {args.arch_lr}, warmup_epochs: 1, "
        f"loss: {args.loss}, loss_lambda: {args.loss_lambda}}}"
    )
    space = get_space("fmnist_small")
    results = []
    for name, (path, table) in tables.items():
        target = quantile_target(table, args.quantile)
        budget = f"{{metric: latency, target: {target}, lut: {path}}}"
        arch, seconds = _search(args, common, budget)
        results.append(
            {
                "searched_against": name,
                "target_ms": target,
                "arch": str(arch),
                "macs": arch_cost(space, arch).macs,
                "predicted_ms": {
                    n: round(t.predict(space, arch), 4) for n, (_, t) in tables.items()
                },
                "search_s": round(seconds, 1),
            }
        )
        print(json.dumps(results[-1]), flush=True)
    archs = [r["arch"] for r in results]
    for name, (runtime, precision) in SETTINGS.items():
        measured = in_fresh_process(measure, archs, TIMING, runtime, precision)
        for record, ms in zip(results, measured, strict=True):
            record.setdefault("measured_ms", {})[name] = round(ms, 4)
    print(
        json.dumps(
            {
                "benchmark": "proxyless_runtimes",
                "hardware": hardware(),
                "run": run_kind(args.quick, faithful=True),
                "epochs": args.epochs,
                "images": args.images,
                "quantile": args.quantile,
                "results": results,
                "archs_differ": archs[0] != archs[1],
                "each_meets_its_target": all(
                    r["measured_ms"][r["searched_against"]] <= 1.1 * r["target_ms"] for r in results
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
