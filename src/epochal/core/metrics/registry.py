"""Metric and loss names: Poutyne's name cleaning, an immutable :class:`MetricRegistry`, the
built-in names, and :func:`resolve_loss`.

The core holds no mutable global: :data:`BUILTIN_REGISTRY` is a frozen record, and
:mod:`epochal.metrics` (the shell) keeps the user's registrations and passes a registry to
the resolvers.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import torch.nn.functional as F

from epochal.core.metrics.accuracy import TopKAccuracy
from epochal.core.metrics.fscores import (
    F1,
    BinaryF1,
    BinaryPrecision,
    BinaryRecall,
    FBeta,
    Precision,
    Recall,
)
from epochal.core.metrics.functional import acc, bin_acc, top1
from epochal.exceptions import ConfigurationError

__all__ = [
    "BATCH_METRIC_NAMES",
    "BUILTIN_REGISTRY",
    "EPOCH_METRIC_NAMES",
    "LOSS_NAMES",
    "MetricRegistry",
    "clean_metric_class_name",
    "clean_metric_func_name",
    "resolve_loss",
]


def clean_metric_func_name(name: str) -> str:
    """Poutyne's key of a metric-function name: lower case, a trailing ``loss`` and every
    underscore removed (``'CrossEntropyLoss'`` and ``'cross_entropy'`` give one key)."""
    key = name.lower()
    key = key[: -len("loss")] if key.endswith("loss") else key
    return key.replace("_", "")


def clean_metric_class_name(name: str) -> str:
    """Poutyne's key of a metric-class name: lower case, a trailing ``score`` and every
    underscore removed (``'F1Score'`` and ``'f1'`` give one key)."""
    key = name.lower()
    key = key[: -len("score")] if key.endswith("score") else key
    return key.replace("_", "")


#: An entry: (log name or None to use the metric's own name, function or class/factory).
Entry = tuple[str | None, Any]


def _frozen_map(entries: Mapping[str, Entry]) -> Mapping[str, Entry]:
    return types.MappingProxyType(dict(entries))


@attrs.frozen(kw_only=True)
class MetricRegistry:
    """Metric names -> metrics, looked up as Poutyne's ``get_metric`` does.

    Attributes:
        funcs: Cleaned function key (:func:`clean_metric_func_name`) -> entry whose second
            item is the metric itself (a function or a ready object).
        classes: Cleaned class key (:func:`clean_metric_class_name`) -> entry whose second
            item is a class (or factory) called with no argument for each use.
    """

    funcs: Mapping[str, Entry] = attrs.field(converter=_frozen_map)
    classes: Mapping[str, Entry] = attrs.field(converter=_frozen_map)

    def lookup(self, name: str) -> tuple[str | None, Any] | None:
        """The metric of ``name``: ``(log name or None, metric object)``, or None if unknown.

        Functions are searched first, then classes (a new instance each call); any
        ``top{k}`` not registered gives a :class:`TopKAccuracy` (``k >= 1``).
        """
        found = self.funcs.get(clean_metric_func_name(name))
        if found is not None:
            return found
        found = self.classes.get(clean_metric_class_name(name))
        if found is not None:
            return found[0], found[1]()
        match = _TOPK_PATTERN.fullmatch(clean_metric_func_name(name))
        if match is not None and int(match.group(1)) >= 1:
            return None, TopKAccuracy(int(match.group(1)))
        return None

    def with_funcs(self, entries: Mapping[str, Entry]) -> MetricRegistry:
        """A copy with function entries added (or replaced)."""
        return attrs.evolve(self, funcs={**self.funcs, **entries})

    def with_classes(self, entries: Mapping[str, Entry]) -> MetricRegistry:
        """A copy with class entries added (or replaced)."""
        return attrs.evolve(self, classes={**self.classes, **entries})

    def without_classes(self, keys: Iterable[str]) -> MetricRegistry:
        """A copy without the class entries of ``keys`` (cleaned keys).

        Raises:
            KeyError: A key is not registered (Poutyne's ``unregister_metric_class`` too).
        """
        classes = dict(self.classes)
        for key in keys:
            del classes[key]
        return attrs.evolve(self, classes=classes)

    def names(self) -> tuple[str, ...]:
        """Every registered key, sorted (for error messages)."""
        return tuple(sorted({*self.funcs, *self.classes}))


_TOPK_PATTERN = re.compile(r"top([0-9]+)(?:acc|accuracy)?")

# log name -> (function, accepted spellings), Poutyne's registered losses plus huber.
_LOSSES: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
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
_LOSS_BY_KEY: dict[str, str] = {
    clean_metric_func_name(spelling): log_name
    for log_name, (_, spellings) in _LOSSES.items()
    for spelling in spellings
}


def _builtin_funcs() -> dict[str, Entry]:
    funcs: dict[str, Entry] = {}
    for log_name, (fn, spellings) in _LOSSES.items():
        for spelling in spellings:
            funcs[clean_metric_func_name(spelling)] = (log_name, fn)
    funcs.update(dict.fromkeys(("acc", "accuracy"), (None, acc)))
    funcs.update(dict.fromkeys(("binacc", "binaryacc", "binaryaccuracy"), (None, bin_acc)))
    funcs.update(dict.fromkeys(("top1", "top1acc", "top1accuracy"), (None, top1)))
    for k in (*range(2, 11), *range(20, 110, 10)):
        metric = TopKAccuracy(k)
        funcs.update(dict.fromkeys((f"top{k}", f"top{k}acc", f"top{k}accuracy"), (None, metric)))
    return funcs


def _builtin_classes() -> dict[str, Entry]:
    classes: dict[str, Entry] = {
        "f1": (None, F1),
        "precision": (None, Precision),
        "recall": (None, Recall),
        **dict.fromkeys(("binaryf1", "binf1"), (None, BinaryF1)),
        **dict.fromkeys(("binaryprecision", "binprecision"), (None, BinaryPrecision)),
        **dict.fromkeys(("binaryrecall", "binrecall"), (None, BinaryRecall)),
    }
    # epochal's extra spellings '{metric}_{average}' (and f1_{average}), logged under that name.
    for metric in ("fscore", "precision", "recall"):
        for average in ("macro", "micro", "binary"):
            log_name = f"{metric}_{average}"
            factory = functools.partial(FBeta, metric=metric, average=average, names=log_name)
            spellings = [log_name] + ([f"f1_{average}"] if metric == "fscore" else [])
            for spelling in spellings:
                classes[clean_metric_class_name(spelling)] = (None, factory)
    return classes


#: The names epochal knows before any registration (Poutyne's, plus a few extra spellings).
BUILTIN_REGISTRY = MetricRegistry(funcs=_builtin_funcs(), classes=_builtin_classes())

#: Loss names accepted by :func:`resolve_loss` (and as metrics). Also accepted: the
#: functional name (``'mse_loss'``) and the module name (``'MSELoss'``).
LOSS_NAMES: tuple[str, ...] = tuple(
    sorted({spelling for _, spellings in _LOSSES.values() for spelling in spellings})
)
#: Batch-metric names of the built-in registry (``top{k}`` stands for any ``k >= 1``).
BATCH_METRIC_NAMES: tuple[str, ...] = tuple(
    sorted(
        {"acc", "accuracy", "bin_acc", "binary_acc", "binary_accuracy"}
        | {"top{k}", "top{k}_acc", "top{k}_accuracy"}
        | set(LOSS_NAMES)
    )
)
#: Epoch-metric names of the built-in registry (any batch-metric name is accepted too).
EPOCH_METRIC_NAMES: tuple[str, ...] = tuple(
    sorted(
        {"f1", "f1_score", "precision", "recall", "bin_f1", "binary_f1", "bin_precision"}
        | {"binary_precision", "bin_recall", "binary_recall"}
        | {f"{m}_{a}" for m in ("fscore", "precision", "recall") for a in ("macro", "micro", "binary")}
        | {f"f1_{a}" for a in ("macro", "micro", "binary")}
    )
)


def unknown_name(kind: str, name: str, valid: Iterable[str], extra: str = "") -> ConfigurationError:
    """The error for an unknown name, listing the valid ones."""
    return ConfigurationError(
        f"Unknown {kind} {name!r}. Valid names: {', '.join(sorted(valid))}.{extra}"
    )


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
        log_name = _LOSS_BY_KEY.get(clean_metric_func_name(spec))
        if log_name is None:
            raise unknown_name("loss", spec, LOSS_NAMES)
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
