"""Writers of tiny fake data sets in the original on-disk formats, shared by the data tests."""

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from supernas.data.fashion_mnist import FILES

CIFAR10_FILES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]


def write_idx(path: Path, array: np.ndarray) -> None:
    """Writes a gzipped idx file of unsigned bytes: magic 00 00 08 ndim, dims, pixels."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def write_fake_fmnist(folder: Path, n_train: int = 6, n_test: int = 4) -> None:
    """Writes the four Fashion-MNIST idx files with random images and labels 0, 1, 2, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        images_name, labels_name = FILES[split]
        write_idx(folder / images_name, rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / labels_name, np.arange(n) % 10)


def write_fake_cifar10(root: Path, per_batch: int = 4) -> None:
    """Writes torchvision's cifar-10-batches-py layout: pickled dicts of rows of 3072 bytes.

    In row r of file f (data_batch_1 is f = 0, test_batch f = 5) every pixel of channel c is
    10 f + r + 64 c, so tests can see which rows were read and how they were reshaped.
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for index, name in enumerate([*CIFAR10_FILES, "test_batch"]):
        # A row is three 32 x 32 planes, red then green then blue.
        planes = index * 10 + np.arange(per_batch)[:, None] + 64 * np.arange(3)[None, :]
        rows = np.repeat(planes, 1024, axis=1)
        entry = {"data": rows.astype(np.uint8), "labels": list(range(per_batch))}
        (folder / name).write_bytes(pickle.dumps(entry))
    meta = {"label_names": [f"class{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


def write_fake_imagefolder(
    root: Path, classes=("cat", "dog", "eel"), per_class=3, splits=("train", "val"), mode="RGB"
) -> None:
    """Writes flat-colour PNGs of varied sizes; class i has pixel value 40 i."""
    for split in splits:
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = np.full((20 + i, 30, 3), 40 * index, dtype=np.uint8)
                Image.fromarray(pixels).convert(mode).save(folder / f"{i}.png")
