"""Augmentation policies: names, mappings and the data set's own `auto` resolve as documented."""

import pytest
import torch

from supernas.data import DataConfig, build_data
from supernas.data.augment import Augment, folder_default, resolve
from supernas.errors import DataError

FASHION = Augment(crop_padding=2, flip=True)


@pytest.mark.parametrize(
    ("policy", "size", "expected"),
    [
        ("auto", 28, FASHION),
        (True, 28, FASHION),
        ("none", 28, Augment()),
        (False, 28, Augment()),
        ("light", 32, Augment(crop_padding=4)),
        ("light", 8, Augment(crop_padding=1)),
        ("imagenet", 224, Augment(flip=True, scale=(0.08, 1.0))),
        ({"flip": True}, 28, Augment(flip=True)),
        ({"crop_padding": 3, "scale": [0.5, 1]}, 28, Augment(crop_padding=3, scale=(0.5, 1))),
    ],
)
def test_policy_resolves_to_its_transforms(policy, size, expected):
    assert resolve(policy, FASHION, size) == expected


def test_imagefolder_auto_is_light_on_small_images_and_never_flips():
    assert folder_default(32, 32) == Augment(crop_padding=4)
    assert folder_default(14, 24) == Augment(crop_padding=3), "pads an eighth of the resize"
    assert folder_default(224, 32) == Augment(scale=(0.08, 1.0)), "large images, small net"
    assert not folder_default(32, 32).flip and not folder_default(224, 224).flip


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("heavy", "is not one of auto, none, light, imagenet"),
        ({"rotate": 10}, "unknown transform 'rotate'"),
        ({"scale": [0, 1]}, "0 < low <= high <= 1"),
        ({"crop_padding": -1}, "is negative"),
        ({"flip": "yes"}, "is not true or false"),
        (3, "is not a policy name"),
    ],
)
def test_a_bad_policy_is_refused_with_the_data_config(policy, message):
    with pytest.raises(DataError, match=message):
        DataConfig(name="synthetic", augment=policy)


def test_the_bundle_names_its_policy_and_the_imagenet_policy_runs_on_tensor_sets():
    cfg = DataConfig(name="synthetic", augment="imagenet", num_workers=0, batch_size=8)
    bundle = build_data(cfg)
    assert bundle.augment.describe() == "random resized crop 0.08-1 of the area, horizontal flip"
    first, second = bundle.weight[0][0], bundle.weight[0][0]
    assert first.shape == bundle.arch[0][0].shape and not torch.equal(first, second)
    none = build_data(DataConfig(name="synthetic", num_workers=0, batch_size=8))
    assert none.augment.describe() == "none" and torch.equal(none.weight[0][0], none.weight[0][0])
