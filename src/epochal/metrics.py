"""Poutyne's metric-name registry (``register_metric_func``, ``register_metric_class``,
``unregister_metric_class``, ``get_metric``) and :class:`SKLearnMetrics`.

The registry is process-wide, as in Poutyne: a registration is seen by every ``Model``
created after it. The core resolvers take it as an argument (:func:`metric_registry`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from epochal.core.metrics import (
    BUILTIN_REGISTRY,
    DecomposableMetric,
    Metric,
    MetricRegistry,
    ReducedBatchMetric,
    camel_to_snake,
    clean_metric_class_name,
    clean_metric_func_name,
)
from epochal.exceptions import ConfigurationError

__all__ = [
    "BatchMetric",
    "IndexedArgumentMetric",
    "SKLearnMetrics",
    "clean_metric_class_name",
    "clean_metric_func_name",
    "convert_decomposable_metric_to_object",
    "do_register_metric_class",
    "do_register_metric_func",
    "flatten_metric_names",
    "get_metric",
    "get_names_of_metric",
    "metric_registry",
    "register_metric_class",
    "register_metric_func",
    "unregister_metric_class",
]

#: Poutyne's base class of batch metrics with a ``reduction`` argument (``Accuracy``,
#: ``BinaryAccuracy``, ``TopKAccuracy``); in :mod:`epochal.core.metrics` the name
#: ``BatchMetric`` is the loop's resolved metric record, so the class lives there as
#: :class:`~epochal.core.metrics.ReducedBatchMetric`.
BatchMetric = ReducedBatchMetric

_lock = threading.Lock()
_registry: MetricRegistry = BUILTIN_REGISTRY

_T = TypeVar("_T")


def metric_registry() -> MetricRegistry:
    """The registry now: the built-in names plus every registration so far (a frozen copy)."""
    return _registry


def _name_list(names: Any, default: str) -> list[str]:
    if names is None or (isinstance(names, (tuple, list)) and len(names) == 0):
        return [default]
    if isinstance(names, str):
        return [names]
    if isinstance(names, (tuple, list)) and all(isinstance(n, str) and n for n in names):
        return list(names)
    raise ConfigurationError(f"Metric names must be a str or a list of str; got {names!r}.")


def do_register_metric_func(
    func: Callable[..., Any], names: str | Sequence[str] | None = None, unique_name: str | None = None
) -> list[str]:
    """Register ``func`` under ``names`` (default its ``__name__``).

    A string metric with one of these names (case, underscores and a trailing ``loss`` do not
    matter) then means ``func``, logged under ``unique_name`` or else ``func.__name__``.

    Returns:
        The cleaned keys registered.

    Raises:
        ConfigurationError: ``names`` is not a str or a list of str.
    """
    global _registry
    keys = [clean_metric_func_name(n) for n in _name_list(names, getattr(func, "__name__", ""))]
    with _lock:
        _registry = _registry.with_funcs(dict.fromkeys(keys, (unique_name, func)))
    return keys


def do_register_metric_class(
    clz: Callable[[], Any], names: str | Sequence[str] | None = None, unique_name: str | None = None
) -> list[str]:
    """Register a metric class under ``names`` (default its name in snake_case).

    A string metric with one of these names (case, underscores and a trailing ``score`` do not
    matter) then means ``clz()``, a new instance per use, logged under ``unique_name`` or else
    the instance's own name.

    Returns:
        The cleaned keys registered.

    Raises:
        ConfigurationError: ``names`` is not a str or a list of str.
    """
    global _registry
    default = camel_to_snake(getattr(clz, "__name__", type(clz).__name__))
    keys = [clean_metric_class_name(n) for n in _name_list(names, default)]
    with _lock:
        _registry = _registry.with_classes(dict.fromkeys(keys, (unique_name, clz)))
    return keys


def unregister_metric_class(names: Iterable[str]) -> None:
    """Remove class registrations by their cleaned keys (as :func:`do_register_metric_class`
    returns them).

    Raises:
        KeyError: A key is not registered.
    """
    global _registry
    with _lock:
        _registry = _registry.without_classes(list(names))


def _decorator(register: Callable[..., list[str]]) -> Callable[..., Any]:
    def decorator(*args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and callable(args[0]) and not kwargs:
            register(args[0])
            return args[0]

        def apply(target: _T) -> _T:
            register(target, list(args), **kwargs)
            return target

        return apply

    return decorator


#: Decorator registering a metric function: ``@register_metric_func`` (under its name) or
#: ``@register_metric_func('name1', 'name2', unique_name=None)``.
register_metric_func = _decorator(do_register_metric_func)
#: Decorator registering a metric class: ``@register_metric_class`` (under its snake_case
#: name) or ``@register_metric_class('name1', 'name2', unique_name=None)``.
register_metric_class = _decorator(do_register_metric_class)


def get_metric(metric: Any) -> Any:
    """What a metric spec names, as Poutyne's ``get_metric``.

    A string gives the registered function or a new instance of the registered class (or a
    ``(unique_name, metric)`` tuple when registered with a unique name); a ``(name, str)``
    tuple gives ``(name, metric)``; anything else is returned as is.

    Raises:
        ConfigurationError: Unknown name.
    """
    if isinstance(metric, str):
        return _lookup(metric)
    if isinstance(metric, tuple) and len(metric) == 2 and isinstance(metric[1], str):
        found = _lookup(metric[1])
        return metric[0], found[1] if isinstance(found, tuple) else found
    return metric


def _lookup(name: str) -> Any:
    found = _registry.lookup(name)
    if found is None:
        raise ConfigurationError(
            f"Unknown metric {name!r}. Valid names: {', '.join(_registry.names())}."
        )
    log_name, obj = found
    return (log_name, obj) if log_name is not None else obj


def get_names_of_metric(metric: Any) -> tuple[Any, Any]:
    """``(names, metric)`` of a metric spec, by Poutyne's rules: a ``(names, metric)`` tuple as
    is; else the metric's ``__name__``; else its class name in snake_case."""
    if isinstance(metric, tuple):
        names, metric = metric
        return names, metric
    names = getattr(metric, "__name__", None)
    return (names if names is not None else camel_to_snake(type(metric).__name__)), metric


