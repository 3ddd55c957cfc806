"""Metric math on tensors: accuracy, top-k accuracy, binary accuracy and confusion counts.

Every function here is pure, runs on the inputs' device and reads no value back to the host
(no ``.item()``), so it may be called once per batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from epochal.exceptions import ConfigurationError, ShapeMismatchError

__all__ = [
    "REDUCTIONS",
    "acc",
    "accuracy",
    "bin_acc",
    "binary_accuracy",
    "check_reduction",
    "class_dim_shapes_match",
    "confusion_counts",
    "top1",
    "topk",
    "topk_accuracy",
]

#: Reductions accepted by the accuracy functions, as in Poutyne and ``torch.nn`` losses.
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")


#: 100 as a CPU 0-dim tensor. An operand a CPU or CUDA op reads as a scalar, like a Python
#: number, but without wrapping one into a tensor per call (measured under callgrind:
#: ``r.mul_(_HUNDRED)`` runs 7.3k instructions, ``r.mul_(100.0)`` 18.0k). 100 is exact in
#: every floating dtype, so the product is the same to the bit.
_HUNDRED = torch.tensor(100.0, dtype=torch.float32, device="cpu")  # not the default device
_INDEX_OPERANDS: dict[int, Tensor] = {}
_INT64 = range(-(2**63), 2**63)


def _index_operand(index: int) -> Tensor:
    """``index`` (an int64 value) as a CPU 0-dim int64 tensor (see ``_HUNDRED``), made once
    per value."""
    operand = _INDEX_OPERANDS.get(index)
    if operand is None:
        operand = torch.tensor(index, dtype=torch.int64, device="cpu")
        _INDEX_OPERANDS[index] = operand
    return operand


def check_reduction(reduction: str) -> None:
    """Raise unless ``reduction`` is one of :data:`REDUCTIONS`.

    Raises:
        ConfigurationError: ``reduction`` is not ``'mean'``, ``'sum'`` or ``'none'``.
    """
    if reduction not in REDUCTIONS:
        raise ConfigurationError(
            f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}; got {reduction!r}."
        )


def class_dim_shapes_match(y_pred: Tensor, y_true: Tensor) -> bool:
    """Whether ``y_pred`` is ``y_true``'s shape with a class dimension inserted at dim 1."""
    return (
        y_pred.dim() == y_true.dim() + 1
        and y_pred.shape[0] == y_true.shape[0]
        and y_pred.shape[2:] == y_true.shape[1:]
    )


def _class_dim_error(metric: str, y_pred: Tensor, y_true: Tensor) -> ShapeMismatchError:
    return ShapeMismatchError(
        f"{metric} expects y_pred of shape (batch, classes, *extra) and y_true of shape "
        f"(batch, *extra); got y_pred {tuple(y_pred.shape)} and y_true {tuple(y_true.shape)}. "
        "The class dimension is dim 1, as in torch.nn.CrossEntropyLoss; for one logit per "
        "example with 0/1 targets use 'bin_acc'."
    )


def _reduce(hits: Tensor, counted: Tensor, reduction: str) -> Tensor:
    """``hits`` (bool, already masked) reduced as Poutyne does, in percent."""
    if reduction == "mean":
        return hits.sum().div(counted.sum()).mul_(100.0)
    if reduction == "sum":
        return hits.sum().mul(100.0)
    check_reduction(reduction)
    return hits.float().mul_(100.0)


