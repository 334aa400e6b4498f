"""Batch transforms: per-image randomness, and agreement with torchvision's reference ops."""

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2

from supernas.data.augment import Augment
from supernas.data.transforms import (
    NormalizeBatch,
    RandomCropBatch,
    RandomFlipBatch,
    RandomResizedCropBatch,
    ResizeBatch,
    folder_transform,
    tensor_transform,
)


def random_images(batch=64, channels=2, size=10):
    generator = torch.Generator().manual_seed(0)
    shape = (batch, channels, size, size)
    return torch.randint(1, 256, shape, dtype=torch.uint8, generator=generator)


def test_random_crop_is_a_zero_padded_shift_drawn_per_image():
    torch.manual_seed(0)
    images = random_images()
    cropped = RandomCropBatch(padding=2)(images)
    assert cropped.shape == images.shape and cropped.dtype == torch.uint8
    padded = F.pad(images, [2] * 4)
    shifts = []
    for index in range(len(images)):
        matches = [
            (top, left)
            for top in range(5)
            for left in range(5)
            if torch.equal(cropped[index], padded[index, :, top : top + 10, left : left + 10])
        ]
        assert len(matches) == 1
        shifts.append(matches[0])
    assert len(set(shifts)) > 10  # 25 possible shifts, 64 draws


def test_random_flip_mirrors_some_images_and_keeps_the_others():
    torch.manual_seed(0)
    images = random_images()
    flipped = RandomFlipBatch()(images)
    mirrored = [
        torch.equal(out, image.flip(-1)) for out, image in zip(flipped, images, strict=True)
    ]
    kept = [torch.equal(out, image) for out, image in zip(flipped, images, strict=True)]
    assert all(m != k for m, k in zip(mirrored, kept, strict=True))
    assert 10 < sum(mirrored) < 54


def test_normalize_matches_torchvision():
    images = random_images(channels=3)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    reference = v2.Normalize(mean, std)(v2.ToDtype(torch.float32, scale=True)(images))
    torch.testing.assert_close(NormalizeBatch(mean, std)(images), reference)


def test_resize_matches_torchvision_and_skips_same_size():
    images = torch.rand(4, 1, 28, 28)
    reference = v2.Resize((24, 24), antialias=True)(images)
    torch.testing.assert_close(ResizeBatch(24)(images), reference, rtol=1e-5, atol=1e-5)
    assert ResizeBatch(28)(images) is images


def test_eval_transform_is_deterministic_and_train_transform_is_not():
    images = random_images(channels=1, size=28)
    augment = Augment(crop_padding=2, flip=True)
    evaluate = tensor_transform("fashion_mnist", augment, resolution=24, train=False)
    train = tensor_transform("fashion_mnist", augment, resolution=24, train=True)
    assert evaluate(images).shape == (64, 1, 24, 24)
    assert torch.equal(evaluate(images), evaluate(images))
    torch.manual_seed(0)
    first = train(images)
    assert first.shape == (64, 1, 24, 24) and first.dtype == torch.float32
    assert not torch.equal(first, train(images))


@pytest.mark.parametrize(
    "augment", [Augment(), Augment(crop_padding=4, flip=True), Augment(scale=(0.3, 1.0))]
)
@pytest.mark.parametrize("train", [True, False])
def test_folder_transform_gives_square_normalised_tensors(augment, train):
    image = Image.new("RGB", (50, 37), color=(255, 255, 255))
    out = folder_transform(augment, resolution=32, train=train, grey=False)(image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    expected = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(out[:, 16, 16], expected, rtol=1e-5, atol=1e-5)


def test_grey_folder_transform_gives_one_channel():
    image = Image.new("L", (40, 40), color=255)
    out = folder_transform(Augment(), resolution=20, train=False, grey=True)(image)
    assert out.shape == (1, 20, 20)


def test_random_resized_crop_draws_a_box_per_image_inside_it():
    torch.manual_seed(0)
    # A horizontal ramp: a crop's mean column value tells where its box lies.
    ramp = torch.linspace(-1, 1, 32).expand(64, 1, 32, 32).contiguous()
    out = RandomResizedCropBatch((0.1, 0.3))(ramp)
    assert out.shape == ramp.shape
    assert out.min() >= -1 and out.max() <= 1, "boxes stay inside the image"
    spans = out[:, 0, 0, -1] - out[:, 0, 0, 0]  # a crop of a narrow box spans a short ramp
    assert (spans < 1.3).all() and (spans > 0).all()
    assert len(set(out[:, 0, 0, 0].round(decimals=3).tolist())) > 30, "one box per image"
