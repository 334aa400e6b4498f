"""Standard augmentation and normalisation per data set.

In-memory sets (Fashion-MNIST, CIFAR, synthetic) get batch transforms: modules that take a
uint8 batch (B, C, H, W) and draw their random parameters per row, so one call augments a
whole batch. torchvision's v2 transforms accept batches too, but draw one crop and one flip for
the batch; applied image by image they cost about 125 us each on this project's 2-core
machines, which is several seconds per Fashion-MNIST epoch. ImageFolder images are decoded
one by one anyway and use torchvision's per-sample v2 transforms on PIL images.

Every transform takes a `resolution`: architectures are searched at a size other than the
native one (24 px on 28-px Fashion-MNIST), and resizing here keeps the model unaware of it.
Randomness comes from torch's global generator, which the DataLoader seeds in each worker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms import v2

from supernas.data.augment import Augment


@dataclass(frozen=True)
class TensorRecipe:
    """Normalisation statistics and the ``auto`` augmentation of one in-memory data set."""

    mean: tuple[float, ...]  # per channel, on the [0, 1] scale; one value serves any channels
    std: tuple[float, ...]
    augment: Augment


TENSOR_RECIPES: dict[str, TensorRecipe] = {
    # Statistics of the training sets; CIFAR's std is the per-pixel one (0.247, ...), not the
    # widely copied (0.2023, ...).
    "fashion_mnist": TensorRecipe((0.2860,), (0.3530,), Augment(crop_padding=2, flip=True)),
    "cifar10": TensorRecipe(
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), Augment(crop_padding=4, flip=True)
    ),
    "cifar100": TensorRecipe(
        (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), Augment(crop_padding=4, flip=True)
    ),
    # Synthetic patterns are not augmented: tests want each image to stay what it was drawn as.
    "synthetic": TensorRecipe((0.5,), (0.25,), Augment()),
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Grey ImageFolders: the ImageNet statistics of the luminance ITU-R 601 gives grey pixels.
GREY_MEAN = (0.299 * 0.485 + 0.587 * 0.456 + 0.114 * 0.406,)
GREY_STD = (0.299 * 0.229 + 0.587 * 0.224 + 0.114 * 0.225,)


class RandomCropBatch(nn.Module):
    """Zero-pads each image by `padding` and crops it back to size at a random offset per image.

    Example: padding 2 on 28 x 28 shifts each image by up to 2 px in each direction.
    """

    def __init__(self, padding: int) -> None:
        super().__init__()
        self.padding = padding

    def forward(self, images: Tensor) -> Tensor:
        batch, channels, height, width = images.shape
        padded = F.pad(images, [self.padding] * 4)
        padded_height, padded_width = height + 2 * self.padding, width + 2 * self.padding
        top = torch.randint(0, 2 * self.padding + 1, (batch, 1, 1, 1))
        left = torch.randint(0, 2 * self.padding + 1, (batch, 1, 1, 1))
        # One gather of flat indices into the padded batch; about twice as fast as advanced
        # indexing with per-image row and column tensors.
        planes = torch.arange(batch * channels).view(batch, channels, 1, 1)
        corner = (planes * padded_height + top) * padded_width + left
        pixel = torch.arange(height).view(-1, 1) * padded_width + torch.arange(width)
        return padded.take(corner + pixel)

    def extra_repr(self) -> str:
        return f"padding={self.padding}"


class RandomFlipBatch(nn.Module):
    """Mirrors each image left-right with probability 0.5, independently per image."""

    def forward(self, images: Tensor) -> Tensor:
        flip = torch.rand(images.shape[0]) < 0.5
        return torch.where(flip[:, None, None, None], images.flip(-1), images)


class RandomResizedCropBatch(nn.Module):
    """Crops a random box of ``scale`` of the area and aspect ratio in [3/4, 4/3] from each
    float image and resizes it back to the image's size (bilinear), independently per image.

    One ``affine_grid`` + ``grid_sample`` call for the whole batch; torchvision's
    RandomResizedCrop draws one box per call.
    """

    def __init__(self, scale: tuple[float, float]) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, images: Tensor) -> Tensor:
        batch = images.shape[0]
        area = torch.empty(batch).uniform_(*self.scale)
        log_ratio = torch.empty(batch).uniform_(math.log(3 / 4), math.log(4 / 3))
        ratio = log_ratio.exp()
        width = (area * ratio).sqrt().clamp(max=1.0)  # fractions of the side
        height = (area / ratio).sqrt().clamp(max=1.0)
        # Box centres in [-1, 1] coordinates, drawn so that the box stays inside the image.
        centre_x = (torch.rand(batch) * 2 - 1) * (1 - width)
        centre_y = (torch.rand(batch) * 2 - 1) * (1 - height)
        theta = torch.zeros(batch, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2] = width, centre_x
        theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class NormalizeBatch(nn.Module):
    """Turns uint8 pixels into floats with the data set's mean and std: (x / 255 - m) / s."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        std_tensor = torch.tensor(std).view(-1, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std_tensor), persistent=False)
        self.register_buffer(
            "shift", torch.tensor(mean).view(-1, 1, 1) / std_tensor, persistent=False
        )

    def forward(self, images: Tensor) -> Tensor:
        return images.float() * self.scale - self.shift