def acc(
    y_pred: Tensor, y_true: Tensor, *, ignore_index: int = -100, reduction: str = "mean"
) -> Tensor:
    """Share of predictions whose arg-max class equals the target, in percent (Poutyne's ``acc``).

    ``100 * hits / counted`` where positions whose target equals ``ignore_index`` are not
    counted.

    Args:
        y_pred: Scores per class (logits or probabilities); the class dimension is dim 1.
        y_true: Class indices; positions equal to ``ignore_index`` are not counted.
        ignore_index: Target value to skip (padding), as in ``torch.nn.CrossEntropyLoss``.
        reduction: ``'mean'`` (percent of counted positions), ``'sum'`` (100 times the number
            of hits) or ``'none'`` (100 or 0 per position, 0 at ignored positions).

    Shapes:
        y_pred: ``(batch, classes)`` or ``(batch, classes, *extra)``
        y_true: ``(batch,)`` or ``(batch, *extra)``; the output of ``'none'`` has this shape.

    Returns:
        A float tensor on ``y_pred``'s device (no host sync): 0-dim for ``'mean'`` and
        ``'sum'``; ``nan`` for ``'mean'`` when every position is ignored.

    Raises:
        ShapeMismatchError: ``y_true`` does not match ``y_pred`` without its class dimension;
            the message gives both shapes.
        ConfigurationError: Unknown ``reduction``.
    """
    predicted, target = y_pred.shape, y_true.shape  # inlined check: this runs once per batch
    if not (
        len(predicted) == len(target) + 1
        and predicted[0] == target[0]
        and predicted[2:] == target[1:]
    ):
        raise _class_dim_error("accuracy", y_pred, y_true)
    plain = y_true.is_cpu or y_true.is_cuda  # devices whose ops take a CPU 0-dim operand
    if (plain and y_true.dtype is torch.int64 and type(ignore_index) is int
            and ignore_index in _INT64):
        counted_mask = y_true.ne(_index_operand(ignore_index))
    else:
        counted_mask = y_true != ignore_index
    correct = y_pred.argmax(dim=1) == y_true
    if reduction == "mean":
        # A negative ignore_index is never a class index, so an ignored position cannot equal
        # an arg-max and the hits need no mask (one op less per batch); only the count does.
        # count_nonzero: the same int64 counts as .sum() on bool, at about half the cost.
        hits = torch.count_nonzero(correct if ignore_index < 0 else correct & counted_mask)
        return hits.div(torch.count_nonzero(counted_mask)).mul_(_HUNDRED if plain else 100.0)
    return _reduce(correct & counted_mask, counted_mask, reduction)


#: The same function as :func:`acc` (its log name is ``acc``).
accuracy = acc


