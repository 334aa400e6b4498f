"""The synthetic set: deterministic per seed, balanced, and learnable."""

import pytest
import torch

from supernas.data import make_synthetic
from supernas.errors import DataError


def test_same_seed_gives_identical_data_and_another_seed_does_not():
    first = make_synthetic(64, channels=3, size=8, num_classes=4, seed=7)
    again = make_synthetic(64, channels=3, size=8, num_classes=4, seed=7)
    other = make_synthetic(64, channels=3, size=8, num_classes=4, seed=8)
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    assert not torch.equal(first.images, other.images)


@pytest.mark.parametrize(("channels", "size", "num_classes", "n"), [(1, 28, 10, 50), (3, 5, 3, 7)])
def test_shape_dtype_and_balanced_labels(channels, size, num_classes, n):
    data = make_synthetic(n, channels=channels, size=size, num_classes=num_classes)
    assert data.images.shape == (n, channels, size, size) and data.images.dtype == torch.uint8
    counts = torch.bincount(data.labels, minlength=num_classes)
    assert counts.max() - counts.min() <= 1


def test_train_and_test_differ_but_share_class_patterns():
    train = make_synthetic(1000, size=12, seed=3, train=True)
    test = make_synthetic(500, size=12, seed=3, train=False)
    assert not torch.equal(train.images[:500], test.images)
    # Nearest class mean, fitted on train, classifies test: the classes are learnable.
    pixels = train.images.flatten(1).float()
    means = torch.stack([pixels[train.labels == c].mean(0) for c in range(10)])
    predicted = torch.cdist(test.images.flatten(1).float(), means).argmin(1)
    assert (predicted == test.labels).float().mean() > 0.95


@pytest.mark.parametrize("field", ["n", "channels", "size", "num_classes"])
def test_non_positive_sizes_are_refused(field):
    kwargs = {"n": 4, "channels": 1, "size": 4, "num_classes": 2, field: 0}
    n = kwargs.pop("n")
    with pytest.raises(DataError, match=f"synthetic {field} must be an integer"):
        make_synthetic(n, **kwargs)
