"""CIFAR-10, CIFAR-100 and ImageFolder (ImageNet-style) data sets read through torchvision.

Nothing is downloaded: these sets are for users who have them, and a wrong path should say so
rather than start a 170 MB download into it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision.datasets import CIFAR10, CIFAR100, ImageFolder

from supernas.data.datasets import ImageTensorDataset
from supernas.errors import DataError

CIFAR_CLASSES: dict[str, type[CIFAR10]] = {"cifar10": CIFAR10, "cifar100": CIFAR100}
CIFAR_NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
CIFAR_IMAGE_SIZE = 32


def _existing_root(root: str | Path | None, name: str) -> Path:
    if root is None:
        raise DataError(f"data set {name!r} needs data_dir (--data-dir), the folder holding it")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"data_dir {path} for {name!r} does not exist")
    return path


def load_cifar(name: str, root: str | Path | None, *, train: bool = True) -> ImageTensorDataset:
    """Loads CIFAR-10 or CIFAR-100 as uint8 (N, 3, 32, 32) in memory.

    torchvision checks every file's md5 and unpickles the batches (with download=False); the
    images are then kept as one tensor so the fast batch transforms apply, as for Fashion-MNIST.

    Args:
        name: "cifar10" or "cifar100".
        root: The folder holding `cifar-10-batches-py` (or `cifar-100-python`); that folder
            itself is accepted too.
        train: Selects the training batches, else the test batch.

    Raises:
        DataError: The root is missing, or its files are missing or fail the md5 check.
    """
    cifar = CIFAR_CLASSES[name]
    path = _existing_root(root, name)
    if path.name == cifar.base_folder:
        path = path.parent
    try:
        dataset = cifar(str(path), train=train, download=False)
    except RuntimeError as err:
        raise DataError(
            f"{name} not found or corrupt in {path / cifar.base_folder} ({err}); fetch it with "
            f"torchvision.datasets.{cifar.__name__}({str(path)!r}, download=True)"
        ) from err
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    return ImageTensorDataset(images, torch.tensor(dataset.targets, dtype=torch.long))


def load_imagefolder(root: str | Path | None, *, split: str) -> ImageFolder:
    """Loads `root/<split>` ("train" or "val"), one sub-folder per class, as RGB PIL images.

    Raises:
        DataError: The folder is missing or holds no class folders with images.
    """
    path = _existing_root(root, "imagefolder") / split
    if not path.is_dir():
        raise DataError(f"ImageFolder split folder {path} does not exist")
    try:
        return ImageFolder(str(path), loader=_read_image)
    except FileNotFoundError as err:
        raise DataError(f"ImageFolder {path}: {err}") from err


def _read_image(path: str) -> Image.Image:
    """An RGB image; a file that is not one is a `DataError` naming it, even mid-run."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise DataError(f"cannot read image {path}: {str(err).splitlines()[0]}") from None