def topk(
    y_pred: Tensor,
    y_true: Tensor,
    k: int,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Share of targets among the ``k`` highest-scored classes, in percent (Poutyne's ``topk``).

    A position is a hit when its target is one of the ``k`` classes with the largest scores;
    positions whose target equals ``ignore_index`` are not counted. ``k=1`` is :func:`acc`.

    Args:
        y_pred: Scores per class; the class dimension is dim 1.
        y_true: Class indices; positions equal to ``ignore_index`` are not counted.
        k: How many top classes count as a hit, ``1 <= k <= classes``.
        ignore_index: Target value to skip (padding).
        reduction: ``'mean'``, ``'sum'`` or ``'none'``, as for :func:`acc`.

    Shapes:
        y_pred: ``(batch, classes)`` or ``(batch, classes, *extra)``
        y_true: ``(batch,)`` or ``(batch, *extra)``

    Returns:
        A float tensor on ``y_pred``'s device (no host sync), as for :func:`acc`.

    Raises:
        ShapeMismatchError: The shapes do not match as above, or ``y_pred`` has fewer than
            ``k`` classes; the message gives both shapes.
        ConfigurationError: Unknown ``reduction``.
    """
    if not class_dim_shapes_match(y_pred, y_true):
        raise _class_dim_error(f"top{k}", y_pred, y_true)
    if y_pred.shape[1] < k:
        raise ShapeMismatchError(
            f"top{k} needs at least {k} classes in dim 1 of y_pred; got y_pred "
            f"{tuple(y_pred.shape)} and y_true {tuple(y_true.shape)}. Use a smaller k."
        )
    counted = y_true != ignore_index
    top = y_pred.topk(k, dim=1).indices
    hits = (top == y_true.unsqueeze(1)).any(dim=1) & counted
    if reduction == "mean":
        return hits.float().sum() / counted.float().sum() * 100.0
    return _reduce(hits, counted, reduction)


def topk_accuracy(
    y_pred: Tensor, y_true: Tensor, k: int, *, ignore_index: int = -100, reduction: str = "mean"
) -> Tensor:
    """Another name of :func:`topk` (same arguments, same result)."""
    return topk(y_pred, y_true, k, ignore_index=ignore_index, reduction=reduction)


def top1(y_pred: Tensor, y_true: Tensor, **kwargs: Any) -> Tensor:
    """Top-1 accuracy, i.e. :func:`acc`, logged as ``top1`` (Poutyne's ``top1``).

    Args:
        y_pred: Scores per class, as for :func:`acc`.
        y_true: Class indices, as for :func:`acc`.
        **kwargs: Keywords of :func:`acc` (``ignore_index``, ``reduction``), passed on.

    Returns:
        What :func:`acc` returns.

    Raises:
        TypeError: A keyword :func:`acc` does not take.
    """
    return acc(y_pred, y_true, **kwargs)


def bin_acc(
    y_pred: Tensor, y_true: Tensor, *, threshold: float = 0.0, reduction: str = "mean"
) -> Tensor:
    """Share of thresholded predictions equal to 0/1 targets, in percent (Poutyne's ``bin_acc``).

    A position predicts 1 when its score is greater than ``threshold`` (0 for logits, as for
    ``torch.nn.BCEWithLogitsLoss``; use 0.5 for probabilities), and is a hit when that equals
    the target.

    Args:
        y_pred: Scores (logits by default).
        y_true: Targets, 0 or 1 (any dtype).
        threshold: Score above which a position predicts 1.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``, as for :func:`acc`.

    Shapes:
        y_pred: ``(batch, *extra)``
        y_true: same shape as ``y_pred``

    Returns:
        A float tensor on ``y_pred``'s device (no host sync): 0-dim for ``'mean'`` and
        ``'sum'``, ``y_pred``'s shape for ``'none'``.

    Raises:
        ShapeMismatchError: The shapes differ; the message gives both shapes.
        ConfigurationError: Unknown ``reduction``.
    """
    if y_pred.shape != y_true.shape:
        raise ShapeMismatchError(
            f"bin_acc expects y_pred and y_true of the same shape (batch, *extra), as "
            f"torch.nn.BCEWithLogitsLoss does; got y_pred {tuple(y_pred.shape)} and y_true "
            f"{tuple(y_true.shape)}. Reshape one of them (e.g. y_pred.squeeze(1)); for class "
            "scores use 'acc'."
        )
    hits = (y_pred > threshold).float() == y_true.float()
    if reduction == "mean":
        return hits.float().mean() * 100.0
    if reduction == "sum":
        return hits.float().sum() * 100.0
    check_reduction(reduction)
    return hits.float() * 100.0


#: Another name of :func:`bin_acc`.
binary_accuracy = bin_acc


def confusion_counts(
    pred: Tensor, target: Tensor, keep: Tensor, classes: int, *, deterministic: bool = False
) -> Tensor:
    """Per-class true positives, predictions and targets of one batch.

    Args:
        pred: Predicted class indices (long), any shape.
        target: Target class indices (long, clamped into ``[0, classes)``), ``pred``'s shape.
        keep: Which positions count (bool), ``pred``'s shape.
        classes: Number of classes.
        deterministic: Count with a comparison against every class (deterministic on every
            device, ``O(positions * classes)`` memory) instead of ``index_add_``.

    Returns:
        A long tensor of shape ``(3, classes)``: rows true positives, predictions, targets.
        Integer counts are exact, so both paths give equal results.
    """
    pred_index = pred.reshape(-1)
    true_index = target.reshape(-1)
    keep_long = keep.reshape(-1).long()
    hit = keep_long * (true_index == pred_index).long()
    if deterministic:
        labels = torch.arange(classes, device=pred.device)
        true_onehot = (true_index.unsqueeze(1) == labels).long()
        pred_onehot = (pred_index.unsqueeze(1) == labels).long()
        return torch.stack(
            [
                (true_onehot * hit.unsqueeze(1)).sum(0),
                (pred_onehot * keep_long.unsqueeze(1)).sum(0),
                (true_onehot * keep_long.unsqueeze(1)).sum(0),
            ]
        )
    counts = torch.zeros(3, classes, dtype=torch.long, device=pred.device)
    counts[0].index_add_(0, true_index, hit)
    counts[1].index_add_(0, pred_index, keep_long)
    counts[2].index_add_(0, true_index, keep_long)
    return counts