def flatten_metric_names(metric_names: Iterable[Any]) -> list[str]:
    """``['a', ['b', 'c']]`` -> ``['a', 'b', 'c']``."""
    return [
        name
        for names in metric_names
        for name in (names if isinstance(names, (tuple, list)) else [names])
    ]


def convert_decomposable_metric_to_object(
    metric: Any, names: str | Sequence[str], is_epoch_metric: bool = False
) -> Any:
    """``metric`` itself when it is a module with ``compute`` and ``reset`` (and ``update``
    for an epoch metric); else a :class:`~epochal.core.metrics.base.DecomposableMetric` of it
    under ``names`` (Poutyne's rule)."""
    if (
        isinstance(metric, torch.nn.Module)
        and callable(getattr(metric, "compute", None))
        and callable(getattr(metric, "reset", None))
        and (not is_epoch_metric or callable(getattr(metric, "update", None)))
    ):
        return metric
    return DecomposableMetric(metric, names)


class IndexedArgumentMetric(Metric):
    """A metric applied to one item of a multi-output prediction and/or target (Poutyne's).

    ``IndexedArgumentMetric('acc', index=0)`` computes accuracy on ``y_pred[0]`` and
    ``y_true[0]``; the log name is the wrapped metric's.

    Args:
        metric: A metric name, a function ``(y_pred, y_true)`` (averaged per batch, as a
            :class:`~epochal.core.metrics.base.DecomposableMetric`), or a metric module with
            ``compute`` and ``reset``.
        index: Index applied to both ``y_pred`` and ``y_true``.
        pred_index: Index applied to ``y_pred`` only.
        true_index: Index applied to ``y_true`` only.

    Raises:
        ConfigurationError: ``index`` given with ``pred_index`` or ``true_index``; unknown name.
    """

    def __init__(
        self,
        metric: Any,
        *,
        index: Any = None,
        pred_index: Any = None,
        true_index: Any = None,
    ) -> None:
        super().__init__()
        if index is not None and (pred_index is not None or true_index is not None):
            raise ConfigurationError(
                "IndexedArgumentMetric takes either index or pred_index/true_index, not both."
            )
        log_name: str | None = None
        if isinstance(metric, str):
            found = _lookup(metric)
            log_name, metric = found if isinstance(found, tuple) else (None, found)
        names: Any = log_name if log_name is not None else get_names_of_metric(metric)[0]
        metric = convert_decomposable_metric_to_object(metric, names)
        self.__name__: Any = names
        self.metric = metric
        self.pred_index = index if index is not None else pred_index
        self.true_index = index if index is not None else true_index

    def _select(self, y_pred: Any, y_true: Any) -> tuple[Any, Any]:
        if self.pred_index is not None:
            y_pred = y_pred[self.pred_index]
        if self.true_index is not None:
            y_true = y_true[self.true_index]
        return y_pred, y_true

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        """The wrapped metric's batch value on the selected items."""
        return self.metric(*self._select(y_pred, y_true))

    def update(self, y_pred: Any, y_true: Any) -> None:
        """Update the wrapped metric with the selected items."""
        self.metric.update(*self._select(y_pred, y_true))

    def compute(self) -> Any:
        """The wrapped metric's value over the pass."""
        return self.metric.compute()

    def reset(self) -> None:
        """Reset the wrapped metric."""
        self.metric.reset()


