"""The bundle's training entry points on datasets and arrays: ``train_dataset`` and
``train_data``, as Poutyne's ``ModelBundle`` offers them.

``BundleData`` is a part of :class:`~epochal.ModelBundle` (a mixin): each builds the loaders
:meth:`~epochal.Model.fit_dataset` would build (the training set shuffled by a
``DataLoader(shuffle=True)`` from PyTorch's global random state, the validation set in order)
and hands them to :meth:`~epochal.ModelBundle.train`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from epochal._arrays import check_positive, ordered_loader, validation_pair
from epochal.model import Model

__all__ = ["BundleData"]


class BundleData:
    """``train_dataset`` and ``train_data`` of :class:`~epochal.ModelBundle`."""

    # Set by ModelBundle.__init__ and ModelBundle.train.
    model: Model
    train: Callable[..., list[dict[str, Any]]]

    def train_dataset(
        self,
        train_dataset: torch.utils.data.Dataset[Any],
        valid_dataset: torch.utils.data.Dataset[Any] | None = None,
        *,
        batch_size: int = 32,
        num_workers: int = 0,
        collate_fn: Callable[..., Any] | None = None,
        dataloader_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """:meth:`train` on datasets, with the loaders :meth:`Model.fit_dataset` builds (as
        Poutyne's bundle does).

        The training set is shuffled each epoch by a ``DataLoader(shuffle=True)``, which
        draws its order from PyTorch's global random state, as in Poutyne: ``seed`` (42 by
        default) therefore fixes the order of a fresh training, and a resume, which restores
        the global random states of its commit (and, mid-epoch, those of the epoch's start),
        draws the same orders as an uninterrupted training. The validation set keeps its
        order.

        Args:
            train_dataset: Training ``(x, y)`` examples.
            valid_dataset: Validation examples, or None.
            batch_size: Examples per batch.
            num_workers: ``DataLoader`` worker processes.
            collate_fn: ``DataLoader``'s ``collate_fn``, or None for PyTorch's default.
            dataloader_kwargs: Extra ``DataLoader`` keywords (they win over ours; validation
                never shuffles). A ``generator`` given here is saved and restored with the
                bundle's state.
            **kwargs: As :meth:`train` (``epochs``, ``callbacks``, ``seed``, ``verbose``...).

        Returns:
            As :meth:`train`.

        Raises:
            ConfigurationError: ``batch_size`` is not a positive integer.
        """
        check_positive("batch_size", batch_size, allow_none=False)
        options: dict[str, Any] = {"batch_size": batch_size, "num_workers": num_workers}
        if collate_fn is not None:
            options["collate_fn"] = collate_fn
        train = torch.utils.data.DataLoader(
            train_dataset, **{**options, "shuffle": True, **dict(dataloader_kwargs or {})}
        )
        valid = None
        if valid_dataset is not None:
            valid = ordered_loader(
                valid_dataset, batch_size, num_workers, collate_fn, dataloader_kwargs
            )
        return self.train(train, valid, **kwargs)

    def train_data(
        self,
        x: Any,
        y: Any,
        validation_data: tuple[Any, Any] | None = None,
        *,
        batch_size: int = 32,
        dataloader_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """:meth:`train` on tensors or NumPy arrays (floating ones cast to the network's
        floating dtype, as :meth:`Model.fit` does), shuffled as :meth:`train_dataset` says.

        Raises:
            ConfigurationError: ``validation_data`` is not an ``(x_val, y_val)`` pair.
            TypeError: An array is a Python list of numbers (the message says what to pass).
        """
        valid = None if validation_data is None else self.model._array_dataset(
            *validation_pair(validation_data, owner="ModelBundle.train_data"),
            names=("x_val", "y_val"))
        return self.train_dataset(self.model._array_dataset(x, y), valid,
                                  batch_size=batch_size, dataloader_kwargs=dataloader_kwargs,
                                  **kwargs)
