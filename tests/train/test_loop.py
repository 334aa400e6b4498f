"""The loop in one process: metrics, hooks, logging, and exact resume after a crash."""

import logging
import os
import signal

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset
from train_fakes import assert_same_state, classifier_task, train_loader

from supernas.errors import CheckpointError, ConfigError, Interrupted
from supernas.train import LoopConfig, load_checkpoint, read_metrics, run_loop, seed_everything

STEPS_PER_EPOCH = 10


class Crash(Exception):
    pass


def _train(run_dir, kind="generator", *, resume=False, crash_at=None, **loop):
    """Trains the fake task for two epochs; ``crash_at`` raises after that step."""
    seed_everything(0)
    loader = train_loader(kind)
    task = classifier_task(len(loader))

    def on_step(step, values):
        if step == crash_at:
            raise Crash

    settings = {"epochs": 2, "checkpoint_every": 3, "log_every": 1, "progress": False, **loop}
    run_loop(task, loader, LoopConfig(**settings), run_dir, resume=resume, on_step=on_step)
    return task


def _steps(run_dir, key="train/loss"):
    return [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if key in r]


def test_metrics_have_one_record_per_step_and_one_evaluation_per_epoch(tmp_path):
    _train(tmp_path)
    assert _steps(tmp_path) == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert _steps(tmp_path, "val/top1") == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert (tmp_path / "tb").is_dir()


def test_log_every_thins_the_records_but_keeps_each_epoch_end(tmp_path):
    _train(tmp_path, log_every=4)
    assert _steps(tmp_path) == [4, 8, 10, 12, 16, 20]


def test_hooks_see_every_step_and_epoch(tmp_path):
    seen = []
    loader = train_loader()
    task = classifier_task(len(loader))
    run_loop(
        task,
        loader,
        LoopConfig(epochs=2, progress=False),
        tmp_path,
        on_step=lambda step, values: seen.append(("step", step, sorted(values))),
        on_epoch_end=lambda epoch, values: seen.append(("epoch", epoch, sorted(values))),
    )
    steps = [entry[1] for entry in seen if entry[0] == "step"]
    assert steps == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert seen[STEPS_PER_EPOCH] == ("epoch", 1, ["val/loss", "val/top1"])
    assert seen[0][2] == ["lr", "train/loss"]


@pytest.mark.parametrize("kind", ["generator", "global"])
@pytest.mark.parametrize("crash_at", [5, 11, 19])
def test_resume_after_a_crash_ends_with_the_uninterrupted_weights(tmp_path, kind, crash_at):
    reference = _train(tmp_path / "reference", kind)
    with pytest.raises(Crash):
        _train(tmp_path / "run", kind, crash_at=crash_at)
    torch.manual_seed(12345)  # whatever the global RNG holds now must not matter
    resumed = _train(tmp_path / "run", kind, resume=True)
    assert_same_state(resumed.state_dict(), reference.state_dict())
    assert _steps(tmp_path / "run") == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert records == read_metrics(tmp_path / "reference" / "metrics.jsonl")


def test_resume_without_a_checkpoint_starts_from_scratch(tmp_path):
    _train(tmp_path, resume=True)
    assert _steps(tmp_path) == list(range(1, 2 * STEPS_PER_EPOCH + 1))


def test_resume_with_another_batch_size_is_refused(tmp_path):
    _train(tmp_path)
    loader = DataLoader(train_loader().dataset, batch_size=4)
    task = classifier_task(len(loader))
    with pytest.raises(CheckpointError, match="10 steps per epoch and this run has 20"):
        run_loop(task, loader, LoopConfig(epochs=2), tmp_path, resume=True)


def test_without_a_terminal_progress_is_logged_every_log_every_steps(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="supernas.train.loop"):
        _train(tmp_path, log_every=5, progress=True)  # pytest's stderr is not a TTY
    lines = [r.getMessage() for r in caplog.records]
    steps = [line.split()[2] for line in lines if " step " in line]
    assert steps == ["5/20", "10/20", "15/20", "20/20"]
    assert sum(" epoch " in line for line in lines) == 2


def test_an_iterable_data_set_is_refused(tmp_path):
    class Stream(IterableDataset):
        def __iter__(self):
            return iter([(torch.zeros(1, 8, 8), torch.tensor(0))])

    loader = DataLoader(Stream(), batch_size=None)
    task = classifier_task(1)
    with pytest.raises(ConfigError, match="map-style"):
        run_loop(task, loader, LoopConfig(epochs=1), tmp_path)


def test_a_loader_without_batches_is_refused(tmp_path):
    loader = DataLoader(train_loader().dataset, batch_size=1000, drop_last=True)
    with pytest.raises(ConfigError, match="yields no batch"):
        run_loop(classifier_task(1), loader, LoopConfig(epochs=1), tmp_path)


def test_loop_config_refuses_a_zero_interval():
    with pytest.raises(ConfigError, match="checkpoint_every must be at least 1"):
        LoopConfig(epochs=1, checkpoint_every=0)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_finishes_the_step_saves_and_resumes_exactly(tmp_path, signum):
    """A signal mid-epoch: the step it arrives in completes, a checkpoint is written at it,
    and the run resumed from there ends where an uninterrupted one does."""
    whole = _train(tmp_path / "whole")
    seed_everything(0)
    loader = train_loader()
    task = classifier_task(len(loader))

    def signal_at_7(step, values):
        if step == 7:
            os.kill(os.getpid(), signum)

    config = LoopConfig(epochs=2, checkpoint_every=100, progress=False)
    with pytest.raises(Interrupted) as stop:
        run_loop(task, loader, config, tmp_path / "cut", on_step=signal_at_7)
    assert (stop.value.signum, stop.value.step) == (signum, 7)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 7
    assert signal.getsignal(signum) is not None  # the handlers are put back
    resumed = _train(tmp_path / "cut", resume=True)
    assert_same_state(resumed.state_dict(), whole.state_dict())


def test_a_checkpoint_of_another_run_is_one_line(tmp_path):
    _train(tmp_path)
    loader = train_loader()
    task = classifier_task(len(loader))

    def another_method(state):
        raise KeyError("alpha")

    task.load_state_dict = another_method
    with pytest.raises(CheckpointError, match="does not fit this run .*: 'alpha'"):
        run_loop(task, loader, LoopConfig(epochs=3, progress=False), tmp_path, resume=True)
