"""The in-memory dataset: the batched path returns exactly what the per-item path returns."""

import pytest
import torch
from torch.utils.data import Subset, default_collate

from supernas.data import ImageTensorDataset, TransformedDataset
from supernas.data.augment import Augment
from supernas.data.transforms import tensor_transform


def make_dataset():
    images = torch.arange(5 * 1 * 28 * 28).remainder(251).to(torch.uint8).view(5, 1, 28, 28)
    return ImageTensorDataset(images, torch.tensor([4, 3, 2, 1, 0]))


def test_batched_items_equal_single_items():
    dataset = make_dataset().with_transform(
        tensor_transform("fashion_mnist", Augment(), resolution=20, train=False)
    )
    subset = Subset(dataset, [4, 0, 2])
    batch = default_collate(subset.__getitems__([0, 1, 2]))
    single = default_collate([subset[0], subset[1], subset[2]])
    torch.testing.assert_close(batch, single)
    assert batch[1].tolist() == [0, 4, 2]
    assert batch[0].shape == (3, 1, 20, 20)


def test_with_transform_shares_storage():
    dataset = make_dataset()
    other = dataset.with_transform(lambda images: images.float())
    assert other.images.data_ptr() == dataset.images.data_ptr()
    assert dataset[0][0].dtype == torch.uint8 and other[0][0].dtype == torch.float32


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        ImageTensorDataset(torch.zeros(2, 28, 28, dtype=torch.uint8), torch.zeros(2))
    with pytest.raises(ValueError, match="labels"):
        ImageTensorDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3))


def test_transformed_dataset_applies_its_transform_to_images_only():
    base = [("a", 0), ("b", 1)]
    view = TransformedDataset(base, str.upper)
    assert (len(view), view[1]) == (2, ("B", 1))
    assert view.with_transform(None)[0] == ("a", 0)
