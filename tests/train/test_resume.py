"""A run SIGKILLed mid-epoch resumes and ends exactly where an uninterrupted run ends."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from train_fakes import assert_same_state

from supernas.train import load_checkpoint, read_metrics

SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from train_fakes import classifier_task, train_loader
    from supernas.train import LoopConfig, run_loop, save_checkpoint, seed_everything

    run_dir, mode, pause = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    seed_everything(0)
    loader = train_loader()
    task = classifier_task(len(loader))
    cfg = LoopConfig(epochs=2, checkpoint_every=3, log_every=1, progress=False)
    run_loop(task, loader, cfg, run_dir, resume=mode == "resume",
             on_step=lambda step, values: time.sleep(pause))
    save_checkpoint(run_dir / "final.pt", task.state_dict())
""")
TOTAL_STEPS = 20  # two epochs of ten batches


def _command(script: Path, run_dir: Path, mode: str, pause: float) -> list[str]:
    return [sys.executable, str(script), str(run_dir), mode, str(pause)]


def _env() -> dict[str, str]:
    # One thread: CPU arithmetic is then bitwise the same in every process.
    path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def _steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if "train/loss" in r]


def _kill_after_checkpoint(command: list[str], run_dir: Path) -> None:
    """SIGKILLs the run once a checkpoint exists and a later step has been recorded."""
    process = subprocess.Popen(command, env=_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ((run_dir / "checkpoint.pt").exists() and len(_steps(run_dir)) > 3):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    killed, clean = tmp_path / "killed", tmp_path / "clean"

    _kill_after_checkpoint(_command(script, killed, "fresh", 0.3), killed)
    checkpoint_step = load_checkpoint(killed / "checkpoint.pt")["step"]
    assert 0 < checkpoint_step < TOTAL_STEPS // 2, "the kill must land mid-epoch"
    assert max(_steps(killed)) > checkpoint_step, "records after the checkpoint must exist"
    assert not (killed / "final.pt").exists()

    for run_dir, mode in ((killed, "resume"), (clean, "fresh")):
        subprocess.run(_command(script, run_dir, mode, 0), env=_env(), check=True, timeout=120)

    assert _steps(killed) == list(range(1, TOTAL_STEPS + 1)), "no gaps, no repeats"
    assert_same_state(load_checkpoint(killed / "final.pt"), load_checkpoint(clean / "final.pt"))
