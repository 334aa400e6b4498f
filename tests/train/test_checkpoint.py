import random

import numpy as np
import pytest
import torch
from torch import nn

from supernas.errors import CheckpointError
from supernas.train import load_checkpoint, save_checkpoint, seed_everything, unwrap
from supernas.train.seed import rng_state, set_rng_state


def test_round_trip_leaves_no_temp_file(tmp_path):
    state = {"step": 3, "weights": torch.arange(4.0), "nested": {"names": ["a", "b"], "x": None}}
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, state)
    save_checkpoint(path, {**state, "step": 4})  # over an existing file
    loaded = load_checkpoint(path)
    assert loaded["step"] == 4 and loaded["nested"] == {"names": ["a", "b"], "x": None}
    assert torch.equal(loaded["weights"], state["weights"])
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_a_failed_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_state_that_could_not_be_loaded_back_is_refused_at_save_time(tmp_path):
    with pytest.raises(TypeError, match=r"state\['task'\]\['fn'\] is a function"):
        save_checkpoint(tmp_path / "ckpt.pt", {"task": {"fn": lambda: 0}})
    assert not (tmp_path / "ckpt.pt").exists()


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_corrupt_checkpoint_is_a_one_line_error_naming_the_file(tmp_path, damage):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"weights": torch.randn(1000)})
    data = path.read_bytes()
    damaged = {"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint", "empty": b""}
    path.write_bytes(damaged[damage])
    with pytest.raises(CheckpointError, match="corrupt") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_arbitrary_objects_are_not_unpickled(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": print}, path)  # a global that unpickling would resolve and return
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)


def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    seed_everything(7)
    save_checkpoint(tmp_path / "rng.pt", {"rng": rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(3))
    seed_everything(8)
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    actual = (random.random(), np.random.rand(), torch.rand(3))
    assert actual[:2] == expected[:2] and torch.equal(actual[2], expected[2])


def test_unwrap_removes_torch_compile():
    model = nn.Linear(2, 2)
    compiled = torch.compile(model)  # compiles lazily, at the first call
    assert unwrap(compiled) is model
    assert list(unwrap(compiled).state_dict()) == ["weight", "bias"]


def test_files_keep_the_users_umask(tmp_path):
    from supernas.train.checkpoint import UMASK, atomic_write_text

    atomic_write_text(tmp_path / "summary.json", "{}")
    save_checkpoint(tmp_path / "checkpoint.pt", {"step": 1})
    for name in ("summary.json", "checkpoint.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~UMASK
