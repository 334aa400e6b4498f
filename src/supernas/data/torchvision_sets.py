"""CIFAR-10, CIFAR-100 and ImageFolder data sets read through torchvision.

Nothing is downloaded: these sets are for users who have them, and a wrong path should say so
rather than start a 170 MB download into it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from PIL import Image
from torchvision.datasets import CIFAR10, CIFAR100, ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from supernas.data.datasets import ImageTensorDataset
from supernas.errors import DataError

CIFAR_CLASSES: dict[str, type[CIFAR10]] = {"cifar10": CIFAR10, "cifar100": CIFAR100}


def _existing_root(root: str | Path | None, name: str) -> Path:
    if root is None:
        raise DataError(f"data set {name!r} needs data_dir (--data-dir), the folder holding it")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"data_dir {path} for {name!r} does not exist")
    return path


def load_cifar(
    name: str, root: str | Path | None, *, train: bool = True
) -> tuple[ImageTensorDataset, tuple[str, ...]]:
    """Loads CIFAR-10 or CIFAR-100 as uint8 (N, 3, 32, 32) in memory.

    torchvision checks every file's md5 and unpickles the batches (with download=False); the
    images are then kept as one tensor so the fast batch transforms apply, as for Fashion-MNIST.

    Args:
        name: "cifar10" or "cifar100".
        root: The folder holding `cifar-10-batches-py` (or `cifar-100-python`); that folder
            itself is accepted too.
        train: Selects the training batches, else the test batch.

    Returns:
        The images and labels, and the class names in label order.

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
    labels = torch.tensor(dataset.targets, dtype=torch.long)
    return ImageTensorDataset(images, labels), tuple(dataset.classes)


SPLIT_FOLDERS = ("train", "val", "test")
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
GREY_PROBE = 32  # images looked at to decide whether a folder is grey


def imagefolder_splits(root: str | Path | None) -> dict[str, ImageFolder]:
    """The split folders of an ImageFolder root: ``train/`` (required), ``val/`` and ``test/``
    (optional), each with one sub-folder per class, the same classes in every split.

    Raises:
        DataError: ``train/`` is missing, a split holds no images, or the classes differ.
    """
    path = _existing_root(root, "imagefolder")
    if not (path / "train").is_dir():
        raise DataError(f"ImageFolder {path} has no train/ folder (one sub-folder per class)")
    splits = {name: load_imagefolder(path, split=name) for name in SPLIT_FOLDERS}
    splits = {name: folder for name, folder in splits.items() if folder is not None}
    for name, folder in splits.items():
        if folder.classes != splits["train"].classes:
            raise DataError(
                f"ImageFolder {path}: the class folders of {name}/ ({len(folder.classes)}) differ "
                f"from those of train/ ({len(splits['train'].classes)})"
            )
    return splits


def load_imagefolder(root: str | Path | None, *, split: str) -> ImageFolder | None:
    """Loads `root/<split>`, one sub-folder per class; None when the folder does not exist.

    Raises:
        DataError: The folder holds no class folders with images.
    """
    path = _existing_root(root, "imagefolder") / split
    if not path.is_dir():
        return None
    try:
        return ImageFolder(str(path), loader=partial(_read_image, mode="RGB"))
    except FileNotFoundError as err:
        raise DataError(f"ImageFolder {path}: {err}") from err


def with_mode(folder: ImageFolder, mode: str) -> ImageFolder:
    """The same folder read as ``mode`` images ("L": one grey channel, "RGB": three)."""
    folder.loader = partial(_read_image, mode=mode)
    return folder


@dataclass(frozen=True)
class FolderProbe:
    """What a few files of an ImageFolder's ``train/`` say, without scanning all of them."""

    classes: tuple[str, ...]  # the class folders in label order (sorted, as ImageFolder)
    grey: bool  # every probed image has a one-channel mode
    side: int  # median shorter side of the probed images; 0 when none could be read


def probe_folder(root: str | Path | None) -> FolderProbe:
    """Classes, channels and image size of an ImageFolder from one image of each of its first
    `GREY_PROBE` classes: cheap next to ImageFolder's scan of every file.

    Raises:
        DataError: ``train/`` is missing or holds no class folders.
    """
    path = _existing_root(root, "imagefolder") / "train"
    if not path.is_dir():
        raise DataError(
            f"ImageFolder {path.parent} has no train/ folder (one sub-folder per class)"
        )
    classes = sorted(entry.name for entry in os.scandir(path) if entry.is_dir())
    if not classes:
        raise DataError(f"ImageFolder {path} holds no class folders")
    modes, sides = [], []
    for name in classes[:GREY_PROBE]:
        images = sorted(
            e.path for e in os.scandir(path / name) if e.name.lower().endswith(IMG_EXTENSIONS)
        )
        for image_path in images[:1]:
            try:
                with Image.open(image_path) as image:
                    modes.append(image.mode)
                    sides.append(min(image.size))
            except (OSError, ValueError):
                pass  # an unreadable file fails with its name when it is read for training
    side = sorted(sides)[len(sides) // 2] if sides else 0
    return FolderProbe(tuple(classes), bool(modes) and set(modes) <= GREY_MODES, side)


def _read_image(path: str, mode: str) -> Image.Image:
    """An image in ``mode``; a file that is not one is a `DataError` naming it, even mid-run."""
    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise DataError(f"cannot read image {path}: {str(err).splitlines()[0]}") from None
