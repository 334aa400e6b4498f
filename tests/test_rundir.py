"""Run directories are exclusive: unique names, one writer at a time, no stale temp files."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from runs import overrides
from supernas.cli import main
from supernas.errors import ConfigError
from supernas.rundir import LOCK, create_run_dir, discard_unstarted, exclusive


def test_runs_started_in_the_same_second_get_their_own_directories(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: create_run_dir(tmp_path, "20261202-120000-x"), range(8)))
    assert len(set(made)) == 8 and all(path.is_dir() for path in made)
    assert sorted(p.name for p in made)[:2] == ["20261202-120000-x", "20261202-120000-x-2"]


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    with exclusive(tmp_path):
        with pytest.raises(ConfigError, match=r"in use by another supernas process \(pid \d+\)"):
            with exclusive(tmp_path):
                pass
    with exclusive(tmp_path):  # released when the holder is done
        pass
    assert (tmp_path / LOCK).is_file()


def test_temporary_files_of_a_killed_write_are_removed(tmp_path):
    stale = tmp_path / "search" / ".checkpoint.pt.abc123.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"half a checkpoint")
    kept = tmp_path / "search" / "checkpoint.pt"
    kept.write_bytes(b"whole")
    with exclusive(tmp_path):
        assert not stale.exists() and kept.exists()


def test_resuming_a_run_another_process_writes_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    settings = overrides("search.epochs=1", "train.epochs=1", "search.options={num_candidates: 2}")
    assert main(["-q", "search", "--run-dir", str(run), *settings]) == 0
    with exclusive(run):
        assert main(["-q", "search", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("supernas: error: ") and "in use by another supernas process" in err
    assert "\n" not in err


def test_a_new_run_never_writes_over_a_finished_one(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "train").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    assert main(["-q", "search", "--run-dir", str(run), *overrides("search.epochs=1")]) == 2
    assert "already exists and is not empty; continue its run with --resume" in (
        capsys.readouterr().err
    )
    assert (run / "config.yaml").read_text() == "seed: 0\n"


@pytest.mark.parametrize("existed", [False, True])
def test_a_run_stopped_by_a_user_error_before_its_first_step_leaves_nothing(
    tmp_path, capsys, existed
):
    """The batch is only found too large once the data is read, after the run directory was
    made: the directory goes again (an empty one given by the user stays), so the same
    command with the mistake fixed runs in it."""
    run = tmp_path / "run"
    if existed:
        run.mkdir()
    too_big = overrides("data.synthetic_train=64", "data.batch_size=64")
    assert main(["-q", "search", "--run-dir", str(run), *too_big]) == 2
    assert "fewer than batch_size 64" in capsys.readouterr().err
    assert run.is_dir() == existed and (not existed or not any(run.iterdir()))


def test_a_run_with_more_than_its_settings_is_never_discarded(tmp_path):
    (tmp_path / "search").mkdir()
    for name in ("config.yaml", "space.yaml", LOCK):
        (tmp_path / name).write_text("x")
    discard_unstarted(tmp_path, created=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        LOCK,
        "config.yaml",
        "search",
        "space.yaml",
    ]
    (tmp_path / "search").rmdir()
    discard_unstarted(tmp_path, created=True)
    assert not tmp_path.exists()
