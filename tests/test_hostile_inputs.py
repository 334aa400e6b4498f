"""Hostile input, one table: every case exits with code 2 and exactly one line on stderr that
names the problem, with no traceback, before any work, and leaves no run directory behind.

Each case is (id, files to write, argv, what the line must say). ``{tmp}`` in a file name or an
argument is the test's folder; the run directory every search and train is pointed at is
``{tmp}/run``, and it must not exist afterwards.
"""

import json

import pytest
from tables import fake_table

from supernas.cli import main
from supernas.space import get_space, smallest

SPACE = get_space("fmnist_small")
SPACE_YAML = SPACE.to_dict()
ARCH = json.loads(smallest(SPACE).to_json())
RUN = ["--run-dir", "{tmp}/run", "--set", "data.name=synthetic"]


def _space_with(section: str, field: str, value) -> str:
    data = json.loads(json.dumps(SPACE_YAML))
    target = data if section == "space" else data[section]
    target = target[1] if section == "blocks" else target
    target[field] = value
    return json.dumps(data)  # JSON is YAML


def _arch_with(field: str, value) -> str:
    data = {**ARCH, field: value}
    return json.dumps(data)


def _table(**change) -> str:
    data = json.loads(fake_table(SPACE).to_json())
    entries = data["entries"]
    if change.get("entries") == "nan":
        data["entries"] = {key: float("nan") for key in entries}
    elif change.get("entries") == "negative":
        data["entries"] = {key: -40.0 for key in entries}
    for key in ("overhead_ms", "space"):
        if key in change:
            data[key] = change[key]
    return json.dumps(data)


def search(*pairs: str) -> list[str]:
    argv = ["search", *RUN]
    for pair in pairs:
        argv += ["--set", pair]
    return argv


