"""`DataConfig` -> `DataBundle`: the weight, arch and test sets of a run and their loaders.

Every data set is registered in `DATA_SETS` by a function that loads its untransformed train
and test sets; `build_data` adds the transforms and the seeded weight/arch split the same way
for all of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from supernas.data import fashion_mnist
from supernas.data.datasets import ImageTensorDataset, Sample, TransformedDataset
from supernas.data.splits import shuffled_indices, split_indices
from supernas.data.synthetic import make_synthetic
from supernas.data.torchvision_sets import (
    CIFAR_IMAGE_SIZE,
    CIFAR_NUM_CLASSES,
    load_cifar,
    load_imagefolder,
)
from supernas.data.transforms import folder_transform, tensor_transform
from supernas.errors import DataError
from supernas.registry import Registry

IMAGEFOLDER_SIZE = 224  # ImageFolder images vary in size; this is the conventional crop

# Called as `factory(train=..., resolution=...)`; returns the transform of one split.
TransformFactory = Callable[..., Callable[[Any], Any]]


@dataclass(frozen=True)
class DataConfig:
    """Which data set to load and how to split, limit and batch it."""

    name: str = "fashion_mnist"  # fashion_mnist, cifar10, cifar100, imagefolder or synthetic
    data_dir: str | None = None  # searched first for Fashion-MNIST; required by the others
    batch_size: int = 128  # images per step, per process under DDP
    arch_fraction: float = 0.2  # share of the training set held out for arch parameters
    split_seed: int = 0  # seeds the weight/arch split and the limit_* subsets
    num_workers: int | None = None  # loader processes; None sizes them to the machine
    limit_train: int | None = None  # use only this many training images (quick demos)
    limit_test: int | None = None  # evaluate on only this many test images
    augment: bool = True  # random crop and flip on the weight split
    synthetic_channels: int = 1  # the synthetic_* fields only apply to name="synthetic"
    synthetic_size: int = 28
    synthetic_classes: int = 10
    synthetic_train: int = 2048  # number of training images
    synthetic_test: int = 512
    synthetic_seed: int = 0

    def __post_init__(self) -> None:
        DATA_SETS.get(self.name)  # an unknown name raises DataError listing the known ones
        _check_int("batch_size", self.batch_size, low=1)
        _check_int("split_seed", self.split_seed, low=0)
        for field, value in (
            ("num_workers", self.num_workers),
            ("limit_train", self.limit_train),
            ("limit_test", self.limit_test),
        ):
            if value is not None:
                _check_int(field, value, low=0 if field == "num_workers" else 1)
        if isinstance(self.arch_fraction, bool) or not isinstance(self.arch_fraction, int | float):
            raise DataError(f"data.arch_fraction must be a number, got {self.arch_fraction!r}")
        if not 0.0 <= self.arch_fraction < 1.0:
            raise DataError(f"data.arch_fraction must be in [0, 1), got {self.arch_fraction}")


def _check_int(field: str, value: object, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise DataError(f"data.{field} must be {kind}, got {value!r}")


def default_num_workers() -> int:
    """Returns the loader worker count that suits this machine.

    Measured on the project's 2-core machines (idle), Fashion-MNIST at batch 256: the main
    process loads and augments an epoch of the weight split in about 0.3 s, a worker process
    in about 0.8 s (it runs on one thread and ships each batch through shared memory), and a
    worker also takes a core from the training step. So 0 up to 2 cores; with more cores a
    worker overlaps loading with the step, and more than 4 buy nothing for these small sets.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    return 0 if cpus <= 2 else min(4, cpus - 1)


@dataclass(frozen=True)
class DataBundle:
    """The three sets of a run, what a model needs to know about them, and their loaders."""

    weight: Dataset[Sample]  # augmented training images that the supernet weights learn from
    arch: Dataset[Sample]  # held-out training images for arch parameters, never augmented
    test: Dataset[Sample]  # used only for the final evaluation
    in_channels: int
    num_classes: int
    image_size: int  # native side length of the images
    resolution: int  # side length of the images the loaders produce
    batch_size: int
    num_workers: int

    def loader(
        self, dataset: Dataset[Sample], train: bool, *, seed: int, distributed: bool = False
    ) -> DataLoader[Sample]:
        """Returns a loader over one of this bundle's sets.

        Training loaders shuffle with a generator seeded by `seed` and drop the last partial
        batch, whose odd size would skew batch-norm statistics. The generator also seeds the
        augmentation in worker processes; without workers it draws from torch's global
        generator, which the run seeds. With `distributed`, a `DistributedSampler` gives each
        rank its share; call `loader.sampler.set_epoch(epoch)` each epoch so the shuffle
        changes.

        Raises:
            DataError: A training loader would yield no batch at all.
        """
        sampler = None
        if distributed:
            sampler = DistributedSampler(dataset, shuffle=train, seed=seed, drop_last=train)
        per_process = len(sampler if sampler is not None else dataset)  # type: ignore[arg-type]
        if train and per_process < self.batch_size:
            raise DataError(
                f"{per_process} training images per process is fewer than batch_size "
                f"{self.batch_size}; lower batch_size or raise limit_train"
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            generator=torch.Generator().manual_seed(seed),
            num_workers=self.num_workers,
            drop_last=train,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )


