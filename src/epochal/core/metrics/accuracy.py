"""Poutyne's accuracy metric classes: :class:`Accuracy`, :class:`BinaryAccuracy`,
:class:`TopKAccuracy` (modules whose ``forward`` gives a batch's value)."""

from __future__ import annotations

from torch import Tensor, nn

from epochal.core.metrics.functional import acc, bin_acc, check_reduction, topk
from epochal.exceptions import ConfigurationError

__all__ = ["Accuracy", "BinaryAccuracy", "ReducedBatchMetric", "TopKAccuracy"]


class ReducedBatchMetric(nn.Module):
    """Base of the batch metric modules with a ``reduction`` argument (Poutyne's
    ``BatchMetric`` base class; in epochal ``BatchMetric`` names the loop's resolved record).

    Subclass it to write a batch metric with Poutyne's ``reduction`` argument: define
    ``forward(y_pred, y_true)`` returning the batch's value. Exported as
    ``epochal.BatchMetric``.

    Args:
        reduction: ``'mean'`` (default), ``'sum'`` or ``'none'``.

    Raises:
        ConfigurationError: Unknown ``reduction``.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        check_reduction(reduction)
        self.reduction = reduction


class Accuracy(ReducedBatchMetric):
    """:func:`~epochal.core.metrics.functional.acc` as a module; logs ``acc``.

    Args:
        ignore_index: Target value to skip (padding), as in ``torch.nn.CrossEntropyLoss``.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.

    Shapes:
        y_pred: ``(batch, classes, *extra)``; y_true: ``(batch, *extra)``.

    Raises:
        ConfigurationError: Unknown ``reduction``.
    """

    def __init__(self, *, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.__name__ = "acc"
        self.ignore_index = ignore_index

    def forward(self, y_pred: Tensor, y_true: Tensor) -> Tensor:
        """The batch's accuracy in percent; see :func:`~epochal.core.metrics.functional.acc`."""
        return acc(y_pred, y_true, ignore_index=self.ignore_index, reduction=self.reduction)


class BinaryAccuracy(ReducedBatchMetric):
    """:func:`~epochal.core.metrics.functional.bin_acc` as a module; logs ``bin_acc``.

    Args:
        threshold: Score above which a position predicts 1 (0 for logits).
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.

    Shapes:
        y_pred: ``(batch, *extra)``; y_true: the same shape.

    Raises:
        ConfigurationError: Unknown ``reduction``.
    """

    def __init__(self, *, threshold: float = 0.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.__name__ = "bin_acc"
        self.threshold = threshold

    def forward(self, y_pred: Tensor, y_true: Tensor) -> Tensor:
        """The batch's binary accuracy in percent."""
        return bin_acc(y_pred, y_true, threshold=self.threshold, reduction=self.reduction)


class TopKAccuracy(ReducedBatchMetric):
    """:func:`~epochal.core.metrics.functional.topk` as a module; logs ``top{k}``.

    Args:
        k: How many top classes count as a hit (>= 1).
        ignore_index: Target value to skip (padding).
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.

    Shapes:
        y_pred: ``(batch, classes, *extra)``; y_true: ``(batch, *extra)``.

    Raises:
        ConfigurationError: ``k`` is below 1 or not an integer; unknown ``reduction``.
    """

    def __init__(self, k: int, *, ignore_index: int = -100, reduction: str = "mean") -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigurationError(f"TopKAccuracy needs an integer k >= 1; got {k!r}.")
        super().__init__(reduction)
        self.__name__ = f"top{k}"
        self.k = k
        self.ignore_index = ignore_index

    def forward(self, y_pred: Tensor, y_true: Tensor) -> Tensor:
        """The batch's top-k accuracy in percent."""
        return topk(y_pred, y_true, self.k, ignore_index=self.ignore_index, reduction=self.reduction)
