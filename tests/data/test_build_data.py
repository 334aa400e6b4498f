"""DataConfig validation, build_data bundles and their loaders."""

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
from data_fakes import write_fake_fmnist

from supernas.data import DataConfig, build_data
from supernas.data import build as build_module
from supernas.data.fashion_mnist import FILES
from supernas.errors import DataError


def synthetic(**overrides) -> DataConfig:
    fields = {"name": "synthetic", "synthetic_train": 100, "synthetic_test": 40}
    return DataConfig(**{**fields, "batch_size": 8, "num_workers": 0, **overrides})


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(DataError) as caught:
        DataConfig(name="mnist")
    for name in ("cifar10", "cifar100", "fashion_mnist", "imagefolder", "synthetic"):
        assert name in str(caught.value)


@pytest.mark.parametrize("value", [0, -5, 2.5, True, "100"])
def test_limit_train_must_be_a_positive_integer(value):
    with pytest.raises(DataError, match="data.limit_train must be a positive integer"):
        DataConfig(limit_train=value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("batch_size", 0, "batch_size must be a positive integer"),
        ("limit_test", 0, "limit_test must be a positive integer"),
        ("num_workers", -1, "num_workers must be an integer >= 0"),
        ("arch_fraction", 1.0, r"arch_fraction must be in \[0, 1\)"),
        ("arch_fraction", "0.2", "arch_fraction must be a number"),
    ],
)
def test_other_bad_settings_are_refused(field, value, message):
    with pytest.raises(DataError, match=message):
        DataConfig(**{field: value})


def test_synthetic_bundle_sizes_and_metadata():
    cfg = synthetic(synthetic_channels=3, synthetic_size=12, synthetic_classes=4, limit_test=10)
    bundle = build_data(cfg)
    assert (len(bundle.weight), len(bundle.arch), len(bundle.test)) == (80, 20, 10)
    assert (bundle.in_channels, bundle.num_classes, bundle.image_size) == (3, 4, 12)
    assert bundle.resolution == 12


def test_limit_train_caps_the_split_total():
    bundle = build_data(synthetic(limit_train=50))
    assert (len(bundle.weight), len(bundle.arch)) == (40, 10)


@pytest.fixture
def fake_fmnist(tmp_path):
    write_fake_fmnist(tmp_path, n_train=40, n_test=10)
    return str(tmp_path)


def test_weight_split_is_augmented_and_arch_split_is_not(fake_fmnist):
    bundle = build_data(DataConfig(data_dir=fake_fmnist, num_workers=0))
    torch.manual_seed(0)
    assert any(not torch.equal(bundle.weight[0][0], bundle.weight[0][0]) for _ in range(10))
    assert all(torch.equal(bundle.arch[0][0], bundle.arch[0][0]) for _ in range(10))
    plain = build_data(DataConfig(data_dir=fake_fmnist, num_workers=0, augment=False))
    assert torch.equal(plain.weight[0][0], plain.weight[0][0])


def test_weight_plain_is_the_weight_split_as_at_inference(fake_fmnist):
    """int8 calibration reads it: the weight split's images and labels, never augmented."""
    bundle = build_data(DataConfig(data_dir=fake_fmnist, num_workers=0))
    plain = build_data(DataConfig(data_dir=fake_fmnist, num_workers=0, augment=False))
    assert len(bundle.weight_plain) == len(bundle.weight)
    for i in range(len(bundle.weight)):
        image, label = bundle.weight_plain[i]
        assert label == bundle.weight[i][1]
        assert torch.equal(image, plain.weight[i][0])


def test_loader_batches_have_the_requested_resolution_and_dtypes(fake_fmnist):
    bundle = build_data(DataConfig(data_dir=fake_fmnist, batch_size=6, num_workers=0), 24)
    batches = list(bundle.loader(bundle.weight, train=True, seed=0))
    assert [len(labels) for _, labels in batches] == [6] * 5  # 32 images, last 2 dropped
    images, labels = batches[0]
    assert images.shape == (6, 1, 24, 24) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    evaluation = list(bundle.loader(bundle.test, train=False, seed=0))
    assert [len(labels) for _, labels in evaluation] == [6, 4]  # nothing dropped


def test_seeded_shuffle_repeats_for_a_seed_and_differs_across_seeds():
    bundle = build_data(synthetic())

    def label_order(seed):
        return torch.cat([labels for _, labels in bundle.loader(bundle.weight, True, seed=seed)])

    assert torch.equal(label_order(3), label_order(3))
    assert not torch.equal(label_order(3), label_order(4))


def test_training_loader_smaller_than_a_batch_is_refused():
    bundle = build_data(synthetic(batch_size=64, limit_train=50))
    with pytest.raises(DataError, match="fewer than batch_size 64"):
        bundle.loader(bundle.weight, train=True, seed=0)


def test_worker_process_loader_gives_the_same_batches_as_the_main_process():
    main = build_data(synthetic(augment=False))
    worker = build_data(synthetic(augment=False, num_workers=1))
    for (images_a, labels_a), (images_b, labels_b) in zip(
        main.loader(main.weight, True, seed=1),
        worker.loader(worker.weight, True, seed=1),
        strict=True,
    ):
        torch.testing.assert_close(images_a, images_b)
        assert torch.equal(labels_a, labels_b)


def test_distributed_loader_uses_a_distributed_sampler(tmp_path):
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        bundle = build_data(synthetic())
        loader = bundle.loader(bundle.weight, train=True, seed=0, distributed=True)
        assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)
        assert len(loader) == 80 // 8
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(("cpus", "workers"), [(1, 0), (2, 0), (3, 2), (16, 4)])
def test_default_worker_count_follows_the_cores(monkeypatch, cpus, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert build_module.default_num_workers() == workers
    assert build_data(synthetic(num_workers=None)).num_workers == workers


def test_resolution_must_be_positive():
    with pytest.raises(DataError, match="resolution must be a positive integer"):
        build_data(synthetic(), resolution=0)


def test_corrupt_fmnist_file_surfaces_as_data_error(fake_fmnist):
    path = os.path.join(fake_fmnist, FILES["test"][0])
    with open(path, "wb") as file:
        file.write(np.zeros(10, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="corrupt idx file"):
        build_data(DataConfig(data_dir=fake_fmnist))