@dataclass(frozen=True)
class DataSource:
    """The untransformed sets of one data set, as its registered loader returns them."""

    train: ImageTensorDataset | TransformedDataset
    test: ImageTensorDataset | TransformedDataset
    in_channels: int
    num_classes: int
    image_size: int
    transform: TransformFactory


DATA_SETS: Registry[Callable[[DataConfig], DataSource]] = Registry("data set", DataError)


@DATA_SETS.register("fashion_mnist")
def _fashion_mnist(cfg: DataConfig) -> DataSource:
    return DataSource(
        train=fashion_mnist.load_fashion_mnist(cfg.data_dir, train=True),
        test=fashion_mnist.load_fashion_mnist(cfg.data_dir, train=False),
        in_channels=1,
        num_classes=fashion_mnist.NUM_CLASSES,
        image_size=fashion_mnist.IMAGE_SIZE,
        transform=partial(tensor_transform, "fashion_mnist"),
    )


def _cifar(cfg: DataConfig) -> DataSource:
    return DataSource(
        train=load_cifar(cfg.name, cfg.data_dir, train=True),
        test=load_cifar(cfg.name, cfg.data_dir, train=False),
        in_channels=3,
        num_classes=CIFAR_NUM_CLASSES[cfg.name],
        image_size=CIFAR_IMAGE_SIZE,
        transform=partial(tensor_transform, cfg.name),
    )


DATA_SETS.register("cifar10")(_cifar)
DATA_SETS.register("cifar100")(_cifar)


@DATA_SETS.register("imagefolder")
def _imagefolder(cfg: DataConfig) -> DataSource:
    train = load_imagefolder(cfg.data_dir, split="train")
    test = load_imagefolder(cfg.data_dir, split="val")
    if test.classes != train.classes:
        raise DataError(
            f"ImageFolder {cfg.data_dir}: val has {len(test.classes)} class folders that differ "
            f"from train's {len(train.classes)}"
        )
    return DataSource(
        train=TransformedDataset(train, None),
        test=TransformedDataset(test, None),
        in_channels=3,
        num_classes=len(train.classes),
        image_size=IMAGEFOLDER_SIZE,
        transform=folder_transform,
    )


@DATA_SETS.register("synthetic")
def _synthetic(cfg: DataConfig) -> DataSource:
    shape = {
        "channels": cfg.synthetic_channels,
        "size": cfg.synthetic_size,
        "num_classes": cfg.synthetic_classes,
        "seed": cfg.synthetic_seed,
    }
    return DataSource(
        train=make_synthetic(cfg.synthetic_train, train=True, **shape),
        test=make_synthetic(cfg.synthetic_test, train=False, **shape),
        in_channels=cfg.synthetic_channels,
        num_classes=cfg.synthetic_classes,
        image_size=cfg.synthetic_size,
        transform=partial(tensor_transform, "synthetic"),
    )


def build_data(cfg: DataConfig, resolution: int | None = None) -> DataBundle:
    """Loads the data set of `cfg` and splits its training set into weight and arch sets.

    Args:
        cfg: The data settings of the run.
        resolution: Side length the loaders should produce; None keeps the native size.

    Raises:
        DataError: The data set cannot be found or read, or a setting does not fit it.
    """
    if resolution is not None:
        _check_int("resolution", resolution, low=1)
    source = DATA_SETS.get(cfg.name)(cfg)
    size = resolution or source.image_size
    train_transform = source.transform(train=cfg.augment, resolution=size)
    eval_transform = source.transform(train=False, resolution=size)
    weight_indices, arch_indices = split_indices(
        len(source.train), cfg.arch_fraction, cfg.split_seed, cfg.limit_train
    )
    test: Dataset[Sample] = source.test.with_transform(eval_transform)
    if cfg.limit_test is not None:
        test = Subset(test, shuffled_indices(len(source.test), cfg.split_seed, cfg.limit_test))
    return DataBundle(
        weight=Subset(source.train.with_transform(train_transform), weight_indices),
        arch=Subset(source.train.with_transform(eval_transform), arch_indices),
        test=test,
        in_channels=source.in_channels,
        num_classes=source.num_classes,
        image_size=source.image_size,
        resolution=size,
        batch_size=cfg.batch_size,
        num_workers=default_num_workers() if cfg.num_workers is None else cfg.num_workers,
    )
