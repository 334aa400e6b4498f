from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from supernas.train import MetricsWriter, read_metrics


def _write(run_dir, steps, resume_step=0):
    writer = MetricsWriter(run_dir, resume_step=resume_step)
    for step in steps:
        writer.write(step, step / 4, {"train/loss": 1 / step})
    return writer


def _steps(run_dir):
    return [record["step"] for record in read_metrics(run_dir / "metrics.jsonl")]


def test_each_record_is_on_disk_as_soon_as_it_is_written(tmp_path):
    writer = _write(tmp_path, [1, 2])
    assert read_metrics(tmp_path / "metrics.jsonl") == [
        {"step": 1, "epoch": 0.25, "train/loss": 1.0},
        {"step": 2, "epoch": 0.5, "train/loss": 0.5},
    ]
    writer.close()


def test_resume_drops_the_records_after_the_checkpoint(tmp_path):
    _write(tmp_path, range(1, 6)).close()
    _write(tmp_path, [4, 5, 6], resume_step=3).close()
    assert _steps(tmp_path) == [1, 2, 3, 4, 5, 6]


def test_a_fresh_run_starts_an_empty_file(tmp_path):
    _write(tmp_path, range(1, 6)).close()
    _write(tmp_path, [1]).close()
    assert _steps(tmp_path) == [1]


def test_a_line_cut_by_a_crash_is_ignored(tmp_path):
    _write(tmp_path, [1, 2]).close()
    with (tmp_path / "metrics.jsonl").open("a") as file:
        file.write('{"step": 3, "tra')
    assert _steps(tmp_path) == [1, 2]
    _write(tmp_path, [3], resume_step=2).close()
    assert _steps(tmp_path) == [1, 2, 3]


def test_tensorboard_gets_the_same_scalars(tmp_path):
    _write(tmp_path, [1, 2, 3]).close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [event.step for event in events.Scalars("train/loss")] == [1, 2, 3]


def test_a_disabled_writer_writes_nothing(tmp_path):
    writer = MetricsWriter(tmp_path, enabled=False)
    writer.write(1, 0.0, {"train/loss": 1.0})
    writer.close()
    assert list(tmp_path.iterdir()) == []
