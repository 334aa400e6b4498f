"""Fashion-MNIST read from the four original idx `.gz` files, wherever they can be found.

Debian's package `dataset-fashion-mnist` installs them in /usr/share/datasets/fashion-mnist, so
on a machine set up by our scripts nothing is downloaded. Elsewhere torchvision downloads them
once into ~/.cache/supernas; either way the files are parsed here, with numpy, into one
in-memory tensor.
"""

from __future__ import annotations

import gzip
import logging
import math
import zlib
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import FashionMNIST

from supernas.data.datasets import ImageTensorDataset
from supernas.errors import DataError

logger = logging.getLogger(__name__)

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (  # label order of the data set's documentation
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
NUM_CLASSES = len(CLASSES)
IMAGE_SIZE = 28
_IDX_UBYTE = 0x08  # idx type code of unsigned bytes, the only type Fashion-MNIST uses


def read_idx(path: Path) -> np.ndarray:
    """Reads one gzipped idx file (the MNIST format) into a uint8 array.

    The header is two zero bytes, a type code and the number of dimensions, then each dimension
    as a big-endian int32: `00 00 08 03 | 60000 | 28 | 28` + 47,040,000 bytes -> an array of
    shape (60000, 28, 28).

    Raises:
        DataError: The file is not gzip, has a wrong magic number, or its size disagrees with
            its header.
    """
    try:
        with gzip.open(path, "rb") as file:
            raw = file.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"corrupt idx file {path}: {err}") from err
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != _IDX_UBYTE:
        raise DataError(f"{path} is not an idx file of unsigned bytes (magic {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"corrupt idx file {path}: truncated header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    if len(raw) - header != math.prod(shape):
        raise DataError(
            f"corrupt idx file {path}: header says shape {shape} but it holds "
            f"{len(raw) - header} bytes of data"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _cache_dir() -> Path:
    # Resolved at call time, so HOME set after import (tests, containers) is honoured.
    return Path.home() / ".cache" / "supernas"


def list_search_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """Returns the folders searched for the idx files, in order.

    `data_dir` comes first, then Debian's folder, our cache, torchvision's download folder
    (where the fallback below puts the files), and ./data/fashion-mnist.
    """
    cache = _cache_dir()
    dirs = [] if data_dir is None else [Path(data_dir).expanduser()]
    dirs += [
        DEBIAN_DIR,
        cache / "fashion-mnist",
        cache / "FashionMNIST" / "raw",
        Path("data") / "fashion-mnist",
    ]
    return dirs


def find_fashion_mnist(data_dir: str | Path | None = None) -> Path:
    """Returns the first folder holding all four idx files, downloading them as a last resort.

    Raises:
        DataError: No folder has the files and the download failed; the message lists every
            place tried, with why each was rejected.
    """
    names = FILES["train"] + FILES["test"]
    tried = []
    for folder in list_search_dirs(data_dir):
        missing = [name for name in names if not (folder / name).is_file()]
        if not missing:
            return folder
        reason = "no such folder" if not folder.is_dir() else f"no {missing[0]}"
        tried.append(f"{folder} ({reason})")
    root = _cache_dir()
    try:
        FashionMNIST(str(root), download=True)
    except (RuntimeError, OSError) as err:
        tried.append(f"torchvision download into {root} ({' '.join(str(err).split())})")
        raise DataError(
            "Fashion-MNIST not found; tried " + "; ".join(tried) + ". Install the Debian "
            "package dataset-fashion-mnist or pass data_dir (--data-dir)."
        ) from err
    return root / "FashionMNIST" / "raw"


def load_fashion_mnist(
    data_dir: str | Path | None = None, *, train: bool = True
) -> ImageTensorDataset:
    """Loads the training (60,000) or test (10,000) images as uint8 (N, 1, 28, 28).

    Args:
        data_dir: Searched before the known places (see `list_search_dirs`).
        train: Selects the training files, else the test (t10k) files.
    """
    folder = find_fashion_mnist(data_dir)
    images_name, labels_name = FILES["train" if train else "test"]
    images = read_idx(folder / images_name)
    labels = read_idx(folder / labels_name)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{folder / images_name} holds shape {images.shape}, not (N, 28, 28)")
    if labels.shape != images.shape[:1]:
        raise DataError(f"{folder} has {len(images)} images but labels of shape {labels.shape}")
    if labels.max(initial=0) >= NUM_CLASSES:
        raise DataError(f"{folder / labels_name} has label {labels.max()}, above 9")
    logger.info(
        "Fashion-MNIST %s split: %d images from %s",
        "train" if train else "test",
        len(images),
        folder,
    )
    # frombuffer arrays are read-only views of the decompressed bytes; torch wants its own copy.
    image_tensor = torch.from_numpy(images.copy()).unsqueeze(1)
    return ImageTensorDataset(image_tensor, torch.from_numpy(labels.astype(np.int64)))
