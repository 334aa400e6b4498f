"""Every user mistake exits with code 2 and one line on stderr, never a traceback."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runs import cli_env
from supernas.cli import main
from supernas.recipe import EXPORT_FORMATS
from supernas.space import get_space, smallest
from supernas.train.checkpoint import save_checkpoint


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("supernas: error: ") and "\n" not in err, err
    return err


def test_unknown_space(capsys):
    assert "unknown space 'imagenet_huge'" in _error(capsys, ["space", "show", "imagenet_huge"])


def test_unknown_strategy(capsys):
    assert "unknown strategy 'darts'" in _error(
        capsys, ["search", "--set", "search.strategy=darts", "--set", "data.name=synthetic"]
    )


def test_bad_recipe_key(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  epochz: 3\n")
    err = _error(capsys, ["search", str(recipe)])
    assert f"{recipe}: unknown key 'train.epochz'" in err


def test_bad_value_type(capsys):
    assert "train.epochs = 'many' is not int" in _error(
        capsys, ["search", "--set", "train.epochs=many"]
    )


def test_malformed_recipe(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train: [1, 2\n")
    assert "is not valid YAML" in _error(capsys, ["search", str(recipe)])


def test_missing_data_set(tmp_path, capsys):
    err = _error(
        capsys, ["search", "--set", "data.name=cifar10", "--data-dir", str(tmp_path / "none")]
    )
    assert "cifar10" in err.lower()


def test_missing_fashion_mnist_lists_where_it_looked(tmp_path, capsys, monkeypatch):
    from supernas.data import fashion_mnist

    def offline(*args, **kwargs):
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setattr(fashion_mnist, "FashionMNIST", offline)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    err = _error(capsys, ["search", "--data-dir", str(tmp_path / "nowhere")])
    assert str(tmp_path / "nowhere") in err and str(tmp_path / "debian") in err


def test_corrupt_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "train").mkdir(parents=True)
    (run / "config.yaml").write_text("space: fmnist_small\n")
    from supernas.space import get_space, smallest

    (run / "arch.json").write_text(smallest(get_space("fmnist_small")).to_json())
    (run / "train" / "checkpoint.pt").write_bytes(b"\x00garbage")
    assert "corrupt" in _error(capsys, ["eval", str(run)])
    save_checkpoint(run / "train" / "checkpoint.pt", {"step": 1})
    assert main(["eval", str(run)]) == 2
    capsys.readouterr()
    for task in ({"model": 5}, {"model": {}, "ema": 5}, {"ema": {"module": [1]}}):
        save_checkpoint(run / "train" / "checkpoint.pt", {"step": 1, "task": task})
        assert "holds no trained model weights" in _error(capsys, ["eval", str(run)])
    arch = tmp_path / "arch.json"
    arch.write_text((run / "arch.json").read_text())
    err = _error(capsys, ["train", "--resume", str(run), "--arch", str(arch)])
    assert "drop the recipe, --set and --arch" in err


def test_an_arch_nested_too_deeply_is_one_line(tmp_path, capsys):
    arch = tmp_path / "a.json"
    arch.write_text("[" * 100_000)
    err = _error(capsys, ["train", "--arch", str(arch)])
    assert "malformed arch JSON: nested too deeply" in err


def test_arch_from_another_space(tmp_path, capsys):
    from supernas.space import get_space, smallest

    arch = tmp_path / "a.json"
    arch.write_text(smallest(get_space("cifar_small")).to_json())
    assert "belongs to space 'cifar_small'" in _error(capsys, ["train", "--arch", str(arch)])


def test_budget_below_smallest_child(capsys):
    err = _error(
        capsys, ["search", "--set", "search.budget.target=1000", "--set", "data.name=synthetic"]
    )
    assert "below the smallest child" in err


def test_no_traceback_in_a_real_process(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "supernas", "space", "show", "nope"],
        capture_output=True,
        text=True,
        env=cli_env(),
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("command", ["space", "search", "train", "eval", "export", "report"])
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "example" in capsys.readouterr().out


def test_unknown_export_format_fails_before_any_work(tmp_path, capsys):
    run = tmp_path / "run"
    err = _error(capsys, ["search", "--run-dir", str(run), "--set", "export=[onnx, tflite]"])
    assert f"export: unknown format 'tflite'; choose from {', '.join(EXPORT_FORMATS)}" in err
    assert not run.exists()


@pytest.mark.parametrize("command", ["search", "train"])
def test_an_export_without_its_packages_fails_before_any_work(
    command, tmp_path, capsys, monkeypatch
):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxruntime" else real(name, *a),
    )
    run = tmp_path / "run"
    arch = tmp_path / "arch.json"
    arch.write_text(smallest(get_space("fmnist_small")).to_json())
    argv = [command, "--run-dir", str(run), "--set", "export=[state-dict, onnx-int8]"]
    err = _error(capsys, argv + (["--arch", str(arch)] if command == "train" else []))
    assert "export onnx-int8 needs onnxruntime: pip install 'supernas[export]'" in err
    assert not run.exists()


def test_an_unknown_export_format_is_refused_before_the_run_is_read(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(tmp_path / "none"), "--format", "onnx", "tflite"])
    assert exit_info.value.code == 2
    assert "argument --format: invalid choice: 'tflite'" in capsys.readouterr().err


def test_a_bug_is_one_line_with_the_traceback_in_a_file(tmp_path, capsys, monkeypatch):
    import supernas.cli as cli

    def broken(args):
        raise RuntimeError("index out of step\nsecond line")

    monkeypatch.setattr(cli, "_dispatch", broken)
    monkeypatch.delenv("SUPERNAS_TRACEBACK", raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert main(["space", "list"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(
        "supernas: internal error (a bug, please report it): RuntimeError: index out of step; "
    )
    written = Path(err.rsplit("traceback in ", 1)[1])
    assert written.parent == tmp_path and "RuntimeError" in written.read_text()
    monkeypatch.setenv("SUPERNAS_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        main(["space", "list"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["search.lr=-0.1"], "search.lr = -0.1 must be positive"),
        (["search.lr=.nan"], "search.lr = nan must be positive"),
        (["search.momentum=1.5"], r"search.momentum = 1.5 must be in \[0, 1\)"),
        (["train.lr=.inf"], "train.lr = inf must be positive"),
        (["train.label_smoothing=-0.1"], "train.label_smoothing = -0.1 must be in"),
        (["seed=-1"], "run.seed = -1 must be non-negative"),
        (["search.budget.target=.nan"], "search.budget.target must be a positive number"),
        (["seed=4294967296"], r"run.seed = 4294967296 must be below 2\*\*32"),
        (["train.epochs=[1"], r"override 'train.epochs=\[1': the value is not valid YAML"),
        (
            ["search.strategy=dmasking", "search.options.kernel_mixing=bogus"],
            "search.strategy dmasking: search.options.kernel_mixing 'bogus' is not one of "
            "outputs, weights",
        ),
    ],
)
def test_bad_numbers_and_values_fail_before_any_work(tmp_path, capsys, overrides, message):
    run = tmp_path / "run"
    argv = ["search", "--run-dir", str(run)]
    for pair in overrides:
        argv += ["--set", pair]
    assert re.search(message, _error(capsys, argv))
    assert not run.exists()


def test_a_recipe_that_is_not_text_is_one_line(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(b"\xff\xfe\x00bad")
    assert f"recipe {recipe} is not UTF-8 text" in _error(capsys, ["search", str(recipe)])


def test_a_run_dir_under_a_file_is_one_line(tmp_path, capsys):
    taken = tmp_path / "a_file"
    taken.write_text("not a folder")
    argv = ["search", "--run-dir", str(taken / "run"), "--set", "data.name=synthetic"]
    assert _error(capsys, argv) == f"supernas: error: Not a directory: {taken / 'run'}"


def test_a_read_only_run_dir_is_one_line(tmp_path, capsys):
    locked = tmp_path / "read_only"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who may write anywhere (root)")
        err = _error(capsys, ["search", "--run-dir", str(locked / "run")])
        assert err.startswith("supernas: error: Permission denied: ")
    finally:
        locked.chmod(0o700)


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == "supernas 0.1.0"


def test_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    """Where the disk fills (here: when the run's config is written), one line and exit 2;
    the same handler answers a read-only folder when the tests run as root."""
    import errno

    import supernas.api as api

    def full(run_dir, cfg):
        raise OSError(errno.ENOSPC, "No space left on device", str(run_dir / "config.yaml"))

    monkeypatch.setattr(api, "write_config", full)
    err = _error(capsys, ["search", "--run-dir", str(tmp_path / "run")])
    assert err == f"supernas: error: No space left on device: {tmp_path / 'run' / 'config.yaml'}"


def test_the_cli_names_the_runtimes_precisions_formats_and_estimates_there_are():
    from supernas import cli
    from supernas.cost.latency import ESTIMATES
    from supernas.runtimes import PRECISIONS, TIMED_RUNTIMES

    assert (cli.RUNTIMES, cli.PRECISIONS) == (TIMED_RUNTIMES, PRECISIONS)
    assert cli.EXPORT_FORMATS == EXPORT_FORMATS
    assert cli.ESTIMATES == ESTIMATES
