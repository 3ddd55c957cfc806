"""The seed tutorial's data helpers: a seeded train/valid split and the three loaders."""

from __future__ import annotations

import math
from typing import Any, TypeVar

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from epochal.exceptions import ConfigurationError

__all__ = ["make_loaders", "train_valid_split"]

T = TypeVar("T")


def train_valid_split(
    dataset: Dataset[T], train_fraction: float = 0.8, seed: int = 42
) -> tuple[Subset[T], Subset[T]]:
    """Split a dataset into training and validation subsets by a seeded shuffle.

    The indices are ``torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))``;
    the first ``floor(train_fraction * len(dataset))`` go to training, the rest to validation.
    The global RNG is not touched.

    Args:
        dataset: Any sized map-style dataset.
        train_fraction: Share of the examples for training, strictly between 0 and 1.
        seed: Seed of the private generator; the same seed gives the same split.

    Returns:
        ``(train_subset, valid_subset)``, disjoint, together covering the dataset.

    Raises:
        ConfigurationError: ``train_fraction`` is not in (0, 1), or the dataset is too small
            for both parts to be non-empty.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ConfigurationError(
            f"train_fraction must be strictly between 0 and 1, got {train_fraction}."
        )
    size = len(dataset)  # type: ignore[arg-type]
    train_size = math.floor(train_fraction * size)
    if train_size == 0 or train_size == size:
        raise ConfigurationError(
            f"A dataset of {size} examples split at train_fraction={train_fraction} leaves one "
            "part empty; use a larger dataset or another fraction."
        )
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, order[:train_size]), Subset(dataset, order[train_size:])


def make_loaders(
    train: Dataset[Any],
    valid: Dataset[Any],
    test: Dataset[Any] | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    generator: torch.Generator | None = None,
) -> tuple[DataLoader[Any], DataLoader[Any], DataLoader[Any] | None]:
    """Wrap the three datasets in ``DataLoader`` objects; only the training one shuffles.

    Args:
        train: Training dataset (shuffled each epoch).
        valid: Validation dataset (fixed order).
        test: Test dataset (fixed order), or None.
        batch_size: Examples per batch, for all three loaders.
        num_workers: Worker processes per loader (0 loads in the main process).
        generator: RNG for the training shuffle; None uses the global RNG.

    Shapes:
        with MNIST and ``ToTensor``: ``x: (batch, 1, 28, 28)``, ``y: (batch,)`` int64.

    Returns:
        ``(train_loader, valid_loader, test_loader)``; ``test_loader`` is None without ``test``.
    """
    train_loader: DataLoader[Any] = DataLoader(
        train, batch_size=batch_size, shuffle=True, num_workers=num_workers, generator=generator
    )
    valid_loader: DataLoader[Any] = DataLoader(
        valid, batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    test_loader: DataLoader[Any] | None = None
    if test is not None:
        test_loader = DataLoader(
            test, batch_size=batch_size, shuffle=False, num_workers=num_workers
        )
    return train_loader, valid_loader, test_loader
