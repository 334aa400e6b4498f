"""CIFAR and ImageFolder through torchvision, on tiny fake data written by the tests."""

import os

import pytest
import torch
import torchvision.datasets.cifar
from data_fakes import write_fake_cifar10, write_fake_imagefolder

from supernas.data import DataConfig, build_data, load_cifar, load_imagefolder
from supernas.errors import DataError


@pytest.fixture
def skip_md5(monkeypatch):
    # torchvision checks each CIFAR file against the md5 of the real release, which fake files
    # cannot match; only that check is replaced, by "the file exists".
    monkeypatch.setattr(
        torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path)
    )


def test_cifar10_loads_as_uint8_nchw(tmp_path, skip_md5):
    write_fake_cifar10(tmp_path)
    train, classes = load_cifar("cifar10", tmp_path, train=True)
    test, _ = load_cifar("cifar10", tmp_path, train=False)
    assert (len(train), len(test)) == (20, 4)
    assert classes == tuple(f"class{i}" for i in range(10))
    assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == torch.uint8
    assert [plane.unique().tolist() for plane in train.images[5]] == [[11], [75], [139]]
    assert [plane.unique().tolist() for plane in test.images[2]] == [[52], [116], [180]]
    assert train.labels.dtype == torch.int64


def test_cifar10_accepts_the_batches_folder_itself(tmp_path, skip_md5):
    write_fake_cifar10(tmp_path)
    test, _ = load_cifar("cifar10", tmp_path / "cifar-10-batches-py", train=False)
    assert len(test) == 4


def test_cifar10_bundle_through_build_data(tmp_path, skip_md5):
    write_fake_cifar10(tmp_path, per_batch=8)
    cfg = DataConfig(name="cifar10", data_dir=str(tmp_path), batch_size=4, num_workers=0)
    bundle = build_data(cfg, resolution=24)
    assert (bundle.in_channels, bundle.num_classes, bundle.image_size) == (3, 10, 32)
    assert (len(bundle.weight), len(bundle.arch), len(bundle.test)) == (32, 8, 8)
    images, labels = next(iter(bundle.loader(bundle.weight, train=True, seed=0)))
    assert images.shape == (4, 3, 24, 24) and images.dtype == torch.float32
    assert labels.dtype == torch.int64


def test_cifar10_with_wrong_md5_is_a_data_error(tmp_path):
    write_fake_cifar10(tmp_path)
    with pytest.raises(DataError, match="not found or corrupt"):
        load_cifar("cifar10", tmp_path, train=True)


def test_missing_root_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"data_dir {missing} .* does not exist"):
        load_cifar("cifar100", missing, train=True)


def test_cifar_without_data_dir_asks_for_it():
    with pytest.raises(DataError, match="needs data_dir"):
        build_data(DataConfig(name="cifar10"))


def test_imagefolder_bundle_gives_normalised_crops(tmp_path):
    write_fake_imagefolder(tmp_path, per_class=4)
    cfg = DataConfig(name="imagefolder", data_dir=str(tmp_path), batch_size=3, num_workers=0)
    bundle = build_data(cfg, resolution=16)
    assert (bundle.in_channels, bundle.num_classes, bundle.image_size) == (3, 3, 224)
    assert (len(bundle.weight), len(bundle.arch), len(bundle.test)) == (10, 2, 12)
    images, labels = next(iter(bundle.loader(bundle.weight, train=True, seed=0)))
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.float32
    image, label = bundle.test[0]  # class "cat": black, so every pixel is -mean / std
    assert label == 0
    expected = -torch.tensor([0.485, 0.456, 0.406]) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(image[:, 8, 8], expected, rtol=1e-5, atol=1e-5)


def test_imagefolder_without_val_or_test_holds_out_a_test_set_and_says_so(tmp_path):
    write_fake_imagefolder(tmp_path, per_class=10, splits=("train",))
    bundle = build_data(DataConfig(name="imagefolder", data_dir=str(tmp_path)), resolution=16)
    assert bundle.sizes() == {"weight": 22, "arch": 5, "test": 3}
    assert "10% of train/ (data.test_fraction) is the test set" in bundle.roles
    assert bundle.classes == ("cat", "dog", "eel")


def test_imagefolder_val_is_the_arch_split_when_test_exists(tmp_path):
    write_fake_imagefolder(tmp_path, per_class=5, splits=("train",))
    write_fake_imagefolder(tmp_path, per_class=2, splits=("val",))
    write_fake_imagefolder(tmp_path, per_class=3, splits=("test",))
    bundle = build_data(DataConfig(name="imagefolder", data_dir=str(tmp_path)), resolution=16)
    assert bundle.sizes() == {"weight": 15, "arch": 6, "test": 9}
    assert "val/: arch split and validation" in bundle.roles


def test_imagefolder_without_train_names_the_folder(tmp_path):
    write_fake_imagefolder(tmp_path, splits=("val",))
    with pytest.raises(DataError, match="has no train/ folder"):
        build_data(DataConfig(name="imagefolder", data_dir=str(tmp_path)))


def test_grey_imagefolder_loads_one_channel_unless_told(tmp_path):
    write_fake_imagefolder(tmp_path, splits=("train", "val"), mode="L")
    grey = build_data(DataConfig(name="imagefolder", data_dir=str(tmp_path)), resolution=16)
    assert grey.in_channels == 1 and grey.test[0][0].shape == (1, 16, 16)
    cfg = DataConfig(name="imagefolder", data_dir=str(tmp_path), channels=3)
    colour = build_data(cfg, resolution=16)
    assert colour.in_channels == 3 and colour.test[0][0].shape == (3, 16, 16)


def test_imagefolder_val_classes_must_match_train(tmp_path):
    write_fake_imagefolder(tmp_path, splits=("train",))
    write_fake_imagefolder(tmp_path, classes=("cat", "dog"), splits=("val",))
    with pytest.raises(DataError, match="differ"):
        build_data(DataConfig(name="imagefolder", data_dir=str(tmp_path)))


def test_imagefolder_with_empty_class_folders_is_a_data_error(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="ImageFolder"):
        load_imagefolder(tmp_path, split="train")
    assert load_imagefolder(tmp_path, split="test") is None


@pytest.mark.parametrize("workers", [0, 1])
def test_a_corrupt_image_met_mid_run_is_one_line_naming_the_file(tmp_path, workers):
    """Found when a batch reads it, in this process or in a loader worker (which wraps the
    error in a traceback): the CLI still prints one line that names the file."""
    from supernas.cli import _one_line

    write_fake_imagefolder(tmp_path, per_class=4)
    broken = tmp_path / "train" / "dog" / "2.png"
    broken.write_bytes(b"\x89PNG but not really")
    cfg = DataConfig(name="imagefolder", data_dir=str(tmp_path), batch_size=2, num_workers=workers)
    bundle = build_data(cfg, resolution=16)
    with pytest.raises(DataError, match="cannot read image") as raised:
        for split in (bundle.weight, bundle.arch):  # the split holds the file in one of them
            for _ in bundle.loader(split, train=True, seed=0):
                pass
    assert _one_line(raised.value).startswith(f"cannot read image {broken}: ")
