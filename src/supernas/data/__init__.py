"""Data sets for search and training: Fashion-MNIST, CIFAR-10/100, ImageFolder, synthetic.

`build_data(DataConfig(...))` returns a `DataBundle` with the weight, arch and test sets of a
run; `bundle.loader(...)` wraps one of them in a DataLoader.
"""

from supernas.data.build import (
    DATA_SETS,
    DataBundle,
    DataConfig,
    DataSource,
    build_data,
    data_shape,
)
from supernas.data.datasets import ImageTensorDataset, TransformedDataset
from supernas.data.fashion_mnist import load_fashion_mnist, read_idx
from supernas.data.splits import shuffled_indices, split_indices
from supernas.data.synthetic import make_synthetic
from supernas.data.torchvision_sets import load_cifar, load_imagefolder

__all__ = [
    "DATA_SETS",
    "DataBundle",
    "DataConfig",
    "DataSource",
    "ImageTensorDataset",
    "TransformedDataset",
    "build_data",
    "data_shape",
    "load_cifar",
    "load_fashion_mnist",
    "load_imagefolder",
    "make_synthetic",
    "read_idx",
    "shuffled_indices",
    "split_indices",
]