CASES = [
    # recipes and overrides
    ("recipe-not-utf8", {"r.yaml": b"\xff\xfe"}, ["search", "{tmp}/r.yaml", *RUN], "not UTF-8"),
    ("recipe-not-yaml", {"r.yaml": "a: [1"}, ["search", "{tmp}/r.yaml", *RUN], "not valid YAML"),
    ("recipe-a-list", {"r.yaml": "- 1\n"}, ["search", "{tmp}/r.yaml", *RUN], "must hold a mapping"),
    (
        "recipe-a-key-twice",
        {"r.yaml": "search:\n  strategy: dmasking\n  strategy: bignas\n"},
        ["search", "{tmp}/r.yaml", *RUN],
        "r.yaml: key 'strategy' appears twice (line 3)",
    ),
    ("recipe-missing", {}, ["search", "{tmp}/none.yaml", *RUN], "cannot read recipe"),
    (
        "recipe-a-second-setting",
        {},
        ["search", *RUN, "--set", "seed=1", "train.epochs=1"],
        "looks like a setting: each --set takes one key=value (--set train.epochs=1)",
    ),
    (
        "config-not-a-mapping",
        {"r.yaml": "train: 5\n"},
        ["search", "{tmp}/r.yaml", *RUN],
        "train must be a mapping",
    ),
    ("unknown-key", {}, search("train.epochz=3"), "unknown key 'train.epochz'"),
    ("wrong-type", {}, search("train.epochs=many"), "train.epochs = 'many' is not int"),
    ("override-not-yaml", {}, search("train.epochs=[1"), "the value is not valid YAML"),
    ("negative-lr", {}, search("search.lr=-0.1"), "search.lr = -0.1 must be positive"),
    ("nan-lr", {}, search("train.lr=.nan"), "train.lr = nan must be positive"),
    ("negative-seed", {}, search("seed=-1"), "run.seed = -1 must be non-negative"),
    ("momentum", {}, search("search.momentum=1.5"), "search.momentum = 1.5 must be in [0, 1)"),
    ("zero-epochs", {}, search("train.epochs=0"), "train.epochs = 0 must be positive"),
    ("unknown-strategy", {}, search("search.strategy=darts"), "unknown strategy 'darts'"),
    ("unknown-space", {}, search("space=imagenet_huge"), "unknown space 'imagenet_huge'"),
    ("unknown-export", {}, search("export=[tflite]"), "export: unknown format 'tflite'"),
    (
        "unknown-option",
        {},
        search("search.options={colour: 1}"),
        "unknown key 'search.options.colour'",
    ),
    # budgets
    ("budget-nan", {}, search("search.budget.target=.nan"), "must be a positive number"),
    ("budget-zero", {}, search("search.budget.target=0"), "must be a positive number"),
    ("budget-too-low", {}, search("search.budget.target=1000"), "below the smallest child"),
    ("budget-metric", {}, search("search.budget.metric=energy"), "is not one of latency"),
    ("budget-old-key", {}, search("search.budget_macs=4e6"), "was replaced by search.budget"),
    (
        "budget-old-option",
        {},
        search("search.strategy=proxyless", "search.options={cost: latency}"),
        "'search.options.cost' was replaced by search.budget.metric",
    ),
    ("latency-no-lut", {}, search("search.budget.metric=latency"), "needs search.budget.lut"),
    (
        "lut-missing",
        {},
        search("search.budget.metric=latency", "search.budget.lut={tmp}/none.json"),
        "cannot read latency table",
    ),
    (
        "lut-all-nan",
        {"lut.json": _table(entries="nan")},
        search("search.budget.metric=latency", "search.budget.lut={tmp}/lut.json"),
        "is nan, not a positive finite ms",
    ),
    (
        "lut-negative",
        {"lut.json": _table(entries="negative")},
        search("search.budget.metric=latency", "search.budget.lut={tmp}/lut.json"),
        "is -40.0, not a positive finite ms",
    ),
    (
        "lut-for-macs",
        {"lut.json": _table()},
        search("search.budget.lut={tmp}/lut.json"),
        "lut is for metric latency, not macs",
    ),
    # spaces
    *(
        (
            f"space-{field}",
            {"s.yaml": _space_with(section, field, value)},
            search("space={tmp}/s.yaml"),
            message,
        )
        for section, field, value, message in [
            ("stem", "kernel_size", 4, "stem: kernel size 4 must be odd"),
            ("space", "width_divisor", 0, "width_divisor 0 must be a positive integer"),
            ("head", "dropout", 1.5, "head: dropout 1.5 not in [0, 1)"),
            ("blocks", "out_channels", [16.5, 24], "out_channels 16.5 must be a positive integer"),
            ("space", "se_ratio", -1, "se_ratio -1 must be in (0, 1]"),
            ("blocks", "attentions", ["sq"], "attention 'sq' must be none, se or splat"),
        ]
    ),
    ("space-not-utf8", {"s.yaml": b"\xff"}, search("space={tmp}/s.yaml"), "is not UTF-8 text"),
    # archs
    *(
        (
            f"arch-{field}",
            {"a.json": _arch_with(field, value)},
            ["train", "--arch", "{tmp}/a.json", *RUN],
            message,
        )
        for field, value, message in [
            ("blocks", {"0": {}}, "blocks must be a list"),
            ("stem_channels", 16.0, "stem out_channels 16.0 not in"),
            ("resolution", 31, "resolution 31 not in"),
            ("space", "cifar_small", "belongs to space 'cifar_small'"),
        ]
    ),
    ("arch-not-utf8", {"a.json": b"\xff"}, ["train", "--arch", "{tmp}/a.json", *RUN], "UTF-8"),
    ("arch-missing", {}, ["train", "--arch", "{tmp}/none.json", *RUN], "cannot read arch"),
    ("train-no-arch", {}, ["train", *RUN], "train needs --arch"),
    # paths and runs
    ("run-dir-under-a-file", {"f": "x"}, ["search", "--run-dir", "{tmp}/f/run"], "Not a directory"),
    ("run-dir-too-long", {}, ["search", "--run-dir", "{tmp}/" + "x" * 300], "File name too long"),
    ("resume-not-a-run", {}, ["search", "--resume", "{tmp}"], "is not a supernas run directory"),
    ("eval-not-a-run", {}, ["eval", "{tmp}"], "is not a supernas run directory"),
    ("run-dir-a-file", {"f": "x"}, ["search", "--run-dir", "{tmp}/f"], "is not empty"),
    (
        "lut-typed-badly",
        {"lut.json": _table(overhead_ms="fast")},
        search("search.budget={metric: latency, target: 5.0, lut: {tmp}/lut.json}"),
        "overhead_ms",
    ),
    ("config-not-utf8", {"old/config.yaml": b"\xff\xfe"}, ["eval", "{tmp}/old"], "not UTF-8"),
    # own data and models
    ("augment-unknown", {}, search("data.augment=heavy"), "is not one of auto, none"),
    ("channels-2", {}, search("data.channels=2"), "data.channels must be 1, 3 or null"),
    ("channels-not-a-folder", {}, search("data.channels=1"), "applies to imagefolder only"),
    (
        "pinned-space-other-data",
        {"s.yaml": _space_with("space", "fit_data", False)},
        search("space={tmp}/s.yaml", "data.synthetic_classes=5"),
        "expects 1-channel images in 10 classes; the data set has 1 channels and 5 classes",
    ),
    (
        "predict-missing-image",
        {"x.onnx": "x"},
        ["predict", "{tmp}/x.onnx", "{tmp}/none.png"],
        "image file {tmp}/none.png does not exist",
    ),
    (
        "predict-image-is-a-folder",
        {"x.onnx": "x", "d/i.png": "x"},
        ["predict", "{tmp}/x.onnx", "{tmp}/d"],
        "image file {tmp}/d is a folder, not an image file",
    ),
    (
        "predict-not-onnx",
        {"x.onnx": "x", "i.png": "x"},
        ["predict", "{tmp}/x.onnx", "{tmp}/i.png"],
        "is not a readable ONNX model",
    ),
    (
        "predict-not-a-model",
        {"x.txt": "x"},
        ["predict", "{tmp}/x.txt", "{tmp}/x.txt"],
        "neither a run directory nor an .onnx file",
    ),
    # latency tables and their commands
    (
        "latency-batch-0",
        {},
        ["latency", "build", "--space", "fmnist_small", "--batch-size", "0", "--out", "{tmp}/o"],
        "batch_size must be at least 1",
    ),
    (
        "latency-repeats-0",
        {},
        ["latency", "build", "--space", "fmnist_small", "--repeats", "0", "--out", "{tmp}/o"],
        "repeats must be at least 1",
    ),
    (
        "latency-threads-0",
        {},
        ["latency", "build", "--space", "fmnist_small", "--threads", "0", "--out", "{tmp}/o"],
        "--threads must be at least 1, got 0",
    ),
    (
        "latency-spread-inf",
        {},
        ["latency", "build", "--space", "fmnist_small", "--spread", "inf", "--out", "{tmp}/o"],
        "spread must be a finite number of seconds",
    ),
    (
        "latency-out-folder",
        {"d/x": "x"},
        ["latency", "build", "--space", "fmnist_small", "--out", "{tmp}/d"],
        "--out {tmp}/d is a folder",
    ),
    (
        "latency-out-under-a-file",
        {"f": "x"},
        ["latency", "build", "--space", "fmnist_small", "--out", "{tmp}/f/lut.json"],
        "{tmp}/f",
    ),
    (
        "check-field-of-another-type",
        {"lut.json": _table(space=5)},
        ["latency", "check", "--lut", "{tmp}/lut.json"],
        "space = 5 is not str",
    ),
    (
        "check-all-nan",
        {"lut.json": _table(entries="nan")},
        ["latency", "check", "--lut", "{tmp}/lut.json"],
        "is nan, not a positive finite ms",
    ),
]


@pytest.mark.parametrize(
    ("files", "argv", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_hostile_input_is_one_line_and_exit_2(tmp_path, capsys, files, argv, message):
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    assert main([part.replace("{tmp}", str(tmp_path)) for part in argv]) == 2
    out = capsys.readouterr()
    err = out.err.strip()
    assert err.startswith("supernas: error: ") and "\n" not in err, err
    assert "Traceback" not in out.err + out.out
    assert message.replace("{tmp}", str(tmp_path)) in err, err
    assert not (tmp_path / "run").exists()