class SKLearnMetrics(Metric):
    """Metrics with scikit-learn's interface ``func(y_true, y_pred, sample_weight=..., **kw)``
    over a whole pass (Poutyne's ``SKLearnMetrics``).

    Keeps every batch's targets and predictions (copied to the host, NumPy) until
    :meth:`compute`; use it as an epoch metric.

    Args:
        funcs: A function or a list of them (e.g. ``sklearn.metrics.roc_auc_score``).
        kwargs: Keyword arguments for each function: a dict, or a list of one dict per function.
        names: Log names, one per function; default each function's ``__name__``.

    Shapes:
        y_pred, y_true: what the functions expect, batch first; ``y_true`` may be a tuple
        ``(y_true, sample_weight)``.

    Raises:
        ConfigurationError: ``kwargs`` or ``names`` of a length other than ``funcs``'.
    """

    def __init__(
        self,
        funcs: Callable[..., Any] | list[Callable[..., Any]],
        kwargs: dict[str, Any] | list[dict[str, Any]] | None = None,
        names: str | list[str] | None = None,
    ) -> None:
        super().__init__()
        self.funcs = list(funcs) if isinstance(funcs, (list, tuple)) else [funcs]
        if kwargs is None:
            self.kwargs: list[dict[str, Any]] = [{} for _ in self.funcs]
        else:
            self.kwargs = list(kwargs) if isinstance(kwargs, (list, tuple)) else [kwargs]
            if len(self.kwargs) != len(self.funcs):
                raise ConfigurationError(
                    f"SKLearnMetrics got {len(self.kwargs)} kwargs dicts for {len(self.funcs)} "
                    "functions; give one per function."
                )
        if names is None:
            self.__name__: list[str] = [f.__name__ for f in self.funcs]
        else:
            self.__name__ = list(names) if isinstance(names, (list, tuple)) else [names]
            if len(self.__name__) != len(self.funcs):
                raise ConfigurationError(
                    f"SKLearnMetrics got {len(self.__name__)} names for {len(self.funcs)} "
                    "functions; give one per function."
                )
        self.reset()

    def reset(self) -> None:
        """Forget every stored batch."""
        self.y_true_list: list[Any] = []
        self.y_pred_list: list[Any] = []
        self.sample_weight_list: list[Any] = []

    def _add(self, y_pred: torch.Tensor, y_true: Any) -> tuple[Any, Any, Any]:
        pred = y_pred.detach().cpu().numpy()
        weight = None
        if isinstance(y_true, (tuple, list)):
            y_true, weight_tensor = y_true
            weight = weight_tensor.detach().cpu().numpy().reshape(-1)
            self.sample_weight_list.append(weight)
        true = y_true.detach().cpu().numpy()
        self.y_pred_list.append(pred)
        self.y_true_list.append(true)
        return true, pred, weight

    def update(self, y_pred: torch.Tensor, y_true: Any) -> None:
        """Store one batch (a host copy)."""
        self._add(y_pred, y_true)

    def forward(self, y_pred: torch.Tensor, y_true: Any) -> dict[str, Any]:
        """Store one batch and return the functions' values on it, by name."""
        return self._evaluate(*self._add(y_pred, y_true))

    def compute(self) -> dict[str, Any]:
        """The functions' values on every stored batch, by name.

        Raises:
            ConfigurationError: Nothing was stored.
        """
        if not self.y_true_list:
            raise ConfigurationError("SKLearnMetrics.compute: no batch was added since reset.")
        weight = np.concatenate(self.sample_weight_list) if self.sample_weight_list else None
        return self._evaluate(
            np.concatenate(self.y_true_list), np.concatenate(self.y_pred_list), weight
        )

    def _evaluate(self, y_true: Any, y_pred: Any, weight: Any) -> dict[str, Any]:
        return {
            name: func(y_true, y_pred, sample_weight=weight, **kw)
            for name, func, kw in zip(self.__name__, self.funcs, self.kwargs, strict=True)
        }


