"""A diverged run stops with one line naming the phase, the step and the setting, and leaves
its last finite checkpoint untouched."""

import pytest
from train_fakes import classifier_task, train_loader

from runs import overrides
from supernas.cli import main
from supernas.errors import DivergenceError
from supernas.train import LoopConfig, load_checkpoint, run_loop, seed_everything


def _run(run_dir, poison, checkpoint_every=3):
    """Two epochs of the fake task; ``poison(task, step)`` may spoil it after a step."""
    seed_everything(0)
    loader = train_loader()
    task = classifier_task(len(loader))
    step_of = task.train_step

    def train_step(batch, step):
        values = step_of(batch, step)
        return poison(task, step + 1, values)

    task.train_step = train_step
    config = LoopConfig(epochs=2, checkpoint_every=checkpoint_every, progress=False, hint="lower X")
    run_loop(task, loader, config, run_dir)


def test_a_non_finite_loss_stops_the_run_at_its_step(tmp_path):
    def nan_loss_at_5(task, step, values):
        return {**values, "train/loss": float("nan")} if step == 5 else values

    with pytest.raises(
        DivergenceError, match=r"^train diverged at step 5: train/loss is nan; lower X$"
    ):
        _run(tmp_path, nan_loss_at_5)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 3  # the last finite one


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    def spoil_statistics_at_4(task, step, values):
        """BN statistics are not used in training, so the loss stays finite."""
        if step == 4:
            task.model.features[1].running_mean.fill_(float("inf"))
        return values

    match = r"diverged by step 6: model.features.1.running_mean is not finite"
    with pytest.raises(DivergenceError, match=match):
        _run(tmp_path, spoil_statistics_at_4)
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["step"] == 3
    assert all(t.isfinite().all() for t in saved["task"]["model"].values() if t.is_floating_point())


def test_a_search_at_a_huge_learning_rate_exits_2_with_one_line(tmp_path, capsys):
    settings = overrides(
        "search.lr=1e12",
        "search.epochs=1",
        "search.options={num_candidates: 2, calibration_batches: 1}",
        "search.arch_eval_batches=1",
        "train.epochs=1",
    )
    assert main(["-q", "search", "--run-dir", str(tmp_path / "run"), *settings]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("supernas: error: search diverged at step ") and "\n" not in err, err
    assert "lower search.lr" in err
    assert not (tmp_path / "run" / "arch.json").exists()
