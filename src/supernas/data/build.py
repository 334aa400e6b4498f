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
from supernas.data.augment import Augment, PolicySpec, check_policy, folder_default, resolve
from supernas.data.datasets import ImageTensorDataset, Sample, TransformedDataset
from supernas.data.splits import held_out, shuffled_indices, split_indices
from supernas.data.synthetic import make_synthetic
from supernas.data.torchvision_sets import imagefolder_splits, load_cifar, probe_folder, with_mode
from supernas.data.transforms import (
    GREY_MEAN,
    GREY_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TENSOR_RECIPES,
    folder_transform,
    tensor_transform,
)
from supernas.errors import DataError
from supernas.registry import Registry

IMAGEFOLDER_SIZE = 224  # ImageFolder images vary in size; this is the conventional crop

# Called as `factory(augment, resolution=..., train=...)`; returns the transform of a split.
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
    augment: PolicySpec = "auto"  # auto, none, light, imagenet or {crop_padding, flip, scale}
    channels: int | None = None  # ImageFolder: 1 (grey) or 3; None decides from the images
    test_fraction: float = 0.1  # ImageFolder without val/ or test/: share held out as test set
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
        for field in ("arch_fraction", "test_fraction"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DataError(f"data.{field} must be a number, got {value!r}")
            if not 0.0 <= value < 1.0:
                raise DataError(f"data.{field} must be in [0, 1), got {value}")
        if self.channels not in (None, 1, 3) or isinstance(self.channels, bool):
            raise DataError(f"data.channels must be 1, 3 or null, got {self.channels!r}")
        if self.channels is not None and self.name != "imagefolder":
            raise DataError(f"data.channels applies to imagefolder only, not to {self.name}")
        if self.test_fraction == 0:
            raise DataError("data.test_fraction must be above 0: a held-out test set needs images")
        check_policy(self.augment)


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
    weight_plain: Dataset[Sample]  # the weight split without augmentation: int8 calibration
    in_channels: int
    image_size: int  # native side length of the images
    resolution: int  # side length of the images the loaders produce
    batch_size: int
    num_workers: int
    classes: tuple[str, ...]  # class names in label order
    augment: Augment = Augment()  # the weight split's random transforms
    roles: str = ""  # which split of the data set plays which role, in one line
    mean: tuple[float, ...] = ()  # normalisation after scaling pixels to [0, 1]
    std: tuple[float, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def sizes(self) -> dict[str, int]:
        """Images in each split: what a report should say beside the roles."""
        return {"weight": len(self.weight), "arch": len(self.arch), "test": len(self.test)}

    def preprocessing(self) -> dict[str, Any]:
        """What a model trained on this bundle expects of an image, for anyone who deploys it:
        exactly what the evaluation transform does, in words and numbers."""
        return {
            "channels": "L" if self.in_channels == 1 else "RGB",
            "resize_shorter_side": round(self.resolution / self.augment.eval_crop_ratio),
            "center_crop": self.resolution,
            "interpolation": "bilinear, antialiased",
            "scale": "pixels / 255",
            "mean": list(self.mean),
            "std": list(self.std),
            "layout": "NCHW float32",
            "classes": list(self.classes),
        }

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
    classes: tuple[str, ...]  # class names in label order
    image_size: int
    transform: TransformFactory
    default_augment: Callable[[int], Augment]  # the `auto` policy at a resolution
    augment_size: int | None = None  # the side `light` pads an eighth of: native if augmented
    # before the resize (in-memory sets), else (None) the resolution the loaders produce
    arch: ImageTensorDataset | TransformedDataset | None = None  # a given validation split
    roles: str = "train: weight and arch splits; test: test set"  # which split plays which role
    mean: tuple[float, ...] = ()  # normalisation after scaling pixels to [0, 1]
    std: tuple[float, ...] = ()


DATA_SETS: Registry[Callable[[DataConfig], DataSource]] = Registry("data set", DataError)


def _tensor_source(name: str, train, test, classes: tuple[str, ...]) -> DataSource:
    recipe = TENSOR_RECIPES[name]
    return DataSource(
        train=train,
        test=test,
        in_channels=train.images.shape[1],
        classes=classes,
        image_size=train.images.shape[-1],
        transform=partial(tensor_transform, name),
        default_augment=lambda _: recipe.augment,
        augment_size=train.images.shape[-1],
        mean=recipe.mean,
        std=recipe.std,
    )


@DATA_SETS.register("fashion_mnist")
def _fashion_mnist(cfg: DataConfig) -> DataSource:
    train = fashion_mnist.load_fashion_mnist(cfg.data_dir, train=True)
    test = fashion_mnist.load_fashion_mnist(cfg.data_dir, train=False)
    return _tensor_source("fashion_mnist", train, test, fashion_mnist.CLASSES)


def _cifar(cfg: DataConfig) -> DataSource:
    train, classes = load_cifar(cfg.name, cfg.data_dir, train=True)
    test, _ = load_cifar(cfg.name, cfg.data_dir, train=False)
    return _tensor_source(cfg.name, train, test, classes)


DATA_SETS.register("cifar10")(_cifar)
DATA_SETS.register("cifar100")(_cifar)


@DATA_SETS.register("imagefolder")
def _imagefolder(cfg: DataConfig) -> DataSource:
    probe = probe_folder(cfg.data_dir)
    folders = imagefolder_splits(cfg.data_dir)
    grey = probe.grey if cfg.channels is None else cfg.channels == 1
    folders = {name: with_mode(folder, "L" if grey else "RGB") for name, folder in folders.items()}
    train, val, test = folders["train"], folders.get("val"), folders.get("test")
    arch = None
    if test is not None:
        roles = "train/: weights; "
        if val is not None:
            arch, roles = val, roles + "val/: arch split and validation; "
        else:
            roles += f"{cfg.arch_fraction:.0%} of train/: arch split and validation; "
        base_train: Dataset = train
        roles += "test/: test set"
    elif val is not None:
        base_train, test = train, val
        roles = (
            f"train/: weights, {cfg.arch_fraction:.0%} of it the arch split and validation; "
            "no test/ folder, so val/ is the test set"
        )
    else:
        kept, held = held_out(len(train), cfg.test_fraction, cfg.split_seed)
        base_train, test = Subset(train, kept), Subset(train, held)
        roles = (
            f"train/: weights, {cfg.arch_fraction:.0%} of it the arch split and validation; "
            f"no val/ or test/ folder, so {cfg.test_fraction:.0%} of train/ (data.test_fraction) "
            "is the test set"
        )
    return DataSource(
        train=TransformedDataset(base_train, None),
        test=TransformedDataset(test, None),
        arch=None if arch is None else TransformedDataset(arch, None),
        in_channels=1 if grey else 3,
        classes=tuple(train.classes),
        image_size=IMAGEFOLDER_SIZE,
        transform=partial(folder_transform, grey=grey),
        default_augment=lambda resolution: folder_default(probe.side or resolution, resolution),
        roles=roles,
        mean=GREY_MEAN if grey else IMAGENET_MEAN,
        std=GREY_STD if grey else IMAGENET_STD,
    )


@DATA_SETS.register("synthetic")
def _synthetic(cfg: DataConfig) -> DataSource:
    shape = {
        "channels": cfg.synthetic_channels,
        "size": cfg.synthetic_size,
        "num_classes": cfg.synthetic_classes,
        "seed": cfg.synthetic_seed,
    }
    train = make_synthetic(cfg.synthetic_train, train=True, **shape)
    test = make_synthetic(cfg.synthetic_test, train=False, **shape)
    classes = tuple(f"pattern{i}" for i in range(cfg.synthetic_classes))
    return _tensor_source("synthetic", train, test, classes)


def _folder_shape(cfg: DataConfig) -> tuple[int, int]:
    probe = probe_folder(cfg.data_dir)
    grey = probe.grey if cfg.channels is None else cfg.channels == 1
    return 1 if grey else 3, len(probe.classes)


# Shapes known without loading the data (an ImageFolder from a probe of a few files).
SHAPES: dict[str, Callable[[DataConfig], tuple[int, int]]] = {
    "fashion_mnist": lambda cfg: (1, fashion_mnist.NUM_CLASSES),
    "cifar10": lambda cfg: (3, 10),
    "cifar100": lambda cfg: (3, 100),
    "synthetic": lambda cfg: (cfg.synthetic_channels, cfg.synthetic_classes),
    "imagefolder": _folder_shape,
}


def data_shape(cfg: DataConfig) -> tuple[int, int]:
    """Input channels and number of classes of the data set of ``cfg``, which a space's stem
    and head follow (`SearchSpace.fitted`); a data set registered without a shape is loaded."""
    if cfg.name in SHAPES:
        return SHAPES[cfg.name](cfg)
    source = DATA_SETS.get(cfg.name)(cfg)
    return source.in_channels, len(source.classes)


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
    augment = resolve(cfg.augment, source.default_augment(size), source.augment_size or size)
    train_transform = source.transform(augment, resolution=size, train=True)
    eval_transform = source.transform(augment, resolution=size, train=False)
    arch_fraction = 0.0 if source.arch is not None else cfg.arch_fraction
    weight_indices, arch_indices = split_indices(
        len(source.train), arch_fraction, cfg.split_seed, cfg.limit_train
    )
    arch: Dataset[Sample] = Subset(source.train.with_transform(eval_transform), arch_indices)
    if source.arch is not None:
        arch = source.arch.with_transform(eval_transform)
    test: Dataset[Sample] = source.test.with_transform(eval_transform)
    if cfg.limit_test is not None:
        test = Subset(test, shuffled_indices(len(source.test), cfg.split_seed, cfg.limit_test))
    return DataBundle(
        weight=Subset(source.train.with_transform(train_transform), weight_indices),
        arch=arch,
        test=test,
        weight_plain=Subset(source.train.with_transform(eval_transform), weight_indices),
        in_channels=source.in_channels,
        image_size=source.image_size,
        resolution=size,
        batch_size=cfg.batch_size,
        num_workers=default_num_workers() if cfg.num_workers is None else cfg.num_workers,
        classes=source.classes,
        augment=augment,
        roles=source.roles,
        mean=source.mean,
        std=source.std,
    )
