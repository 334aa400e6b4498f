"""Whole CLI runs in subprocesses: SIGKILL + --resume, and training under torchrun."""

import json
import subprocess
import sys

import torch
from safetensors.torch import load_file

from runs import cli_env, kill_after, overrides, supernas, write_smallest_arch

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


def test_cli_train_under_torchrun(tmp_path):
    arch = write_smallest_arch(tmp_path / "arch.json")
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "supernas",
        "-q",
        "train",
        "--arch",
        str(arch),
        "--run-dir",
        str(run_dir),
        *overrides("train.epochs=1"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=cli_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test top-1" in result.stdout
    assert (run_dir / "model.safetensors").is_file()
