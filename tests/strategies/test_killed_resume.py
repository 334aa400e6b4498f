"""A search killed with SIGKILL and resumed from its last checkpoint with ``--resume`` derives
the arch of an uninterrupted run: every method that searches by gradient, and random search,
through the CLI on a tiny space."""

import signal
import subprocess
import sys

import pytest
from draws import contract_space

from runs import cli_env, kill_after, overrides, supernas

OPTIONS = {
    "random": "{num_candidates: 3, calibration_batches: 2}",
    "dmasking": "{warmup_epochs: 0.25, arch_every: 2, arch_lr: 0.1, cost_loss: budget}",
    "proxyless": "{loss: budget, arch_every: 2, arch_lr: 0.1}",
    "fpnas": "{min_samples: 2, max_samples: 3, calibration_batches: 2}",
}


def tiny_search(folder, name: str) -> list[str]:
    """``--set`` arguments of a search of ``name`` on the contract space, a few seconds long
    with a checkpoint every 5 steps."""
    space = folder / "space.yaml"
    contract_space(num_classes=10).to_yaml(space)
    return overrides(
        f"space={space}",
        f"search.strategy={name}",
        f"search.options={OPTIONS[name]}",
        "search.epochs=1",
        "search.budget.target=2e5",
        "search.arch_eval_batches=2",
        "search.checkpoint_every=5",
        "data.synthetic_train=480",
        "data.batch_size=16",
        "train.epochs=1",
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_killed_search_resumes_to_the_same_arch(tmp_path, name):
    settings = tiny_search(tmp_path, name)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    command = [sys.executable, "-m", "supernas", "-q", "search", "--run-dir", str(killed)]
    kill_after([*command, *settings], killed / "search" / "checkpoint.pt")
    assert not (killed / "arch.json").exists()
    supernas("-q", "search", "--resume", str(killed))
    supernas("-q", "search", "--run-dir", str(clean), *settings)
    assert (killed / "arch.json").read_text() == (clean / "arch.json").read_text()


@pytest.mark.slow
def test_sigterm_saves_says_how_to_resume_and_exits_143(tmp_path):
    """What a cluster scheduler sends before it kills: the search finishes its step, writes a
    checkpoint, prints one line and exits 128 + 15; restarted as torchrun restarts a worker,
    it resumes by itself and derives the uninterrupted arch (the random search of the test
    above)."""
    settings = tiny_search(tmp_path, "random")
    stopped, clean = tmp_path / "stopped", tmp_path / "clean"
    command = [sys.executable, "-m", "supernas", "-q", "search", "--run-dir", str(stopped)]
    marker = stopped / "search" / "checkpoint.pt"  # written inside the loop, mid-epoch
    code, err = kill_after([*command, *settings], marker, signum=signal.SIGTERM)
    assert code == 143, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("supernas: SIGTERM: search interrupted at step "), err
    assert last.endswith(f"(checkpoint saved); resume with: supernas search --resume {stopped}")
    # What `torchrun --max-restarts` does after a failure: the same command again, marked as
    # a restart; it resumes by itself.
    env = {**cli_env(), "TORCHELASTIC_RESTART_COUNT": "1"}
    subprocess.run([*command, *settings], env=env, check=True, capture_output=True)
    supernas("-q", "search", "--run-dir", str(clean), *settings)
    assert (stopped / "arch.json").read_text() == (clean / "arch.json").read_text()
