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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms import v2


@dataclass(frozen=True)
class TensorRecipe:
    """Normalisation statistics and training augmentation of one in-memory data set."""

    mean: tuple[float, ...]  # per channel, on the [0, 1] scale; one value serves any channels
    std: tuple[float, ...]
    crop_padding: int  # zero padding before the random crop back to size; 0 turns it off
    flip: bool  # random horizontal flip


TENSOR_RECIPES: dict[str, TensorRecipe] = {
    # Statistics of the training sets; CIFAR's std is the per-pixel one (0.247, ...), not the
    # widely copied (0.2023, ...).
    "fashion_mnist": TensorRecipe((0.2860,), (0.3530,), crop_padding=2, flip=True),
    "cifar10": TensorRecipe(
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), crop_padding=4, flip=True
    ),
    "cifar100": TensorRecipe(
        (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), crop_padding=4, flip=True
    ),
    # Synthetic patterns are not augmented: tests want each image to stay what it was drawn as.
    "synthetic": TensorRecipe((0.5,), (0.25,), crop_padding=0, flip=False),
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_CROP_RATIO = 0.875  # evaluation resizes to size / 0.875, then centre-crops: 256 -> 224


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


def tensor_transform(name: str, *, train: bool, resolution: int) -> nn.Sequential:
    """Builds the batch transform of an in-memory data set.

    Args:
        name: A key of `TENSOR_RECIPES`.
        train: Adds the recipe's random crop and flip; evaluation only normalises and resizes.
        resolution: Side length of the output images.
    """
    recipe = TENSOR_RECIPES[name]
    steps: list[nn.Module] = []
    if train and recipe.crop_padding > 0:
        steps.append(RandomCropBatch(recipe.crop_padding))
    if train and recipe.flip:
        steps.append(RandomFlipBatch())
    steps += [NormalizeBatch(recipe.mean, recipe.std), ResizeBatch(resolution)]
    return nn.Sequential(*steps)


def folder_transform(*, train: bool, resolution: int) -> v2.Compose:
    """Builds the per-image ImageNet transform for PIL images from an ImageFolder.

    Training uses RandomResizedCrop and a flip; evaluation resizes to resolution / 0.875 and
    centre-crops, the protocol behind every ImageNet top-1 number the papers report.
    """
    if train:
        geometry = [v2.RandomResizedCrop(resolution, antialias=True), v2.RandomHorizontalFlip()]
    else:
        resize = round(resolution / IMAGENET_CROP_RATIO)
        geometry = [v2.Resize(resize, antialias=True), v2.CenterCrop(resolution)]
    return v2.Compose(
        [
            *geometry,
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
