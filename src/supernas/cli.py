"""The ``supernas`` command line: parse, build a config, call `supernas.api`, print.

A user mistake (`SupernasError`) prints ``supernas: error: <one line>`` and exits with code 2;
SIGINT or SIGTERM during a run prints how to resume it and exits with 128 + the signal (130,
143). An OSError (a full disk, a read-only folder, a path that is a file) is one line and exit
code 2 as well. Any other exception is a bug: one line and exit code 1, the traceback written
to a file in the run directory (or the temporary folder); ``SUPERNAS_TRACEBACK=1`` raises it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from supernas import __version__
from supernas.errors import Interrupted, SupernasError

# `supernas.runtimes.TIMED_RUNTIMES` and `PRECISIONS`, `supernas.export.FORMATS` and
# `supernas.cost.latency.ESTIMATES`, restated so that --help imports no torch (a test keeps them
# equal)
RUNTIMES = ("torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "int8")
EXPORT_FORMATS = ("onnx", "onnx-int8", "torchscript", "torch-export", "state-dict")
ESTIMATES = ("median", "min")

EXAMPLES = {
    "space": "examples:\n  supernas space list\n  supernas space show fmnist_small\n"
    "  supernas space show bignas --yaml > bignas.yaml\n"
    "  supernas space show fmnist_small --lut lut_fmnist_cpu.json   # latency range",
    "search": "examples:\n  supernas search recipes/fmnist_random.yaml\n"
    "  supernas search recipes/fmnist_random.yaml --set search.budget.target=4e6 "
    "--set train.epochs=2\n  supernas search --resume runs/20261122-120000-fmnist_small-random",
    "train": "examples:\n  supernas train --arch runs/RUN/arch.json recipes/fmnist_random.yaml\n"
    "  torchrun --nproc_per_node 2 -m supernas train --arch arch.json --set device=cpu",
    "eval": "example:\n  supernas eval runs/RUN",
    "export": "examples:\n  supernas export runs/RUN --format onnx\n"
    "  supernas export runs/RUN --format onnx torchscript state-dict --out exported/\n"
    "  supernas export runs/RUN --format onnx-int8",
    "report": "example:\n  supernas report runs/RUN",
    "predict": "examples:\n  supernas predict runs/RUN photo1.png photo2.jpg\n"
    "  supernas predict runs/RUN/model.onnx images/*.png   # the ONNX file alone is enough",
    "select": "example:\n  supernas select runs/RUN --budgets 5M,10M,20M",
    "strategy": "examples:\n  supernas strategy list\n  supernas strategy show dmasking\n"
    "  supernas strategy show bignas --json",
    "strategy list": "example:\n  supernas strategy list",
    "strategy show": "examples:\n  supernas strategy show dmasking\n"
    "  supernas strategy show proxyless --json\n"
    "  supernas search recipes/fmnist_dmasking.yaml --set search.options.arch_every=2",
    "latency": "examples:\n  supernas latency build --space fmnist_small --device cpu --threads 1 "
    "--out lut.json\n"
    "  supernas latency build --space fmnist_small --runtime onnxruntime --precision int8 "
    "--threads 1 --out lut_ort_int8.json\n  supernas latency check --lut lut.json --archs 20\n"
    "  supernas latency measure runs/RUN   # the finished model, timed as the table was",
}


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", nargs="?", help="recipe YAML (see recipes/); defaults otherwise")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. train.epochs=2",
    )
    parser.add_argument(
        "--data-dir", help="folder holding the data set (same as --set data.data_dir=)"
    )
    parser.add_argument("--run-dir", type=Path, help="where to write the run (default runs/...)")
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue an interrupted run from its last checkpoint",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="supernas",
        description="Hardware-aware neural architecture search of efficient CNNs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'supernas COMMAND --help' for each command's options and examples.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    parser.add_argument("--version", action="version", version=f"supernas {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    space = command("space", "list the search spaces or show one as a table")
    space.add_argument("action", choices=["list", "show"])
    space.add_argument("name", nargs="?", help="space preset name or space YAML file")
    space.add_argument("--yaml", action="store_true", help="print the space definition as YAML")
    space.add_argument(
        "--lut", type=Path, help="a latency table of the space: also print its latency range"
    )

    strategy = command("strategy", "list the search methods or show one's options")
    strategy_actions = strategy.add_subparsers(dest="action", required=True, metavar="ACTION")
    strategy_actions.add_parser(
        "list",
        help="every search method with a one-line summary",
        description="every search method (search.strategy) with a one-line summary",
        epilog=EXAMPLES["strategy list"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show = strategy_actions.add_parser(
        "show",
        help="a method's options: name, type, default, help",
        description="the options of a search method (search.options.*): name, type, default, help",
        epilog=EXAMPLES["strategy show"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("name", help="strategy name, see 'supernas strategy list'")
    show.add_argument("--json", action="store_true", help="print the options as JSON")

    search = command("search", "search a space, train the found arch from scratch, export, report")
    _add_run_options(search)

    train = command("train", "train one arch (JSON) from scratch, evaluate, export, report")
    train.add_argument("--arch", type=Path, help="arch JSON file (not with --resume)")
    _add_run_options(train)

    evaluate = command("eval", "evaluate the trained model of a run on the test split")
    evaluate.add_argument("run_dir", type=Path)

    export = command("export", "export the trained model of a run")
    export.add_argument("run_dir", type=Path)
    export.add_argument(
        "--format",
        nargs="+",
        default=["onnx"],
        choices=EXPORT_FORMATS,
        help="onnx, onnx-int8 (static int8 of the ONNX model, calibrated on the training split; "
        "its test top-1, size and latency against fp32 are printed), torchscript, torch-export, "
        "state-dict",
    )
    export.add_argument("--out", type=Path, help="output folder (default: the run directory)")

    predict = command(
        "predict", "classify image files with a run's model, preprocessed as it was trained"
    )
    predict.add_argument("model", type=Path, help="a run directory or its exported model.onnx")
    predict.add_argument("images", type=Path, nargs="+", help="image files (any PIL format)")

    report = command("report", "rewrite the Markdown report of a run")
    report.add_argument("run_dir", type=Path)

    select = command("select", "pick BigNAS children for several budgets, test and export them")
    select.add_argument("run_dir", type=Path, help="a finished bignas search run")
    select.add_argument(
        "--budgets",
        required=True,
        help="budgets in the run's search.budget.metric: MACs (5M,10M,20M) or ms (1.5,2.5)",
    )

    latency = command("latency", "measure a latency table on this device, or check its predictor")
    actions = latency.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="time every layer of a space on this device")
    build.add_argument("--space", required=True, help="space preset name or space YAML file")
    build.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    build.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="torch",
        help="what times the layers: torch eager, or each layer exported to ONNX and run in "
        "ONNX Runtime or OpenVINO as the exported model will be (needs supernas[deploy])",
    )
    build.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="int8: each layer quantized as 'supernas export --format onnx-int8' quantizes "
        "(ONNX runtimes only)",
    )
    build.add_argument("--threads", type=int, help="intra-op threads (default: torch's own)")
    build.add_argument("--batch-size", type=int, default=1)
    build.add_argument("--repeats", type=int, default=15, help="timed runs per entry (median)")
    build.add_argument("--rounds", type=int, default=3, help="interleaved passes at least")
    build.add_argument(
        "--spread",
        type=float,
        default=10.0,
        help="seconds: passes go on at least this long, over the machine's ups and downs "
        "(default 10)",
    )
    build.add_argument(
        "--estimate",
        choices=ESTIMATES,
        default="median",
        help="an entry is the median of its passes (default: what the machine repeats) or the "
        "smallest (a quiet moment's, as older tables were)",
    )
    build.add_argument("--out", type=Path, required=True, help="table JSON to write")
    measure = actions.add_parser(
        "measure", help="time a finished run's model as its latency table was measured"
    )
    measure.add_argument("run_dir", type=Path)
    measure.add_argument("--threads", type=int, help="torch threads (default: the table's, or 1)")
    check = actions.add_parser("check", help="measured vs predicted latency of random archs")
    check.add_argument("--lut", type=Path, required=True, help="table JSON")
    check.add_argument("--archs", type=int, default=20, help="random archs to measure")
    check.add_argument("--space", help="space YAML file, if the table's space is not a preset")
    check.add_argument(
        "--runtime", choices=RUNTIMES, help="refuse a table measured in another runtime"
    )
    check.add_argument(
        "--precision", choices=PRECISIONS, help="refuse a table measured in another precision"
    )
    return parser


def _space(args) -> None:
    from supernas.cost.macs import describe_cost_range
    from supernas.space import SPACES, get_space
    from supernas.space.show import describe

    if args.action == "list":
        for name in SPACES.names():
            print(f"{name:18s} {SPACES.get(name)().description}")
        return
    if not args.name:
        raise SupernasError("space show needs a space name; see 'supernas space list'")
    space = get_space(args.name)
    if args.yaml:
        import yaml

        print(yaml.safe_dump(space.to_dict(), sort_keys=False), end="")
    else:
        print(describe(space))
        print(describe_cost_range(space))
        if args.lut is not None:
            from supernas.cost.latency import LatencyTable, describe_latency_range

            table = LatencyTable.load(args.lut)
            table.check(space)
            print(describe_latency_range(space, table))


def _strategy(args) -> None:
    from supernas.config import describe_options
    from supernas.strategies import STRATEGIES

    if args.action == "list":
        for name in STRATEGIES.names():
            print(f"{name:10s} {_summary(STRATEGIES.get(name))}")
        return
    cls = STRATEGIES.get(args.name)
    options = describe_options(cls.Config)
    if args.json:
        rows = [dataclasses.asdict(option) for option in options]
        info = {"name": args.name, "summary": _summary(cls), "options": rows}
        print(json.dumps(info, indent=2, default=repr))
        return
    print(f"{args.name}: {_summary(cls)}")
    if not options:
        print("options: none")
        return
    print("options (search.options.*, override with --set search.options.NAME=VALUE):")
    header = ("name", "type", "default", "help")
    rows = [(o.name, o.type, _default_text(o.default), o.help) for o in options]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        print(f"  {'  '.join(cells)}  {row[3]}".rstrip())


def _summary(cls: type) -> str:
    """First line of the docstring of the module that defines a strategy class."""
    doc = sys.modules[cls.__module__].__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _default_text(value) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _config(args):
    from supernas.api import read_config
    from supernas.recipe import load_run_config

    if args.resume is not None:
        if args.recipe or args.overrides or args.data_dir or getattr(args, "arch", None):
            raise SupernasError(
                "--resume continues a run with its own config.yaml and arch.json; drop the "
                "recipe, --set and --arch"
            )
        return read_config(args.resume), args.resume, True
    overrides = list(args.overrides)
    if args.data_dir is not None:
        overrides.append(f"data.data_dir={args.data_dir}")
    recipe = args.recipe
    if recipe is not None and "=" in str(recipe) and not Path(recipe).exists():
        raise SupernasError(
            f"recipe {recipe} does not exist and looks like a setting: each --set takes one "
            f"key=value (--set {recipe})"
        )
    return load_run_config(recipe, overrides), args.run_dir, False


def _print_result(result) -> None:
    print(f"arch:      {result.arch}")
    print(
        f"cost:      {result.macs / 1e6:.2f}M MACs, {result.params / 1e6:.3f}M params "
        f"at {result.arch.resolution}px"
    )
    budget = result.budget
    if "budget_target" in budget:
        verdict = "within it" if budget["within_budget"] else "OVER IT"
        cost, target = (
            _in_unit(budget[k], budget["budget_metric"]) for k in ("budget_cost", "budget_target")
        )
        print(f"budget:    {cost} against a target of {target}: {verdict}")
    if "latency_measured_ms" in budget:
        print(f"latency:   {_measured(budget)}")
    print(f"test top-1: {100 * result.test_top1:.2f}%")
    for warning in result.warnings:
        print(f"WARNING:   {warning}")
    print(f"run dir:   {result.run_dir}")
    print(f"arch JSON: {result.run_dir / 'arch.json'}")
    for name, info in result.exports.items():
        print(f"export:    {info['path']} ({name})")
    print(f"report:    {result.report}")


def _measured(latency: dict) -> str:
    predicted = latency.get("latency_predicted_ms")
    text = f"{latency['latency_measured_ms']:.3g} ms measured ({latency['latency_on']})"
    return text + (f", {predicted:.3g} ms predicted" if predicted is not None else "")


def _in_unit(value: float, metric: str) -> str:
    """A budget figure as the user wrote it: ms for latency, millions for counts."""
    return f"{value:.3g} ms" if metric == "latency" else f"{value / 1e6:.3g}M {metric}"


def _select(api, args) -> None:
    from supernas.strategies.selection import parse_budgets

    for child in api.select(args.run_dir, parse_budgets(args.budgets)):
        print(
            f"{Path(child['folder']).name}: {child['arch']}  "
            f"{child['macs'] / 1e6:.2f}M MACs  "
            f"arch-split {100 * child['arch_top1']:.2f}%  test {100 * child['test_top1']:.2f}%"
        )
    print(f"selection: {args.run_dir / 'select' / 'selection.json'}")
    print(f"plot:      {args.run_dir / 'select' / 'accuracy_vs_macs.png'}")


def _latency(api, args) -> None:
    from supernas.cost.latency import check_plot_path, noisy_machine
    from supernas.cost.latency_build import Timing

    if args.action == "build":
        table = api.build_latency_table(
            args.space,
            args.device,
            args.out,
            args.threads,
            Timing(
                batch_size=args.batch_size,
                repeats=args.repeats,
                rounds=args.rounds,
                spread_s=args.spread,
                estimate=args.estimate,
            ),
            args.runtime,
            args.precision,
        )
        print(
            f"latency table: {len(table.entries)} entries on {table.device_name}, "
            f"{table.setting}, overhead {table.overhead_ms:.3f} ms + "
            f"{table.per_layer_ms:.4f} ms a layer -> {args.out}"
        )
        return
    if args.action == "measure":
        print(f"latency: {_measured(api.measure_latency(args.run_dir, args.threads))}")
        return
    result = api.check_latency_table(args.lut, args.archs, args.space, args.runtime, args.precision)
    print(
        f"{result['archs']} archs on {result['device']} in {result['runtime']} "
        f"{result['precision']}: MAPE {100 * result['mape']:.2f}%, "
        f"Spearman {result['spearman']:.3f}, {100 * result['within_10pct']:.0f}% within 10%"
    )
    print(
        f"repeat:    the same archs measured again differ by {100 * result['repeat_mape']:.2f}% "
        f"(MAPE), {100 * result['repeat_within_10pct']:.0f}% within 10%"
    )
    for line in noisy_machine(result):
        print(f"warning:   {line}")
    print(f"plot:      {check_plot_path(args.lut)}")


def _dispatch(args) -> None:
    from supernas import api
    from supernas.rundir import RunDir

    if args.command == "space":
        _space(args)
    elif args.command == "strategy":
        _strategy(args)
    elif args.command in ("search", "train"):
        cfg, run_dir, resume = _config(args)
        if args.command == "search":
            result = api.search(cfg, run_dir, resume)
        else:
            if args.arch is None and not resume:
                raise SupernasError("train needs --arch ARCH.json (or --resume RUN_DIR)")
            arch_path = RunDir(run_dir).arch if resume else args.arch
            result = api.train(cfg, arch_path, run_dir, resume)
        if result.report is not None:
            _print_result(result)
    elif args.command == "eval":
        result = api.evaluate(args.run_dir)
        print(f"test top-1: {100 * result['test/top1']:.2f}%  loss {result['test/loss']:.4f}")
    elif args.command == "export":
        exports = api.export(args.run_dir, args.format, args.out)
        int8 = exports.pop("int8", {})
        for name, info in exports.items():
            print(f"{name}: {info['path']} (max relative difference {info['max_rel_diff']:.1e})")
        for key, value in int8.items():
            print(f"{key}: {value}")
    elif args.command == "report":
        print(api.report(args.run_dir))
    elif args.command == "predict":
        for found in api.predict(args.model, args.images):
            print(f"{found.path}\t{found.name}\t{found.probability:.3f}")
    elif args.command == "select":
        _select(api, args)
    elif args.command == "latency":
        _latency(api, args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        _dispatch(args)
    except SupernasError as error:
        print(f"supernas: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        run = Path(stop.checkpoint).parent.parent  # a phase folder's checkpoint -> its run
        name = signal.Signals(stop.signum).name
        print(
            f"supernas: {name}: {stop} (checkpoint saved); resume with: "
            f"supernas {args.command} --resume {run}",
            file=sys.stderr,
        )
        return 128 + stop.signum
    except KeyboardInterrupt:
        print("supernas: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except OSError as error:  # the machine's refusal: a full disk, a read-only or bad path
        where = f": {error.filename}" if error.filename else ""
        print(f"supernas: error: {error.strerror or _one_line(error)}{where}", file=sys.stderr)
        return 2
    except Exception as error:  # a bug: one line here, the traceback in a file
        if os.environ.get("SUPERNAS_TRACEBACK"):
            raise
        path = _write_traceback(args)
        print(
            f"supernas: internal error (a bug, please report it): {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}; traceback in {path}",
            file=sys.stderr,
        )
        return 1
    return 0


def _one_line(error: BaseException) -> str:
    """The message itself; a data loader worker wraps it in a traceback whose last line is
    ``package.Class: message``."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else type(error).__name__
    last = lines[-1]
    prefix = f"{type(error).__module__}.{type(error).__name__}: "
    return last[len(prefix) :] if last.startswith(prefix) else last


def _write_traceback(args: argparse.Namespace) -> Path:
    """Writes the current exception's traceback into the run directory when there is one,
    else into the temporary folder; returns the file."""
    run_dir = getattr(args, "run_dir", None) or getattr(args, "resume", None)
    folder = Path(run_dir) if run_dir and Path(run_dir).is_dir() else Path(tempfile.gettempdir())
    path = folder / f"supernas-crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    path.write_text(traceback.format_exc())
    return path
