"""The two dataset classes every data set ends up in: an in-memory image tensor and a view
that applies a per-sample transform to another data set.

Both offer `with_transform`, so one training set can serve the augmented weight split and the
plain arch split without being loaded twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

Sample = tuple[Tensor, int]
BatchTransform = Callable[[Tensor], Tensor]


class ImageTensorDataset(Dataset[Sample]):
    """Images held as one uint8 tensor, with the transform applied to whole batches.

    A small set (Fashion-MNIST is 47 MB) fits in memory, which makes an item a view and a batch
    one gather. The DataLoader calls `__getitems__` when a data set has it (torch's `Subset`
    passes it through), so augmentation runs once per batch in vectorised tensor ops instead
    of once per image; that is what lets 2 CPU cores keep up without worker processes.

    Args:
        images: uint8 tensor (N, C, H, W).
        labels: int64 tensor (N,).
        transform: Called on a uint8 batch (B, C, H, W), returns the float batch the model
            sees. Random augmentations must draw their parameters per row (see
            `supernas.data.transforms`). None yields the raw uint8 images.
    """

    def __init__(
        self, images: Tensor, labels: Tensor, transform: BatchTransform | None = None
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if labels.shape != (images.shape[0],):
            raise ValueError(f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.long()
        self.transform = transform

    def with_transform(self, transform: BatchTransform | None) -> ImageTensorDataset:
        """Returns a dataset sharing these tensors (no copy) with another transform."""
        return ImageTensorDataset(self.images, self.labels, transform)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> Sample:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image.unsqueeze(0))[0]
        return image, int(self.labels[index])

    def __getitems__(self, indices: list[int]) -> list[Sample]:
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.images[index]
        if self.transform is not None:
            images = self.transform(images)
        return list(zip(images.unbind(0), self.labels[index].tolist(), strict=True))


class TransformedDataset(Dataset[Sample]):
    """Applies a per-sample transform to the image of another data set's (image, label) pairs.

    Used for sets that decode files one by one (ImageFolder), where batching buys nothing.
    """

    def __init__(
        self, base: Dataset[tuple[Any, int]], transform: Callable[[Any], Tensor] | None
    ) -> None:
        self.base = base
        self.transform = transform

    def with_transform(self, transform: Callable[[Any], Tensor] | None) -> TransformedDataset:
        """Returns a view of the same base data set with another transform."""
        return TransformedDataset(self.base, transform)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Sample:
        image, label = self.base[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, label
