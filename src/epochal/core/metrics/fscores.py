"""F-beta score, precision and recall over a pass: :class:`FBeta` and Poutyne's aliases
:class:`F1`, :class:`Precision`, :class:`Recall`, :class:`BinaryF1`, :class:`BinaryPrecision`,
:class:`BinaryRecall`."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from epochal.core.metrics.base import Metric
from epochal.core.metrics.functional import class_dim_shapes_match, confusion_counts
from epochal.exceptions import ConfigurationError, ShapeMismatchError

__all__ = ["F1", "BinaryF1", "BinaryPrecision", "BinaryRecall", "FBeta", "Precision", "Recall"]

_METRICS = ("fscore", "precision", "recall")
_AVERAGES = ("binary", "micro", "macro")


class FBeta(Metric):
    """F-beta score, precision and/or recall over a pass, equal to scikit-learn's.

    :meth:`update` counts true positives, predictions and targets per class on the device (no
    host sync); :meth:`compute` converts once. Formulas, as scikit-learn's
    ``precision_recall_fscore_support`` with ``zero_division=0``:

    * precision = TP / (TP + FP), recall = TP / (TP + FN), 0 when the denominator is 0;
    * F-beta = (1 + beta²) TP / ((1 + beta²) TP + beta² FN + FP), i.e. for beta = 1
      F1 = 2PR / (P + R), 0 when the denominator is 0;
    * ``'macro'``: unweighted mean over the labels present in the targets or the predictions
      (a class seen in neither is left out, as scikit-learn leaves it out of its labels);
    * ``'micro'``: from TP, FP, FN summed over classes;
    * ``'binary'``: of class ``pos_label`` (at most two classes); an integer ``average``: of
      that class, any number of classes.

    Predictions: with class scores ``y_pred (batch, classes, *extra)`` the predicted class is
    the arg-max over dim 1; with one score per position (``y_pred`` of ``y_true``'s shape, or
    ``(batch, 1, *extra)``) it is 1 where the score is above ``threshold``, else 0.

    Log names (Poutyne's): ``'{metric}_{average}'``, with ``_{label}`` appended for
    ``'binary'`` (``fscore_binary_1``); ``'{metric}_{label}'`` for an integer ``average``. With
    ``metric=None`` the three names fscore, precision, recall, in that order.

    Args:
        metric: ``'fscore'``, ``'precision'``, ``'recall'``, or ``None`` for all three.
        average: ``'macro'``, ``'micro'``, ``'binary'`` or a class index.
        beta: Weight of recall against precision in the F-score (> 0).
        pos_label: The class of ``average='binary'``.
        ignore_index: Target value to skip (padding); ``None`` skips nothing.
        threshold: Score above which a single score predicts 1.
        names: Log name (one metric) or list of three names (``metric=None``).
        make_deterministic: ``True`` counts without ``index_add_`` (deterministic on every
            device, more memory); counts are integers, so the values are equal either way.

    Shapes:
        y_pred: ``(batch, classes, *extra)``, or ``(batch, *extra)`` / ``(batch, 1, *extra)``
            single scores
        y_true: ``(batch, *extra)`` class indices, or a tuple ``(y_true, mask)`` of two such
            tensors where positions with a false/0 mask are skipped

    Raises:
        ConfigurationError: Unknown ``metric`` or ``average``, ``beta <= 0``, or ``names`` of
            the wrong length.
    """

    def __init__(
        self,
        *,
        metric: str | None = None,
        average: str | int = "macro",
        beta: float = 1.0,
        pos_label: int = 1,
        ignore_index: int | None = -100,
        threshold: float = 0.0,
        names: str | list[str] | None = None,
        make_deterministic: bool | None = None,
    ) -> None:
        super().__init__()
        if metric is not None and metric not in _METRICS:
            raise ConfigurationError(
                f"FBeta metric must be one of {', '.join(_METRICS)} or None; got {metric!r}."
            )
        is_label = isinstance(average, int) and not isinstance(average, bool)
        if not is_label and average not in _AVERAGES:
            raise ConfigurationError(
                f"FBeta average must be one of {', '.join(_AVERAGES)} or a class index; got "
                f"{average!r}."
            )
        if not beta > 0:
            raise ConfigurationError(f"FBeta beta must be > 0; got {beta!r}.")
        if metric in ("precision", "recall") and beta != 1.0:
            warnings.warn(f"beta has no effect on {metric!r}.", stacklevel=2)
        self.metric = metric
        self.average: str | None = None if is_label else str(average)
        self.label: int | None = (
            int(average) if is_label else pos_label if average == "binary" else None
        )
        self.beta = float(beta)
        self.ignore_index = ignore_index
        self.threshold = threshold
        self.make_deterministic = make_deterministic
        self.__name__: str | list[str] = self._names(names)
        self._counts: Tensor | None = None
        self._invalid: Tensor | None = None

    def _default_name(self, metric: str) -> str:
        name = metric
        if self.average is not None:
            name += "_" + self.average
        if self.label is not None:
            name += "_" + str(self.label)
        return name

    def _names(self, names: str | list[str] | None) -> str | list[str]:
        default: str | list[str] = (
            [self._default_name(m) for m in _METRICS]
            if self.metric is None
            else self._default_name(self.metric)
        )
        if names is None:
            return default
        given = [names] if isinstance(names, str) else list(names)
        expected = [default] if isinstance(default, str) else default
        if len(given) != len(expected) or not all(isinstance(n, str) and n for n in given):
            raise ConfigurationError(
                f"FBeta names must give one non-empty name for each of {', '.join(expected)}; "
                f"got {names!r}."
            )
        return names if isinstance(names, str) else list(names)

    def reset(self) -> None:
        """Forget every count (start of a pass)."""
        self._counts = None
        self._invalid = None

    def _predictions(self, y_pred: Tensor, y_true: Tensor) -> tuple[Tensor, int]:
        if y_pred.dim() == y_true.dim() + 1 and y_pred.dim() >= 2 and y_pred.shape[1] == 1:
            y_pred = y_pred.squeeze(1)
        if y_pred.shape == y_true.shape:
            return (y_pred > self.threshold).long(), 2
        if class_dim_shapes_match(y_pred, y_true):
            classes = y_pred.shape[1]
            if self.average == "binary" and classes != 2:
                raise ShapeMismatchError(
                    f"{self.__name__} (average='binary') needs one score per example or two "
                    f"class scores; got y_pred {tuple(y_pred.shape)} and y_true "
                    f"{tuple(y_true.shape)}. Use average='macro' or 'micro' for "
                    f"{classes} classes."
                )
            return y_pred.argmax(dim=1), classes
        raise ShapeMismatchError(
            f"{self.__name__} expects y_pred (batch, classes, *extra) with y_true "
            f"(batch, *extra), or single scores of y_true's shape; got y_pred "
            f"{tuple(y_pred.shape)} and y_true {tuple(y_true.shape)}."
        )

    def _batch_counts(self, y_pred: Tensor, y_true: Any) -> tuple[Tensor, Tensor]:
        mask: Tensor | None = None
        if isinstance(y_true, (tuple, list)):
            if len(y_true) != 2:
                raise ShapeMismatchError(
                    f"{self.__name__}: y_true as a tuple must be (targets, mask); got "
                    f"{len(y_true)} items."
                )
            y_true, mask = y_true
        pred, classes = self._predictions(y_pred, y_true)
        if self._counts is not None and self._counts.shape[1] != classes:
            raise ShapeMismatchError(
                f"{self.__name__} saw {self._counts.shape[1]} classes earlier in this pass and "
                f"{classes} now (y_pred {tuple(y_pred.shape)}). Keep the class count fixed."
            )
        device = pred.device
        target = y_true.to(device)
        counted = (
            target != self.ignore_index
            if self.ignore_index is not None
            else torch.ones_like(target, dtype=torch.bool)
        )
        if mask is not None:
            counted = counted & mask.to(device).bool()
        target_long = target.long()
        invalid = counted & ((target_long < 0) | (target_long >= classes) | (target_long != target))
        counts = confusion_counts(
            pred,
            target_long.clamp(0, classes - 1),
            counted & ~invalid,
            classes,
            deterministic=bool(self.make_deterministic),
        )
        return counts, invalid.sum()

    def update(self, y_pred: Tensor, y_true: Any) -> None:
        """Add one batch to the counts, on ``y_pred``'s device, without a host sync.

        Raises:
            ShapeMismatchError: The shapes do not fit (see the class docstring), or the number
                of classes changed within the pass.
        """
        counts, invalid = self._batch_counts(y_pred, y_true)
        if self._counts is None or self._invalid is None:
            self._counts, self._invalid = counts, invalid
        else:
            self._counts = self._counts + counts
            self._invalid = self._invalid + invalid

    def forward(self, y_pred: Tensor, y_true: Any) -> Tensor | tuple[Tensor, ...]:
        """Add one batch and return the batch's own value(s) as 0-dim tensors (no host sync).

        Returns:
            One 0-dim float64 tensor, or three (fscore, precision, recall) with
            ``metric=None``; an out-of-range target makes the batch's value ``nan``.
        """
        counts, invalid = self._batch_counts(y_pred, y_true)
        if self._counts is None or self._invalid is None:
            self._counts, self._invalid = counts, invalid
        else:
            self._counts = self._counts + counts
            self._invalid = self._invalid + invalid
        values = torch.where(invalid > 0, torch.nan, self._values(counts))
        return values.reshape(()) if self.metric is not None else tuple(values.unbind(0))

    def _values(self, counts: Tensor) -> Tensor:
        """fscore, precision, recall from ``(3, classes)`` counts; shape ``()`` or ``(3,)``."""
        tp, pred, true = counts.double().unbind(0)
        if self.average == "micro":
            tp, pred, true = tp.sum(), pred.sum(), true.sum()
        beta2 = self.beta**2
        nums = torch.stack([(1 + beta2) * tp, tp, tp])
        dens = torch.stack([beta2 * true + pred, pred, true])
        safe = torch.where(dens > 0, dens, torch.ones_like(dens))
        values = torch.where(dens > 0, nums / safe, torch.zeros_like(nums))
        if self.average == "macro":
            present = (true + pred) > 0
            values = (values * present).sum(-1) / present.sum().clamp(min=1)
        elif self.label is not None:
            values = values[:, self.label]
        if self.metric is not None:
            return values[_METRICS.index(self.metric)]
        return values

    def compute(self) -> float | list[float]:
        """The metric(s) over everything added since the last reset (one host sync).

        Returns:
            A float in [0, 1] (a list of three, fscore, precision, recall, with
            ``metric=None``); 0.0 for each when nothing was added.

        Raises:
            ShapeMismatchError: Some target was outside ``[0, classes)`` (and not
                ``ignore_index``), or the class ``average``/``pos_label`` names is not below
                the number of classes.
        """
        if self._counts is None or self._invalid is None:
            return 0.0 if self.metric is not None else [0.0, 0.0, 0.0]
        classes = self._counts.shape[1]
        if self.label is not None and not 0 <= self.label < classes:
            raise ShapeMismatchError(
                f"{self.__name__}: class {self.label} asked for, but y_pred has {classes} "
                "classes. Use a label in range."
            )
        values = self._values(self._counts).reshape(-1)
        *result, invalid = torch.cat([values, self._invalid.double().reshape(1)]).tolist()
        if invalid:
            raise ShapeMismatchError(
                f"{self.__name__}: {int(invalid)} target(s) in this pass were not class indices "
                f"in [0, {classes}) nor ignore_index={self.ignore_index}. Check the targets, or "
                "the number of classes the network outputs."
            )
        return float(result[0]) if self.metric is not None else [float(v) for v in result]


def _refuse_beta(name: str, kwargs: dict[str, Any]) -> None:
    if "beta" in kwargs:
        raise ConfigurationError(f"{name} has no beta argument (it is F1); use FBeta(beta=...).")


class F1(FBeta):
    """:class:`FBeta` with ``metric='fscore'`` and ``beta=1``; logs ``fscore_{average}``.

    String names: ``'f1'``. Takes :class:`FBeta`'s keyword arguments except ``metric`` and
    ``beta``.
    """

    def __init__(self, **kwargs: Any) -> None:
        _refuse_beta("F1", kwargs)
        super().__init__(metric="fscore", **kwargs)


class Precision(FBeta):
    """:class:`FBeta` with ``metric='precision'``; logs ``precision_{average}``.

    String names: ``'precision'``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(metric="precision", **kwargs)


class Recall(FBeta):
    """:class:`FBeta` with ``metric='recall'``; logs ``recall_{average}``.

    String names: ``'recall'``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(metric="recall", **kwargs)


class BinaryF1(FBeta):
    """F1 of class ``pos_label`` (``average='binary'``); logs ``bin_fscore``.

    String names: ``'binary_f1'``, ``'bin_f1'``.
    """

    def __init__(self, **kwargs: Any) -> None:
        _refuse_beta("BinaryF1", kwargs)
        kwargs = {"names": "bin_fscore", **kwargs}
        super().__init__(metric="fscore", average="binary", **kwargs)


class BinaryPrecision(FBeta):
    """Precision of class ``pos_label`` (``average='binary'``); logs ``bin_precision``.

    String names: ``'binary_precision'``, ``'bin_precision'``.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs = {"names": "bin_precision", **kwargs}
        super().__init__(metric="precision", average="binary", **kwargs)


class BinaryRecall(FBeta):
    """Recall of class ``pos_label`` (``average='binary'``); logs ``bin_recall``.

    String names: ``'binary_recall'``, ``'bin_recall'``.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs = {"names": "bin_recall", **kwargs}
        super().__init__(metric="recall", average="binary", **kwargs)
