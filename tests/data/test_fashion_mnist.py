"""Fashion-MNIST: the idx parser, the search of known places, and the real files if installed."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fakes import write_fake_fmnist, write_idx

from supernas.data import fashion_mnist
from supernas.data.fashion_mnist import FILES, load_fashion_mnist, read_idx
from supernas.errors import DataError


@pytest.fixture
def no_known_places(tmp_path, monkeypatch):
    """Hides the real Debian files, the user's cache and ./data, and fails the download."""
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)

    def offline(root, download):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nno network")

    monkeypatch.setattr(fashion_mnist, "FashionMNIST", offline)


def test_read_idx_round_trips_shape_and_values(tmp_path):
    array = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    write_idx(tmp_path / "a.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (bytes([0, 0, 0x0D, 1]) + struct.pack(">i", 2) + b"\x00\x00", "not an idx file"),  # float
        (bytes([1, 0, 0x08, 1]) + struct.pack(">i", 2) + b"\x00\x00", "not an idx file"),
        (bytes([0, 0, 0x08, 2]) + struct.pack(">i", 3), "truncated header"),
        (bytes([0, 0, 0x08, 1]) + struct.pack(">i", 5) + b"\x00\x00", "header says shape"),
    ],
)
def test_read_idx_rejects_bad_headers(tmp_path, payload, message):
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as file:
        file.write(payload)
    with pytest.raises(DataError, match=f"{path}.*{message}|{message}.*{path}"):
        read_idx(path)


def test_read_idx_rejects_a_file_that_is_not_gzip(tmp_path):
    path = tmp_path / "plain.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="corrupt idx file"):
        read_idx(path)


def test_read_idx_rejects_a_truncated_gzip(tmp_path):
    path = tmp_path / "cut.gz"
    write_idx(path, np.zeros((50, 28, 28)))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="corrupt idx file"):
        read_idx(path)


def test_load_from_data_dir_gives_uint8_images_and_labels(tmp_path, no_known_places):
    write_fake_fmnist(tmp_path / "fmnist", n_train=6, n_test=4)
    train = load_fashion_mnist(tmp_path / "fmnist", train=True)
    test = load_fashion_mnist(tmp_path / "fmnist", train=False)
    assert (len(train), len(test)) == (6, 4)
    assert train.images.shape == (6, 1, 28, 28) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64
    assert train.labels.tolist() == [0, 1, 2, 3, 4, 5]
    image, label = train[3]
    assert image.shape == (1, 28, 28) and label == 3


def test_cache_folder_is_found_without_data_dir(tmp_path, no_known_places):
    write_fake_fmnist(tmp_path / "home" / ".cache" / "supernas" / "fashion-mnist")
    assert len(load_fashion_mnist()) == 6


def test_missing_data_lists_every_place_tried(tmp_path, no_known_places):
    given = tmp_path / "given"
    given.mkdir()
    with pytest.raises(DataError) as caught:
        load_fashion_mnist(given)
    message = str(caught.value)
    assert "\n" not in message
    for place in [
        given,
        tmp_path / "debian",
        tmp_path / "home" / ".cache" / "supernas" / "fashion-mnist",
        tmp_path / "home" / ".cache" / "supernas" / "FashionMNIST" / "raw",
        Path("data") / "fashion-mnist",
    ]:
        assert f"{place} (" in message
    assert "no train-images-idx3-ubyte.gz" in message  # `given` exists but is empty
    assert "torchvision download into" in message and "no network" in message


def test_labels_out_of_range_are_refused(tmp_path, no_known_places):
    write_fake_fmnist(tmp_path / "fmnist")
    write_idx(tmp_path / "fmnist" / FILES["train"][1], np.full(6, 12))
    with pytest.raises(DataError, match="label 12"):
        load_fashion_mnist(tmp_path / "fmnist")


@pytest.mark.skipif(
    not all((fashion_mnist.DEBIAN_DIR / name).is_file() for name in FILES["train"] + FILES["test"]),
    reason="Debian package dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_from_debian():
    train = load_fashion_mnist(fashion_mnist.DEBIAN_DIR, train=True)
    test = load_fashion_mnist(fashion_mnist.DEBIAN_DIR, train=False)
    assert (len(train), len(test)) == (60000, 10000)
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    # The normalisation constants in transforms.py are this set's statistics.
    pixels = train.images.float() / 255
    assert pixels.mean().item() == pytest.approx(0.2860, abs=1e-3)
    assert pixels.std().item() == pytest.approx(0.3530, abs=1e-3)
