"""Metrics: batch metrics, epoch metrics, loss names, and the running mean of an epoch.

Resolution turns what a user writes (Poutyne's conventions) into uniform objects the loop uses:

* ``resolve_batch_metrics(['accuracy', 'top5', my_fn, ('my_name', fn)])`` gives
  :class:`BatchMetric` objects, each a function of ``(y_pred, y_true)`` returning one 0-dim
  tensor per log name, without a device-to-host copy.
* ``resolve_epoch_metrics(['f1', my_torchmetrics_metric])`` gives :class:`EpochMetricState`
  objects that accumulate over a pass (``update``, no host copy) and convert once
  (``compute``).
* ``resolve_loss('cross_entropy')`` gives ``torch.nn.functional.cross_entropy``.

Names are matched as Poutyne does: case-insensitive, underscores ignored, and for losses a
trailing ``loss`` ignored (``'CrossEntropyLoss'``, ``'cross_entropy'`` and ``'cross_entropy_loss'``
are one name).

Log names of the predefined metrics:

======================================================  ====================
Spec (any alias)                                        Log name
======================================================  ====================
``'accuracy'``, ``'acc'``                               ``acc`` (percent)
``'binary_accuracy'``, ``'binary_acc'``, ``'bin_acc'``  ``bin_acc`` (percent)
``'top{k}'``, ``'top{k}_acc'``, ``'top{k}_accuracy'``   ``top{k}`` (percent)
a loss name (``'mse'``, ``'mse_loss'``, ``'MSELoss'``)  its short name (``mse``)
``'f1'``, ``'f1_macro'``, ``'fscore_macro'``            ``fscore_macro``
``'f1_micro'``, ``'fscore_micro'``                      ``fscore_micro``
``'f1_binary'``, ``'fscore_binary'``                    ``fscore_binary``
``'precision'``, ``'precision_macro'``                  ``precision_macro``
``'precision_micro'``, ``'precision_binary'``           same as the spec
``'recall'``, ``'recall_macro'``                        ``recall_macro``
``'recall_micro'``, ``'recall_binary'``                 same as the spec
======================================================  ====================

This module is pure: it imports torch, attrs and the standard library only, and does no I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from epochal.exceptions import ConfigurationError, ShapeMismatchError

__all__ = [
    "BATCH_METRIC_NAMES",
    "EPOCH_METRIC_NAMES",
    "LOSS_NAMES",
    "Accuracy",
    "BatchMetric",
    "BinaryAccuracy",
    "EpochMetricState",
    "FBeta",
    "TopKAccuracy",
    "accuracy",
    "binary_accuracy",
    "check_unique_names",
    "resolve_batch_metrics",
    "resolve_epoch_metrics",
    "resolve_loss",
    "topk_accuracy",
]


# --------------------------------------------------------------------------------------------
# Predefined batch metrics
# --------------------------------------------------------------------------------------------


def _class_dim_shapes_match(y_pred: Tensor, y_true: Tensor) -> bool:
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


def accuracy(y_pred: Tensor, y_true: Tensor, *, ignore_index: int = -100) -> Tensor:
    """Share of predictions whose arg-max class equals the target, in percent.

    Same definition as Poutyne's ``acc``: ``100 * hits / counted`` where positions whose
    target equals ``ignore_index`` are not counted.

    Args:
        y_pred: Scores per class (logits or probabilities); the class dimension is dim 1.
        y_true: Class indices; positions equal to ``ignore_index`` are not counted.
        ignore_index: Target value to skip (padding), as in ``torch.nn.CrossEntropyLoss``.

    Shapes:
        y_pred: ``(batch, classes)`` or ``(batch, classes, *extra)``
        y_true: ``(batch,)`` or ``(batch, *extra)``

    Returns:
        A 0-dim float tensor in [0, 100], on ``y_pred``'s device (no host sync); ``nan`` when
        every position is ignored.

    Raises:
        ShapeMismatchError: ``y_true`` does not match ``y_pred`` without its class dimension;
            the message gives both shapes.
    """
    if not (  # inlined shape check: this runs once per batch
        y_pred.dim() == y_true.dim() + 1
        and y_pred.shape[0] == y_true.shape[0]
        and y_pred.shape[2:] == y_true.shape[1:]
    ):
        raise _class_dim_error("accuracy", y_pred, y_true)
    # A negative ignore_index is never a class index, so an ignored position cannot equal an
    # arg-max and the hits need no mask (one op less per batch); only the count does.
    counted_mask = y_true != ignore_index
    correct = y_pred.argmax(dim=1) == y_true
    hits = (correct.sum() if ignore_index < 0 else (correct & counted_mask).sum())
    counted = counted_mask.sum()
    return hits.div(counted).mul_(100.0)


def topk_accuracy(y_pred: Tensor, y_true: Tensor, k: int, *, ignore_index: int = -100) -> Tensor:
    """Share of targets found among the ``k`` highest-scored classes, in percent.

    Same definition as Poutyne's ``topk``: a position is a hit when its target is one of the
    ``k`` classes with the largest scores; positions whose target equals ``ignore_index`` are
    not counted. ``k=1`` is :func:`accuracy`.

    Args:
        y_pred: Scores per class; the class dimension is dim 1.
        y_true: Class indices; positions equal to ``ignore_index`` are not counted.
        k: How many top classes count as a hit, ``1 <= k <= classes``.
        ignore_index: Target value to skip (padding).

    Shapes:
        y_pred: ``(batch, classes)`` or ``(batch, classes, *extra)``
        y_true: ``(batch,)`` or ``(batch, *extra)``

    Returns:
        A 0-dim float tensor in [0, 100], on ``y_pred``'s device (no host sync); ``nan`` when
        every position is ignored.

    Raises:
        ShapeMismatchError: The shapes do not match as above, or ``y_pred`` has fewer than
            ``k`` classes; the message gives both shapes.
    """
    if not _class_dim_shapes_match(y_pred, y_true):
        raise _class_dim_error(f"top{k}", y_pred, y_true)
    if y_pred.shape[1] < k:
        raise ShapeMismatchError(
            f"top{k} needs at least {k} classes in dim 1 of y_pred; got y_pred "
            f"{tuple(y_pred.shape)} and y_true {tuple(y_true.shape)}. Use a smaller k."
        )
    counted = y_true != ignore_index
    top = y_pred.topk(k, dim=1).indices
    hits = (top == y_true.unsqueeze(1)).any(dim=1) & counted
    return hits.float().sum() / counted.float().sum() * 100.0


def binary_accuracy(y_pred: Tensor, y_true: Tensor, *, threshold: float = 0.0) -> Tensor:
    """Share of thresholded predictions equal to 0/1 targets, in percent.

    Same definition as Poutyne's ``bin_acc``: a position predicts 1 when its score is greater
    than ``threshold`` (0 for logits, as for ``torch.nn.BCEWithLogitsLoss``; use 0.5 for
    probabilities), and is a hit when that equals the target.

    Args:
        y_pred: Scores (logits by default).
        y_true: Targets, 0 or 1 (any dtype).
        threshold: Score above which a position predicts 1.

    Shapes:
        y_pred: ``(batch, *extra)``
        y_true: same shape as ``y_pred``

    Returns:
        A 0-dim float tensor in [0, 100], on ``y_pred``'s device (no host sync).

    Raises:
        ShapeMismatchError: The shapes differ; the message gives both shapes.
    """
    if y_pred.shape != y_true.shape:
        raise ShapeMismatchError(
            f"bin_acc expects y_pred and y_true of the same shape (batch, *extra), as "
            f"torch.nn.BCEWithLogitsLoss does; got y_pred {tuple(y_pred.shape)} and y_true "
            f"{tuple(y_true.shape)}. Reshape one of them (e.g. y_pred.squeeze(1)); for class "
            "scores use 'acc'."
        )
    hits = (y_pred > threshold).float() == y_true.float()
    return hits.float().mean() * 100.0


class Accuracy:
    """:func:`accuracy` as a named callable, for a non-default ``ignore_index``.

    ``batch_metrics=[Accuracy(ignore_index=0)]`` logs ``acc``.

    Args:
        ignore_index: Target value to skip (padding).
    """

    def __init__(self, *, ignore_index: int = -100) -> None:
        self.__name__ = "acc"
        self.ignore_index = ignore_index

    def __call__(self, y_pred: Tensor, y_true: Tensor) -> Tensor:
        """See :func:`accuracy`."""
        return accuracy(y_pred, y_true, ignore_index=self.ignore_index)


class BinaryAccuracy:
    """:func:`binary_accuracy` as a named callable, for a non-default ``threshold``.

    ``batch_metrics=[BinaryAccuracy(threshold=0.5)]`` logs ``bin_acc``.

    Args:
        threshold: Score above which a position predicts 1.
    """

    def __init__(self, *, threshold: float = 0.0) -> None:
        self.__name__ = "bin_acc"
        self.threshold = threshold

    def __call__(self, y_pred: Tensor, y_true: Tensor) -> Tensor:
        """See :func:`binary_accuracy`."""
        return binary_accuracy(y_pred, y_true, threshold=self.threshold)


class TopKAccuracy:
    """:func:`topk_accuracy` as a named callable; logs ``top{k}``.

    Args:
        k: How many top classes count as a hit (>= 1).
        ignore_index: Target value to skip (padding).

    Raises:
        ConfigurationError: ``k`` is below 1.
    """

    def __init__(self, k: int, *, ignore_index: int = -100) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigurationError(f"TopKAccuracy needs an integer k >= 1; got {k!r}.")
        self.__name__ = f"top{k}"
        self.k = k
        self.ignore_index = ignore_index

    def __call__(self, y_pred: Tensor, y_true: Tensor) -> Tensor:
        """See :func:`topk_accuracy`."""
        return topk_accuracy(y_pred, y_true, self.k, ignore_index=self.ignore_index)


# --------------------------------------------------------------------------------------------
# Predefined epoch metric: F-beta, precision, recall from confusion counts
# --------------------------------------------------------------------------------------------

_FBETA_METRICS = ("fscore", "precision", "recall")
_FBETA_AVERAGES = ("macro", "micro", "binary")


class FBeta:
    """F-beta score, precision or recall over a whole pass, equal to scikit-learn's.

    Counts true positives, predictions and targets per class on the device in :meth:`update`
    (no host sync) and converts once in :meth:`compute`. Formulas, as scikit-learn's
    ``precision_recall_fscore_support`` with ``zero_division=0``:

    * precision = TP / (TP + FP), recall = TP / (TP + FN), 0 when the denominator is 0;
    * F-beta = (1 + beta²) TP / ((1 + beta²) TP + beta² FN + FP), i.e. for beta = 1
      F1 = 2PR / (P + R), 0 when the denominator is 0;
    * ``'macro'``: unweighted mean over the labels present in the targets or the predictions
      (a class seen in neither is left out, as scikit-learn leaves it out of its labels);
    * ``'micro'``: from TP, FP, FN summed over classes (for single-label data this equals the
      accuracy as a fraction);
    * ``'binary'``: of class 1 (scikit-learn's ``pos_label=1``).

    Predictions: with class scores ``y_pred (batch, classes, *extra)`` the predicted class is
    the arg-max over dim 1; with one logit per position (``y_pred`` of ``y_true``'s shape, or
    ``(batch, 1, *extra)``) it is 1 where the score is above ``threshold``, else 0.

    Args:
        metric: ``'fscore'``, ``'precision'`` or ``'recall'``.
        average: ``'macro'``, ``'micro'`` or ``'binary'``.
        beta: Weight of recall against precision in the F-score (> 0).
        ignore_index: Target value to skip (padding).
        threshold: Score above which a single logit predicts 1.
        name: Log name; default ``'{metric}_{average}'`` (Poutyne's), e.g. ``fscore_macro``.

    Shapes:
        y_pred: ``(batch, classes, *extra)``, or ``(batch, *extra)`` / ``(batch, 1, *extra)``
            logits
        y_true: ``(batch, *extra)``, class indices in ``[0, classes)`` (0/1 for logits; float
            0./1. targets are accepted)

    Raises:
        ConfigurationError: Unknown ``metric`` or ``average``, or ``beta <= 0``.
    """

    def __init__(
        self,
        *,
        metric: str = "fscore",
        average: str = "macro",
        beta: float = 1.0,
        ignore_index: int = -100,
        threshold: float = 0.0,
        name: str | None = None,
    ) -> None:
        if metric not in _FBETA_METRICS:
            raise ConfigurationError(
                f"FBeta metric must be one of {', '.join(_FBETA_METRICS)}; got {metric!r}."
            )
        if average not in _FBETA_AVERAGES:
            raise ConfigurationError(
                f"FBeta average must be one of {', '.join(_FBETA_AVERAGES)}; got {average!r}."
            )
        if not beta > 0:
            raise ConfigurationError(f"FBeta beta must be > 0; got {beta!r}.")
        self.metric = metric
        self.average = average
        self.beta = float(beta)
        self.ignore_index = ignore_index
        self.threshold = threshold
        self.__name__ = name if name is not None else f"{metric}_{average}"
        self._tp: Tensor | None = None
        self._pred: Tensor | None = None
        self._true: Tensor | None = None
        self._invalid: Tensor | None = None

    def reset(self) -> None:
        """Forget every count (start of a pass)."""
        self._tp = self._pred = self._true = self._invalid = None

    def _predictions(self, y_pred: Tensor, y_true: Tensor) -> tuple[Tensor, int]:
        if y_pred.dim() == y_true.dim() + 1 and y_pred.dim() >= 2 and y_pred.shape[1] == 1:
            y_pred = y_pred.squeeze(1)
        if y_pred.shape == y_true.shape:
            return (y_pred > self.threshold).long(), 2
        if _class_dim_shapes_match(y_pred, y_true):
            classes = y_pred.shape[1]
            if self.average == "binary" and classes != 2:
                raise ShapeMismatchError(
                    f"{self.__name__} (average='binary') needs one logit per example or two "
                    f"class scores; got y_pred {tuple(y_pred.shape)} and y_true "
                    f"{tuple(y_true.shape)}. Use average='macro' or 'micro' for "
                    f"{classes} classes."
                )
            return y_pred.argmax(dim=1), classes
        raise ShapeMismatchError(
            f"{self.__name__} expects y_pred (batch, classes, *extra) with y_true "
            f"(batch, *extra), or logits of y_true's shape; got y_pred {tuple(y_pred.shape)} "
            f"and y_true {tuple(y_true.shape)}."
        )

    def update(self, y_pred: Tensor, y_true: Tensor) -> None:
        """Add one batch to the counts, on ``y_pred``'s device, without a host sync.

        Raises:
            ShapeMismatchError: The shapes do not fit (see the class docstring), or the number
                of classes changed within the pass.
        """
        pred, classes = self._predictions(y_pred, y_true)
        if self._tp is not None and self._tp.shape[0] != classes:
            raise ShapeMismatchError(
                f"{self.__name__} saw {self._tp.shape[0]} classes earlier in this pass and "
                f"{classes} now (y_pred {tuple(y_pred.shape)}). Keep the class count fixed."
            )
        device = pred.device
        target = y_true.to(device)
        counted = target != self.ignore_index
        target_long = target.long()
        invalid = counted & ((target_long < 0) | (target_long >= classes) | (target_long != target))
        keep = (counted & ~invalid).reshape(-1).long()
        true_index = target_long.clamp(0, classes - 1).reshape(-1)
        pred_index = pred.reshape(-1)
        if self._tp is None or self._pred is None or self._true is None or self._invalid is None:
            self._tp = torch.zeros(classes, dtype=torch.long, device=device)
            self._pred = torch.zeros(classes, dtype=torch.long, device=device)
            self._true = torch.zeros(classes, dtype=torch.long, device=device)
            self._invalid = torch.zeros((), dtype=torch.long, device=device)
        self._true.index_add_(0, true_index, keep)
        self._pred.index_add_(0, pred_index, keep)
        self._tp.index_add_(0, true_index, keep * (true_index == pred_index).long())
        self._invalid += invalid.sum()

    def compute(self) -> float:
        """The metric over everything added since the last reset (one host sync).

        Returns:
            A float in [0, 1]; 0.0 when nothing was added.

        Raises:
            ShapeMismatchError: Some target was outside ``[0, classes)`` (and not
                ``ignore_index``); the message gives how many.
        """
        if self._tp is None or self._pred is None or self._true is None or self._invalid is None:
            return 0.0
        tp, pred, true = self._tp.double(), self._pred.double(), self._true.double()
        beta2 = self.beta**2
        if self.average == "micro":
            tp, pred, true = tp.sum(), pred.sum(), true.sum()
        elif self.average == "binary":
            tp, pred, true = tp[1], pred[1], true[1]
        if self.metric == "precision":
            num, den = tp, pred
        elif self.metric == "recall":
            num, den = tp, true
        else:  # F-beta: (1+b²)TP / ((1+b²)TP + b²FN + FP) with FN = true - TP, FP = pred - TP
            num = (1 + beta2) * tp
            den = beta2 * true + pred
        safe_den = torch.where(den > 0, den, torch.ones_like(den))
        value = torch.where(den > 0, num / safe_den, torch.zeros_like(num))
        if self.average == "macro":
            present = (true + pred) > 0
            value = (value * present).sum() / present.sum().clamp(min=1)
        result, invalid = torch.stack([value.reshape(()), self._invalid.double()]).tolist()
        if invalid:
            raise ShapeMismatchError(
                f"{self.__name__}: {int(invalid)} target(s) in this pass were not class indices "
                f"in [0, {self._tp.shape[0]}) nor ignore_index={self.ignore_index}. Check the "
                "targets, or the number of classes the network outputs."
            )
        return float(result)


# --------------------------------------------------------------------------------------------
# Name registries
# --------------------------------------------------------------------------------------------

_LossFn = Callable[..., Tensor]

# log name -> (function, accepted spellings). Spellings are normalised by _loss_key.
_LOSSES: dict[str, tuple[_LossFn, tuple[str, ...]]] = {
    "cross_entropy": (F.cross_entropy, ("cross_entropy",)),
    "nll": (F.nll_loss, ("nll",)),
    "bce": (F.binary_cross_entropy, ("bce", "binary_cross_entropy")),
    "bce_with_logits": (
        F.binary_cross_entropy_with_logits,
        ("bce_with_logits", "binary_cross_entropy_with_logits"),
    ),
    "mse": (F.mse_loss, ("mse",)),
    "l1": (F.l1_loss, ("l1",)),
    "smooth_l1": (F.smooth_l1_loss, ("smooth_l1",)),
    "huber": (F.huber_loss, ("huber",)),
    "kl_div": (F.kl_div, ("kl_div",)),
    "poisson_nll": (F.poisson_nll_loss, ("poisson_nll",)),
    "hinge_embedding": (F.hinge_embedding_loss, ("hinge_embedding",)),
    "soft_margin": (F.soft_margin_loss, ("soft_margin",)),
    "multilabel_soft_margin": (F.multilabel_soft_margin_loss, ("multilabel_soft_margin",)),
    "multilabel_margin": (F.multilabel_margin_loss, ("multilabel_margin",)),
    "multi_margin": (F.multi_margin_loss, ("multi_margin",)),
}


def _loss_key(name: str) -> str:
    key = name.lower()
    if key.endswith("loss"):
        key = key[: -len("loss")]
    return key.replace("_", "")


def _metric_key(name: str) -> str:
    return name.lower().replace("_", "")


_LOSS_BY_KEY: dict[str, str] = {
    _loss_key(spelling): log_name
    for log_name, (_, spellings) in _LOSSES.items()
    for spelling in spellings
}

# log name -> (factory of the metric function, accepted spellings)
_BATCH_PREDEFINED: dict[str, tuple[Callable[[], Callable[[Any, Any], Any]], tuple[str, ...]]] = {
    # The plain function (default ignore_index=-100): one Python call less per batch.
    "acc": (lambda: accuracy, ("acc", "accuracy")),
    "bin_acc": (BinaryAccuracy, ("bin_acc", "binary_acc", "binary_accuracy")),
}
_BATCH_BY_KEY: dict[str, str] = {
    _metric_key(spelling): log_name
    for log_name, (_, spellings) in _BATCH_PREDEFINED.items()
    for spelling in spellings
}
_TOPK_PATTERN = re.compile(r"top([0-9]+)(?:acc|accuracy)?")

# (metric, average, accepted spellings); log name '{metric}_{average}'
_EPOCH_PREDEFINED: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("fscore", "macro", ("f1", "f1_score", "f1_macro", "fscore_macro")),
    ("fscore", "micro", ("f1_micro", "fscore_micro")),
    ("fscore", "binary", ("f1_binary", "fscore_binary")),
    ("precision", "macro", ("precision", "precision_macro")),
    ("precision", "micro", ("precision_micro",)),
    ("precision", "binary", ("precision_binary",)),
    ("recall", "macro", ("recall", "recall_macro")),
    ("recall", "micro", ("recall_micro",)),
    ("recall", "binary", ("recall_binary",)),
)
_EPOCH_BY_KEY: dict[str, tuple[str, str]] = {
    _metric_key(spelling): (metric, average)
    for metric, average, spellings in _EPOCH_PREDEFINED
    for spelling in spellings
}

#: Loss names accepted by :func:`resolve_loss` (and as batch metrics). Also accepted: the
#: functional name (``'mse_loss'``) and the module name (``'MSELoss'``).
LOSS_NAMES: tuple[str, ...] = tuple(
    sorted({spelling for _, spellings in _LOSSES.values() for spelling in spellings})
)
#: Batch-metric names accepted by :func:`resolve_batch_metrics` (``top{k}`` stands for any
#: ``k >= 1``), loss names included.
BATCH_METRIC_NAMES: tuple[str, ...] = tuple(
    sorted(
        {spelling for _, spellings in _BATCH_PREDEFINED.values() for spelling in spellings}
        | {"top{k}", "top{k}_acc", "top{k}_accuracy"}
        | set(LOSS_NAMES)
    )
)
#: Epoch-metric names accepted by :func:`resolve_epoch_metrics`.
EPOCH_METRIC_NAMES: tuple[str, ...] = tuple(
    sorted({spelling for _, _, spellings in _EPOCH_PREDEFINED for spelling in spellings})
)


def _unknown_name(
    kind: str, name: str, valid: Iterable[str], extra: str = ""
) -> ConfigurationError:
    return ConfigurationError(
        f"Unknown {kind} {name!r}. Valid names: {', '.join(sorted(valid))}.{extra}"
    )


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


def resolve_loss(spec: str | Callable[..., Any]) -> Callable[..., Any]:
    """The loss function a ``Model`` calls as ``loss_function(y_pred, y_true)``.

    Args:
        spec: A loss name (any of :data:`LOSS_NAMES`, the functional name such as
            ``'mse_loss'``, or the module name such as ``'MSELoss'``; case and underscores do
            not matter), or a callable (a function or a loss module instance), returned as is.

    Returns:
        The ``torch.nn.functional`` loss for a name; ``spec`` itself for a callable.

    Raises:
        ConfigurationError: Unknown name; the message lists the valid names.
        TypeError: ``spec`` is a class (pass an instance) or neither a string nor a callable.
    """
    if isinstance(spec, str):
        log_name = _LOSS_BY_KEY.get(_loss_key(spec))
        if log_name is None:
            raise _unknown_name("loss", spec, LOSS_NAMES)
        return _LOSSES[log_name][0]
    if isinstance(spec, type):
        raise TypeError(
            f"loss_function got the class {spec.__name__}; pass an instance, e.g. "
            f"{spec.__name__}(), or a loss name such as 'cross_entropy'."
        )
    if callable(spec):
        return spec
    raise TypeError(
        f"loss_function must be a loss name (str) or a callable (y_pred, y_true) -> Tensor; "
        f"got {type(spec).__name__}."
    )


# --------------------------------------------------------------------------------------------
# Names of user metrics
# --------------------------------------------------------------------------------------------


def _names_tuple(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        names: tuple[Any, ...] = (value,)
    elif isinstance(value, (tuple, list)):
        names = tuple(value)
    else:
        raise TypeError(
            f"{what}: a metric name must be a str or a tuple/list of str; got "
            f"{type(value).__name__}."
        )
    if not names or not all(isinstance(name, str) and name for name in names):
        raise TypeError(f"{what}: metric names must be non-empty strings; got {value!r}.")
    return names


def _default_names(obj: Any, what: str) -> tuple[str, ...]:
    target = obj
    while isinstance(target, functools.partial):
        target = target.func
    name = getattr(target, "__name__", None)
    if name is None:
        name = type(target).__name__.lower()
    if name == "<lambda>":
        raise ConfigurationError(
            f"{what}: a lambda has no usable log name; pass it as ('name', fn)."
        )
    return _names_tuple(name, what)


def check_unique_names(names: Iterable[str], *, reserved: Collection[str] = ()) -> None:
    """Check that log names are unique and avoid the reserved ones.

    Args:
        names: Log names, in order (e.g. the batch metrics' names then the epoch metrics').
        reserved: Names already taken by the caller (e.g. ``('loss',)``).

    Raises:
        ConfigurationError: A name appears twice or is reserved; the message names it.
    """
    seen: set[str] = set()
    for name in names:
        if name in reserved:
            raise ConfigurationError(
                f"Metric log name {name!r} is reserved ({', '.join(sorted(reserved))}); "
                "rename the metric with a ('name', metric) tuple."
            )
        if name in seen:
            raise ConfigurationError(
                f"Two metrics log under the name {name!r}; log names must be unique. Rename "
                "one with a ('name', metric) tuple."
            )
        seen.add(name)


def _device_of(value: Any) -> torch.device:
    if isinstance(value, Tensor):
        return value.device
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        for item in value:
            device = _device_of(item)
            if device.type != "cpu":
                return device
    return torch.device("cpu")


def _scalar_tensor(value: Any, device: torch.device, what: str) -> Tensor:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ConfigurationError(
                f"{what} returned a tensor of shape {tuple(value.shape)} where one value was "
                "expected; return a 0-dim tensor, or declare several names with "
                "(('name1', 'name2'), fn)."
            )
        return value.detach().reshape(())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        dtype = torch.float32 if device.type == "mps" else torch.float64
        return torch.tensor(float(value), dtype=dtype, device=device)
    raise TypeError(
        f"{what} returned {type(value).__name__}; expected a Tensor, a number, a dict of them "
        "by name, or a tuple of them."
    )


def _split_values(result: Any, names: tuple[str, ...], what: str) -> list[Any]:
    """The values of ``result`` in the order of ``names``."""
    if isinstance(result, Mapping):
        if set(result) != set(names):
            raise ConfigurationError(
                f"{what} returned values named {sorted(map(str, result))} but is declared with "
                f"names {list(names)}; declare the returned keys with "
                "(('name1', 'name2'), metric)."
            )
        return [result[name] for name in names]
    if isinstance(result, Tensor) and len(names) > 1:
        if result.numel() != len(names):
            raise ConfigurationError(
                f"{what} is declared with {len(names)} names {list(names)} but returned a tensor "
                f"of {result.numel()} values."
            )
        return list(result.detach().reshape(-1).unbind(0))
    if isinstance(result, (tuple, list)):
        if len(result) != len(names):
            raise ConfigurationError(
                f"{what} is declared with {len(names)} name(s) {list(names)} but returned "
                f"{len(result)} values; declare one name per value with (names, metric)."
            )
        return list(result)
    if len(names) != 1:
        raise ConfigurationError(
            f"{what} is declared with {len(names)} names {list(names)} but returned one value."
        )
    return [result]


# --------------------------------------------------------------------------------------------
# Batch metrics
# --------------------------------------------------------------------------------------------


@attrs.frozen
class BatchMetric:
    """A resolved batch metric: a function of one batch, and its log names.

    Attributes:
        names: Log names, one per value (``('acc',)``, or ``('prec', 'rec')`` for a metric
            returning several values).
        fn: ``fn(y_pred, y_true)`` returning a Tensor or number (one name), or a tuple/list or
            dict by name (several names).
    """

    names: tuple[str, ...]
    fn: Callable[[Any, Any], Any]

    def __call__(self, y_pred: Any, y_true: Any) -> tuple[Tensor, ...]:
        """The metric's values for one batch.

        Returns:
            Detached 0-dim tensors, one per name, in the order of ``names``, on ``y_pred``'s
            device (a number returned by ``fn`` becomes a float64 tensor there); no host sync.

        Raises:
            ConfigurationError: ``fn`` returned a number of values, or names, other than
                declared.
            TypeError: ``fn`` returned something that is not a tensor or number.
        """
        result = self.fn(y_pred, y_true)
        if len(self.names) == 1 and isinstance(result, Tensor) and result.dim() == 0:
            return (result.detach(),)  # the common case, kept cheap: called once per batch
        what = f"Batch metric {', '.join(self.names)}"
        device = _device_of(y_pred)
        return tuple(
            _scalar_tensor(value, device, what) for value in _split_values(result, self.names, what)
        )


_Resolved = TypeVar("_Resolved", "BatchMetric", "EpochMetricState")


def _resolve_list(
    specs: Sequence[Any] | None,
    argument: str,
    example: str,
    resolve: Callable[[Any, int], _Resolved],
) -> list[_Resolved]:
    """Resolve a list of metric specs with ``resolve(spec, position)``; names must be unique."""
    if specs is None:
        return []
    if isinstance(specs, (str, bytes)) or not isinstance(specs, Sequence):
        raise TypeError(
            f"{argument} must be a list of metrics; got {type(specs).__name__}. "
            f"Write {argument}=[{example}], not {argument}={example}."
        )
    metrics = [resolve(spec, position) for position, spec in enumerate(specs)]
    check_unique_names(name for metric in metrics for name in metric.names)
    return metrics


def _resolve_batch_name(name: str, what: str) -> tuple[str, Callable[[Any, Any], Any]]:
    key = _metric_key(name)
    log_name = _BATCH_BY_KEY.get(key)
    if log_name is not None:
        return log_name, _BATCH_PREDEFINED[log_name][0]()
    match = _TOPK_PATTERN.fullmatch(key)
    if match is not None and int(match.group(1)) >= 1:
        k = int(match.group(1))
        return f"top{k}", TopKAccuracy(k)
    loss_name = _LOSS_BY_KEY.get(_loss_key(name))
    if loss_name is not None:
        return loss_name, _LOSSES[loss_name][0]
    raise _unknown_name(
        "batch metric",
        name,
        BATCH_METRIC_NAMES,
        " top{k} stands for any k >= 1 (top5, top10_acc); loss names may also be written "
        "as the functional ('mse_loss') or module ('MSELoss') name.",
    )


def _resolve_batch_metric(spec: Any, position: int) -> BatchMetric:
    what = f"batch_metrics[{position}]"
    names: tuple[str, ...] | None = None
    metric = spec
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise TypeError(
                f"{what}: a tuple must be (name, metric) or ((name1, name2), metric); got a "
                f"tuple of {len(spec)} items."
            )
        names, metric = _names_tuple(spec[0], what), spec[1]
    if isinstance(metric, str):
        log_name, fn = _resolve_batch_name(metric, what)
        return BatchMetric(names if names is not None else (log_name,), fn)
    if isinstance(metric, type):
        raise TypeError(
            f"{what} is the class {metric.__name__}; pass an instance, e.g. {metric.__name__}()."
        )
    if not callable(metric):
        raise TypeError(
            f"{what} must be a metric name (str), a callable (y_pred, y_true), or a "
            f"(name, metric) tuple; got {type(metric).__name__}."
        )
    return BatchMetric(names if names is not None else _default_names(metric, what), metric)


def resolve_batch_metrics(specs: Sequence[Any] | None) -> list[BatchMetric]:
    """Resolve ``Model(batch_metrics=...)`` into :class:`BatchMetric` objects.

    Args:
        specs: Each item is one of: a name (see :data:`BATCH_METRIC_NAMES` and the module
            docstring for log names); a callable ``(y_pred, y_true)`` logged under its
            ``__name__`` (a function's name, or an instance attribute ``__name__`` that may be a
            list of names for a multi-value metric, or else its class name lower-cased; a
            ``functools.partial`` takes its function's name); a ``(name, metric)`` tuple; or a
            ``((name1, name2, ...), metric)`` tuple for a metric returning a tuple, a 1-d
            tensor or a dict with exactly those keys. ``None`` means no metric.

    Returns:
        One :class:`BatchMetric` per spec, in order.

    Raises:
        ConfigurationError: Unknown name (the message lists the valid names), or two metrics
            with the same log name (the message names it).
        TypeError: A spec of the wrong type (the message says what was expected).
    """
    return _resolve_list(specs, "batch_metrics", "'accuracy'", _resolve_batch_metric)


# --------------------------------------------------------------------------------------------
# Epoch metrics
# --------------------------------------------------------------------------------------------


def _to_floats(value: Any, what: str) -> list[float]:
    if isinstance(value, Tensor):
        return [float(item) for item in value.detach().reshape(-1).tolist()]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    raise TypeError(
        f"{what}.compute() returned {type(value).__name__}; expected a Tensor, a number, a "
        "dict of them by name, or a tuple of them."
    )


class EpochMetricState:
    """A resolved epoch metric: accumulates over a pass, computes once at its end.

    Wraps either a torchmetrics-style object (``update(y_pred, y_true)``, ``compute()``,
    ``reset()``) or a Poutyne-style one (``forward(y_pred, y_true)``, ``get_metric()``,
    ``reset()``); torchmetrics itself is not needed.

    Args:
        names: Log names, one per value ``compute`` returns.
        metric: The wrapped object.

    Raises:
        TypeError: ``metric`` has neither ``update``/``compute`` nor ``forward``/``get_metric``.
    """

    def __init__(self, names: tuple[str, ...], metric: Any) -> None:
        self.names = names
        self.metric = metric
        if callable(getattr(metric, "update", None)) and callable(getattr(metric, "compute", None)):
            self._update: Callable[[Any, Any], Any] = metric.update
            self._compute: Callable[[], Any] = metric.compute
        elif callable(getattr(metric, "forward", None)) and callable(
            getattr(metric, "get_metric", None)
        ):
            self._update = metric.forward
            self._compute = metric.get_metric
        else:
            raise TypeError(
                f"Epoch metric {type(metric).__name__} must have update(y_pred, y_true), "
                "compute() and reset() (torchmetrics style) or forward(y_pred, y_true), "
                "get_metric() and reset() (Poutyne style)."
            )
        reset = getattr(metric, "reset", None)
        self._reset: Callable[[], Any] | None = reset if callable(reset) else None

    def __repr__(self) -> str:
        return f"EpochMetricState(names={self.names!r}, metric={self.metric!r})"

    def reset(self) -> None:
        """Start a new pass (calls the object's ``reset``, if it has one)."""
        if self._reset is not None:
            self._reset()

    def update(self, y_pred: Any, y_true: Any) -> None:
        """Add one batch (the object's ``update``, or ``forward``; its return is ignored)."""
        self._update(y_pred, y_true)

    def compute(self) -> tuple[float, ...]:
        """The metric over the pass, one float per name (host sync allowed here).

        Raises:
            ConfigurationError: The object returned a number of values, or names, other than
                declared.
            TypeError: It returned something that is not a tensor, number, dict or tuple.
        """
        what = f"Epoch metric {', '.join(self.names)}"
        result = self._compute()
        if isinstance(result, Tensor) and len(self.names) == 1 and result.numel() != 1:
            raise ConfigurationError(
                f"{what} returned a tensor of shape {tuple(result.shape)} where one value was "
                "expected; declare one name per value with (names, metric)."
            )
        floats: list[float] = []
        for value in _split_values(result, self.names, what):
            floats.extend(_to_floats(value, what))
        if len(floats) != len(self.names):
            raise ConfigurationError(
                f"{what} returned {len(floats)} values for {len(self.names)} name(s)."
            )
        return tuple(floats)


def _resolve_epoch_metric(spec: Any, position: int) -> EpochMetricState:
    what = f"epoch_metrics[{position}]"
    names: tuple[str, ...] | None = None
    metric = spec
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise TypeError(
                f"{what}: a tuple must be (name, metric) or ((name1, name2), metric); got a "
                f"tuple of {len(spec)} items."
            )
        names, metric = _names_tuple(spec[0], what), spec[1]
    if isinstance(metric, str):
        found = _EPOCH_BY_KEY.get(_metric_key(metric))
        if found is None:
            raise _unknown_name("epoch metric", metric, EPOCH_METRIC_NAMES)
        obj = FBeta(metric=found[0], average=found[1])
        return EpochMetricState(names if names is not None else (obj.__name__,), obj)
    if isinstance(metric, type):
        raise TypeError(
            f"{what} is the class {metric.__name__}; pass an instance, e.g. {metric.__name__}()."
        )
    has_torchmetrics_api = callable(getattr(metric, "update", None)) and callable(
        getattr(metric, "compute", None)
    )
    has_poutyne_api = callable(getattr(metric, "forward", None)) and callable(
        getattr(metric, "get_metric", None)
    )
    if not (has_torchmetrics_api or has_poutyne_api):
        raise TypeError(
            f"{what} must be a metric name (str), an object with update(y_pred, y_true), "
            "compute() and reset() (torchmetrics style) or forward(y_pred, y_true), "
            "get_metric() and reset() (Poutyne style), or a (name, metric) tuple; got "
            f"{type(metric).__name__}."
        )
    return EpochMetricState(names if names is not None else _default_names(metric, what), metric)


def resolve_epoch_metrics(specs: Sequence[Any] | None) -> list[EpochMetricState]:
    """Resolve ``Model(epoch_metrics=...)`` into :class:`EpochMetricState` objects.

    Args:
        specs: Each item is one of: a name (see :data:`EPOCH_METRIC_NAMES`; ``'f1'`` logs
            ``fscore_macro``); an object with ``update``/``compute``/``reset``
            (torchmetrics style) or ``forward``/``get_metric``/``reset`` (Poutyne style),
            logged under its ``__name__`` attribute (a str, or a list of str for several
            values) or else its class name lower-cased; a ``(name, metric)`` tuple; or a
            ``((name1, ...), metric)`` tuple for a metric whose ``compute`` returns a tuple, a
            1-d tensor or a dict with exactly those keys. ``None`` means no metric.

    Returns:
        One :class:`EpochMetricState` per spec, in order. Each new object starts fresh (the
        loop still calls ``reset`` at the start of each pass).

    Raises:
        ConfigurationError: Unknown name (the message lists the valid names), or two metrics
            with the same log name (the message names it).
        TypeError: A spec of the wrong type (the message says what was expected).
    """
    return _resolve_list(specs, "epoch_metrics", "'f1'", _resolve_epoch_metric)
