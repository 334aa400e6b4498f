"""Whole CLI runs: SIGKILL + --resume and training under torchrun in subprocesses, and runs in
this process where what they leave in it is the point."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from runs import cli_env, free_port, kill_after, overrides, supernas, write_smallest_arch
from supernas import api
from supernas.cli import main
from supernas.cost.macs import arch_cost
from supernas.space import get_space, smallest
from supernas.train import read_metrics

SETTINGS = (
    "data.synthetic_train=4096",
    "data.batch_size=16",
    "train.epochs=2",
    "train.checkpoint_every=20",
    "train.log_every=1",
)


def _train_records(run_dir):
    lines = (run_dir / "train" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if "train/loss" in line]


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    arch = write_smallest_arch(tmp_path / "arch.json")
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    command = [
        sys.executable,
        "-m",
        "supernas",
        "-q",
        "train",
        "--arch",
        str(arch),
        "--run-dir",
        str(killed),
        *overrides(*SETTINGS),
    ]
    kill_after(command, killed / "train" / "checkpoint.pt")
    steps_before = [r["step"] for r in _train_records(killed)]
    assert steps_before and max(steps_before) < 4096 * 0.8 // 16, "killed after the first epoch"

    supernas("-q", "train", "--resume", str(killed))
    supernas("-q", "train", "--arch", str(arch), "--run-dir", str(clean), *overrides(*SETTINGS))

    steps = [r["step"] for r in _train_records(killed)]
    assert steps == list(range(1, len(steps) + 1)), "metrics must continue without gaps or repeats"
    assert steps == [r["step"] for r in _train_records(clean)]
    resumed = load_file(killed / "model.safetensors")
    reference = load_file(clean / "model.safetensors")
    assert resumed.keys() == reference.keys()
    for name in reference:
        assert torch.equal(resumed[name], reference[name]), name


def test_train_under_torchrun(tmp_path):
    run_dir = tmp_path / "run"
    command, extra = "train", ["--arch", str(write_smallest_arch(tmp_path / "arch.json"))]
    settings = overrides(
        "train.epochs=1", "search.options={num_candidates: 3}", "search.arch_eval_batches=2"
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    argv = [*torchrun, "--nproc_per_node", "2", "-m", "supernas", "-q", command, *extra]
    argv += ["--run-dir", str(run_dir), *settings]
    result = subprocess.run(argv, capture_output=True, text=True, env=cli_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test top-1" in result.stdout
    assert (run_dir / "model.safetensors").is_file()


def test_search_under_torchrun_derives_one_arch_on_every_launch_path(tmp_path):
    """One launcher of two processes; two launchers of one process each, joined by a c10d
    rendezvous on localhost (the multi-node path); and one launcher with --max-restarts whose
    worker is killed mid-search, so that torchrun restarts both workers and they resume by
    themselves: all three derive the same arch."""
    settings = overrides(
        "train.epochs=1",
        "search.options={num_candidates: 3}",
        "search.arch_eval_batches=2",
        "search.checkpoint_every=5",
        "search.log_every=1",
        "data.synthetic_train=640",  # 8 steps a rank: the kill lands between steps 5 and 8
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    command = ["-m", "supernas", "-q", "search", *settings]
    one = [*torchrun, "--standalone", "--nproc_per_node", "2", *command]
    endpoint = f"127.0.0.1:{free_port()}"
    rendezvous = ["--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "test"]
    two = [*torchrun, "--nnodes", "2", "--nproc_per_node", "1", *rendezvous, *command]
    nodes = [
        subprocess.Popen(
            [*two, "--run-dir", str(tmp_path / "two")],
            env=cli_env(),
            text=True,
            stderr=subprocess.PIPE,
        )
        for _ in "ab"
    ]
    for node in nodes:
        _, err = node.communicate(timeout=300)
        assert node.returncode == 0, err[-3000:]
    argv = [*one, "--run-dir", str(tmp_path / "one")]
    result = subprocess.run(argv, capture_output=True, text=True, env=cli_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test top-1" in result.stdout and (tmp_path / "one" / "model.safetensors").is_file()
    arch = (tmp_path / "one" / "arch.json").read_text()
    assert (tmp_path / "two" / "arch.json").read_text() == arch
    assert _killed_and_restarted(torchrun, command, tmp_path / "restarted") == arch


def _killed_and_restarted(torchrun: list[str], command: list[str], run_dir: Path) -> str:
    """The arch of a standalone 2-process search whose second worker is SIGKILLed after its
    first checkpoint. More than one restart is allowed, as a cluster job would allow: a
    restarted round that fails to connect on a loaded machine is one more restart, not a wrong
    result. (Before each round's keys had their own prefix, a restarted worker could read the
    killed worker's address and wait on it past the test's limit.)"""
    elastic = ["--standalone", "--nproc_per_node", "2", "--max-restarts", "3"]
    argv = [*torchrun, *elastic, *command, "--run-dir", str(run_dir)]
    launcher = subprocess.Popen(argv, env=cli_env(), stderr=subprocess.PIPE, text=True)
    marker = run_dir / "search" / "checkpoint.pt"
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert launcher.poll() is None and time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.05)
    workers = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
    os.kill(int(workers[-1]), signal.SIGKILL)
    _, err = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, err[-3000:]
    assert "exitcode: -9" in err, "the worker ended before the kill"
    steps = [r["step"] for r in read_metrics(run_dir / "search" / "metrics.jsonl") if "lr" in r]
    assert steps == list(range(1, len(steps) + 1)), "the restart resumed, without repeats or gaps"
    return (run_dir / "arch.json").read_text()


def test_train_then_eval_export_report(tmp_path, capsys):
    arch = write_smallest_arch(tmp_path / "arch.json")
    run_dir = tmp_path / "run"
    floor = arch_cost(get_space("fmnist_small"), smallest(get_space("fmnist_small"))).macs
    settings = [
        a
        for a in overrides("train.epochs=1", "train.ema_decay=0.9", f"search.budget.target={floor}")
        if a != "--set"
    ]
    argv = ["-q", "train", "--arch", str(arch), "--run-dir", str(run_dir)]
    for pair in settings:
        argv += ["--set", pair]
    assert main(argv) == 0
    trained = capsys.readouterr().out
    assert "test top-1" in trained and (run_dir / "report.md").is_file()
    expected = f"{floor / 1e6:.3g}M macs"
    assert f"budget:    {expected} against a target of {expected}: within it" in trained

    assert main(["-q", "eval", str(run_dir)]) == 0
    evaluated = capsys.readouterr().out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert f"{100 * summary['test_top1']:.2f}%" in evaluated  # the EMA weights were reloaded

    out = tmp_path / "exported"
    assert (
        main(["-q", "export", str(run_dir), "--format", "onnx", "torch-export", "--out", str(out)])
        == 0
    )
    assert (out / "model.onnx").is_file() and (out / "model.pt2").is_file()
    capsys.readouterr()
    assert main(["-q", "export", str(run_dir), "--format", "onnx-int8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (out / "model.int8.onnx").is_file() and "int8_onnx_test_top1: " in printed
    assert "fp32_openvino_agreement: " in printed and "int8_onnxruntime_ms: " in printed
    assert main(["-q", "report", str(run_dir)]) == 0
    assert capsys.readouterr().out.strip().endswith("report.md")
    image = tmp_path / "image.png"
    Image.new("L", (28, 28), 128).save(image)
    contract = run_dir / "preprocessing.json"
    whole = json.loads(contract.read_text())
    for model in (run_dir, out / "model.onnx"):
        assert main(["-q", "predict", str(model), str(image)]) == 0
    contract.write_text(json.dumps({**whole, "classes": whole["classes"][:1]}))
    assert main(["-q", "predict", str(run_dir), str(image)]) == 2
    assert "names 1 classes, the model has 10" in capsys.readouterr().err
    (run_dir / "summary.json").write_text('{"test_top1": 0.9')  # cut short
    assert main(["-q", "report", str(run_dir)]) == 2
    assert "summary.json is damaged: it is not JSON" in capsys.readouterr().err
    (run_dir / "summary.json").write_text("[1, 2, 3]")  # JSON, of the wrong shape
    assert main(["-q", "report", str(run_dir)]) == 2
    assert "summary.json is damaged: it holds no JSON dict" in capsys.readouterr().err
    (run_dir / "summary.json").write_text("{}")
    (run_dir / "candidates.json").write_text('{"a": 1}')
    assert main(["-q", "report", str(run_dir)]) == 2
    assert "candidates.json is damaged: it holds no JSON list" in capsys.readouterr().err
    (run_dir / "candidates.json").write_text('["a"]')
    assert main(["-q", "report", str(run_dir)]) == 2
    assert "candidates.json is damaged: an entry is not a dict" in capsys.readouterr().err


def test_train_takes_the_space_its_arch_file_names(tmp_path):
    from supernas.space import smallest

    arch = tmp_path / "arch.json"
    arch.write_text(smallest(get_space("fmnist_bignas")).to_json())
    run_dir = tmp_path / "run"
    settings = overrides("train.epochs=1", "data.synthetic_train=64", "data.synthetic_test=32")
    supernas("-q", "train", "--arch", str(arch), "--run-dir", str(run_dir), *settings)
    assert "fmnist_bignas" in (run_dir / "space.yaml").read_text()


@pytest.mark.parametrize("on", [True, False])
def test_a_cpu_search_sets_the_host_as_its_config_says(tmp_path, monkeypatch, on):
    """Cold Gumbel-softmax weights underflow into denormals, which the CPU computes slowly;
    glibc hands large freed blocks back to the kernel, which zeroes them again a page at a time."""
    torch.set_flush_denormal(False)
    kept = []
    monkeypatch.setattr(api, "keep_freed_memory", lambda: kept.append(True) or True)
    flag = str(on).lower()
    settings = overrides(
        "search.epochs=1",
        "train.epochs=1",
        "search.options={num_candidates: 1}",
        f"search.flush_denormal={flag}",
        f"keep_freed_memory={flag}",
    )
    try:
        assert main(["-q", "search", "--run-dir", str(tmp_path / "run"), *settings]) == 0
        tiny = torch.tensor([1e-39], dtype=torch.float32)
        assert (tiny * 1.0 == 0).item() is on
    finally:
        torch.set_flush_denormal(False)
    assert bool(kept) is on
    assert f"keep_freed_memory: {flag}" in (tmp_path / "run" / "config.yaml").read_text()