class ResizeBatch(nn.Module):
    """Resizes float images to a square side length, antialiased when shrinking."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, images: Tensor) -> Tensor:
        if images.shape[-2:] == (self.size, self.size):
            return images
        return F.interpolate(
            images,
            size=(self.size, self.size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )

    def extra_repr(self) -> str:
        return f"size={self.size}"


class CenterCropBatch(nn.Module):
    """Keeps the central ``size`` x ``size`` pixels (torchvision's rounding of the offset)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, images: Tensor) -> Tensor:
        top = round((images.shape[-2] - self.size) / 2)
        left = round((images.shape[-1] - self.size) / 2)
        return images[..., top : top + self.size, left : left + self.size]

    def extra_repr(self) -> str:
        return f"size={self.size}"


def tensor_transform(name: str, augment: Augment, *, resolution: int, train: bool) -> nn.Sequential:
    """Builds the batch transform of an in-memory data set.

    Args:
        name: A key of `TENSOR_RECIPES`.
        augment: The run's random transforms of the weight split.
        resolution: Side length of the output images.
        train: Applies ``augment``; evaluation only normalises and resizes.
    """
    recipe = TENSOR_RECIPES[name]
    normalize = NormalizeBatch(recipe.mean, recipe.std)
    if not train:  # the evaluation view that goes with the training crops
        size = round(resolution / augment.eval_crop_ratio)
        return nn.Sequential(normalize, ResizeBatch(size), CenterCropBatch(resolution))
    steps: list[nn.Module] = []
    if augment.crop_padding > 0:
        steps.append(RandomCropBatch(augment.crop_padding))
    if augment.flip:
        steps.append(RandomFlipBatch())
    steps.append(normalize)
    if augment.scale is not None:
        steps.append(RandomResizedCropBatch(augment.scale))
    return nn.Sequential(*steps, ResizeBatch(resolution))


def folder_transform(augment: Augment, *, resolution: int, train: bool, grey: bool) -> v2.Compose:
    """Builds the per-image transform of PIL images from an ImageFolder.

    Evaluation resizes the shorter side to ``resolution / augment.eval_crop_ratio`` and
    centre-crops ``resolution`` (0.875 after resized crops: the ImageNet protocol behind the
    papers' top-1; 1.0 otherwise: the whole image). Training with a resized crop draws its box
    from the whole image; otherwise it starts from the evaluation view and pads, crops and
    flips it as ``augment`` says.
    """
    mean, std = (GREY_MEAN, GREY_STD) if grey else (IMAGENET_MEAN, IMAGENET_STD)
    resize = round(resolution / augment.eval_crop_ratio)
    if not train:
        return eval_view(resize, resolution, mean, std)
    if augment.scale is not None:
        geometry: list = [v2.RandomResizedCrop(resolution, scale=augment.scale, antialias=True)]
    else:
        geometry = [v2.Resize(resize, antialias=True), v2.CenterCrop(resolution)]
    if augment.crop_padding:
        geometry.append(v2.RandomCrop(resolution, padding=augment.crop_padding))
    if augment.flip:
        geometry.append(v2.RandomHorizontalFlip())
    return v2.Compose([*geometry, *_to_normalised(mean, std)])


def eval_view(resize: int, crop: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """A PIL image as a model evaluates it: the shorter side resized to ``resize``, the centre
    ``crop`` x ``crop`` kept, scaled to [0, 1] and normalised. `supernas.predict` builds it from
    a model's preprocessing contract."""
    return v2.Compose(
        [v2.Resize(resize, antialias=True), v2.CenterCrop(crop), *_to_normalised(mean, std)]
    )


def _to_normalised(mean: Sequence[float], std: Sequence[float]) -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
