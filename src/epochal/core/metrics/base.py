"""Poutyne's metric object protocol: :class:`Metric` and :class:`DecomposableMetric`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from epochal.exceptions import ConfigurationError

__all__ = ["DecomposableMetric", "Metric", "batch_size_of"]


class Metric(ABC, nn.Module):
    """Base class of a metric that accumulates over batches and computes at the end of a pass.

    The contract is Poutyne's:

    * as a **batch metric**, ``forward(y_pred, y_true)`` updates the state and returns the
      batch's value (logged per step); the pass's value is ``compute()`` at its end;
    * as an **epoch metric**, ``update(y_pred, y_true)`` updates the state and ``compute()``
      gives the pass's value;
    * ``reset()`` forgets the state; the training loop calls it at the start of every pass.

    Subclasses implement ``compute`` and ``reset``, and ``forward`` and/or ``update``
    depending on how the metric is used. Log names come from an attribute ``__name__`` (a str,
    or a list of str for a metric returning several values) or else from the class name in
    snake_case.
    """

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        """Update the state with one batch and return the batch's value.

        Raises:
            NotImplementedError: The subclass does not support use as a batch metric.
        """
        raise NotImplementedError(
            f"{type(self).__name__}.forward is not implemented: this metric cannot be used as "
            "a batch metric; pass it in epoch_metrics instead."
        )

    def update(self, y_pred: Any, y_true: Any) -> None:
        """Update the state with one batch.

        Raises:
            NotImplementedError: The subclass does not support use as an epoch metric.
        """
        raise NotImplementedError(
            f"{type(self).__name__}.update is not implemented: this metric cannot be used as "
            "an epoch metric; pass it in batch_metrics instead."
        )

    @abstractmethod
    def compute(self) -> Any:
        """The value over everything added since the last reset; does not change the state."""

    @abstractmethod
    def reset(self) -> None:
        """Forget the state, so that a new pass starts from nothing."""


def batch_size_of(y_pred: Any, y_true: Any) -> int:
    """The batch size of a batch, inferred as Poutyne's ``get_batch_size`` does.

    A tensor's length; else the length of the first tensor of a tuple/list; else the integer
    ``'batch_size'`` of a dict, or the length of its first value; else 1.
    """
    values = (y_pred, y_true)
    for value in values:
        if isinstance(value, Tensor) and value.dim() > 0:
            return int(value.shape[0])
    for value in values:
        if isinstance(value, (tuple, list)) and value and isinstance(value[0], Tensor):
            return int(value[0].shape[0]) if value[0].dim() > 0 else 1
    for value in values:
        if isinstance(value, Mapping) and isinstance(value.get("batch_size"), int):
            return int(value["batch_size"])
    for value in values:
        if isinstance(value, Mapping) and value:
            first = next(iter(value.values()))
            if isinstance(first, Tensor) and first.dim() > 0:
                return int(first.shape[0])
    return 1


def _as_vector(output: Any, names: Sequence[str], device: torch.device) -> Tensor:
    """The values of ``output`` as a 1-d float tensor in the order of ``names`` (float64, or
    float32 on MPS, which has no float64)."""
    dtype = torch.float32 if device.type == "mps" else torch.float64
    if isinstance(output, Mapping):
        items: list[Any] = [output[name] for name in names]
    elif isinstance(output, Tensor):
        return output.detach().reshape(-1).to(device=device, dtype=dtype)
    elif isinstance(output, (tuple, list)):
        items = list(output)
    else:
        items = [output]
    parts = [
        item.detach().reshape(-1).to(device=device, dtype=dtype)
        if isinstance(item, Tensor)
        else torch.tensor([float(item)], dtype=dtype, device=device)
        for item in items
    ]
    return torch.cat(parts)


class DecomposableMetric(Metric):
    """A function of one batch turned into a metric: the pass's value is the mean of the batch
    values weighted by batch size (Poutyne's ``DecomposableMetric``).

    The sums stay on the device as tensors: no host sync per batch.

    Args:
        func: ``func(y_pred, y_true)`` returning a number or a 0-dim tensor (one name), or a
            tuple/list, a 1-d tensor or a dict by name (several names).
        names: Log name, or list of log names (one per value ``func`` returns).

    Raises:
        ConfigurationError: ``names`` is empty or not made of strings.
    """

    def __init__(self, func: Callable[[Any, Any], Any], names: str | Sequence[str]) -> None:
        super().__init__()
        name_list = [names] if isinstance(names, str) else list(names)
        if not name_list or not all(isinstance(name, str) and name for name in name_list):
            raise ConfigurationError(
                f"DecomposableMetric needs a name or a list of names (non-empty str); got "
                f"{names!r}."
            )
        self.func = func
        self.names = name_list
        self.__name__: str | list[str] = name_list if not isinstance(names, str) else names
        self._sums: Tensor | None = None
        self._size = 0

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        """Add the batch and return ``func``'s output as is (so it may serve as a loss)."""
        return self._add(y_pred, y_true)

    def update(self, y_pred: Any, y_true: Any) -> None:
        """Add the batch."""
        self._add(y_pred, y_true)

    def _add(self, y_pred: Any, y_true: Any) -> Any:
        output = self.func(y_pred, y_true)
        device = y_pred.device if isinstance(y_pred, Tensor) else torch.device("cpu")
        values = _as_vector(output, self.names, device)
        if values.numel() != len(self.names):
            raise ConfigurationError(
                f"Metric {', '.join(self.names)} returned {values.numel()} values for "
                f"{len(self.names)} name(s); declare one name per value."
            )
        size = batch_size_of(y_pred, y_true)
        weighted = values * size
        self._sums = weighted if self._sums is None else self._sums.to(weighted.device) + weighted
        self._size += size
        return output

    def compute(self) -> Tensor:
        """The batch-size-weighted mean of every value, a float64 tensor of shape ``(names,)``;
        ``nan`` when nothing was added."""
        if self._sums is None or self._size == 0:
            return torch.full((len(self.names),), float("nan"), dtype=torch.float64)
        return self._sums / self._size

    def reset(self) -> None:
        """Forget the sums."""
        self._sums = None
        self._size = 0
