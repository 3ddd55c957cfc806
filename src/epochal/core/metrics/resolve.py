"""Turn ``Model(batch_metrics=..., epoch_metrics=...)`` into the objects the loop uses.

The registry of names is an argument (default :data:`BUILTIN_REGISTRY`), so this module
holds no state; :mod:`epochal.metrics` passes the one holding the user's registrations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
from torch import nn

from epochal.core.metrics.base import DecomposableMetric
from epochal.core.metrics.registry import (
    BATCH_METRIC_NAMES,
    BUILTIN_REGISTRY,
    EPOCH_METRIC_NAMES,
    MetricRegistry,
)
from epochal.core.metrics.resolved import (
    BatchMetric,
    EpochMetricState,
    default_names,
    names_tuple,
    rename_doubles,
)
from epochal.exceptions import ConfigurationError

__all__ = ["ResolvedMetrics", "resolve_batch_metrics", "resolve_epoch_metrics", "resolve_metrics"]


@attrs.frozen(kw_only=True)
class ResolvedMetrics:
    """The metrics of a model, resolved and named.

    Attributes:
        batch: One :class:`BatchMetric` per batch metric, in order.
        epoch: One :class:`EpochMetricState` per epoch metric, in order, then one per stateful
            batch metric (``from_batch=True``) whose ``compute`` gives that batch metric's
            value for the pass, replacing the mean of its batch values (Poutyne's rule).
        batch_names: Log names of the batch metrics, flat, in order.
        epoch_names: Log names of the epoch metrics, flat, in order.
    """

    batch: tuple[BatchMetric, ...]
    epoch: tuple[EpochMetricState, ...]
    batch_names: tuple[str, ...]
    epoch_names: tuple[str, ...]


def _split_spec(spec: Any, what: str) -> tuple[tuple[str, ...] | None, Any]:
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise TypeError(
                f"{what}: a tuple must be (name, metric) or ((name1, name2), metric); got a "
                f"tuple of {len(spec)} items."
            )
        return names_tuple(spec[0], what), spec[1]
    return None, spec


def _lookup(name: str, what: str, registry: MetricRegistry) -> tuple[tuple[str, ...] | None, Any]:
    found = registry.lookup(name)
    if found is None:
        extra = sorted(set(registry.names()) - set(BUILTIN_REGISTRY.names()))
        raise ConfigurationError(
            f"{what}: unknown metric {name!r}. Valid names: {', '.join(BATCH_METRIC_NAMES)}; "
            f"and {', '.join(EPOCH_METRIC_NAMES)}"
            + (f"; registered: {', '.join(extra)}" if extra else "")
            + ". top{k} stands for any k >= 1; loss names may also be written as the "
            "functional ('mse_loss') or module ('MSELoss') name."
        )
    log_name, metric = found
    return (names_tuple(log_name, what) if log_name is not None else None), metric


def _object(spec: Any, what: str, registry: MetricRegistry) -> tuple[tuple[str, ...], Any]:
    names, metric = _split_spec(spec, what)
    if isinstance(metric, str):
        found_names, metric = _lookup(metric, what, registry)
        names = names if names is not None else found_names
    if isinstance(metric, type):
        raise TypeError(
            f"{what} is the class {metric.__name__}; pass an instance, e.g. {metric.__name__}()."
        )
    return (names if names is not None else default_names(metric, what)), metric


def _is_stateful(metric: Any) -> bool:
    """Poutyne keeps a module with ``compute`` and ``reset`` as is: its pass value is
    ``compute()``, not the mean of its batch values."""
    return (
        isinstance(metric, nn.Module)
        and callable(getattr(metric, "compute", None))
        and callable(getattr(metric, "reset", None))
    )


def _epoch_state(names: tuple[str, ...], metric: Any, what: str) -> EpochMetricState:
    if (callable(getattr(metric, "update", None)) and callable(getattr(metric, "compute", None))) or (
        callable(getattr(metric, "forward", None)) and callable(getattr(metric, "get_metric", None))
    ):
        return EpochMetricState(names, metric)
    if callable(metric):  # a function: the batch-size-weighted mean of its batch values
        return EpochMetricState(names, DecomposableMetric(metric, list(names)))
    raise TypeError(
        f"{what} must be a metric name (str), a function (y_pred, y_true), an object with "
        "update(y_pred, y_true), compute() and reset() (Poutyne's Metric, torchmetrics), or a "
        f"(name, metric) tuple; got {type(metric).__name__}."
    )


def _check_list(specs: Sequence[Any] | None, argument: str, example: str) -> Sequence[Any]:
    if specs is None:
        return ()
    if isinstance(specs, (str, bytes)) or not isinstance(specs, Sequence):
        raise TypeError(
            f"{argument} must be a list of metrics; got {type(specs).__name__}. "
            f"Write {argument}=[{example}], not {argument}={example}."
        )
    return specs


def resolve_metrics(
    batch_metrics: Sequence[Any] | None,
    epoch_metrics: Sequence[Any] | None,
    *,
    registry: MetricRegistry = BUILTIN_REGISTRY,
) -> ResolvedMetrics:
    """Resolve a model's batch and epoch metrics, as Poutyne's ``Model`` does.

    Each item is one of: a registered name (``'acc'``, ``'bin_acc'``, ``'top5'``, ``'f1'``,
    ``'bin_f1'``, a loss name, or a name added with :func:`epochal.metrics.register_metric_func`
    / ``register_metric_class``); a function ``(y_pred, y_true)``; a metric object (Poutyne's
    :class:`~epochal.core.metrics.base.Metric`, a torchmetrics metric, or any module); a
    ``(name, metric)`` tuple; or ``((name1, name2, ...), metric)`` for a metric returning
    several values.

    Names: a tuple's names; else the metric's ``__name__`` (a list for several values); else
    the snake_case of its class name. Names occurring more than once over both lists are
    numbered from 1 without separator (``acc1``, ``acc2``).

    As a batch metric, an object is called per batch (``forward``) for the batch's value; a
    module with ``compute`` and ``reset`` gives the pass's value with ``compute``, anything
    else the batch-size-weighted mean of its batch values. As an epoch metric, an object with
    ``update``/``compute`` is updated per batch and computed once; a function is averaged
    like a batch metric (:class:`~epochal.core.metrics.base.DecomposableMetric`).

    Args:
        batch_metrics: Batch metrics, or None.
        epoch_metrics: Epoch metrics, or None.
        registry: Where names are looked up.

    Returns:
        The resolved metrics and their log names.

    Raises:
        ConfigurationError: Unknown name (the message lists the valid names).
        TypeError: A spec of the wrong type (the message says what was expected).
    """
    batch_specs = _check_list(batch_metrics, "batch_metrics", "'accuracy'")
    epoch_specs = _check_list(epoch_metrics, "epoch_metrics", "'f1'")
    batch_objects = [
        _object(spec, f"batch_metrics[{i}]", registry) for i, spec in enumerate(batch_specs)
    ]
    epoch_objects = [
        _object(spec, f"epoch_metrics[{i}]", registry) for i, spec in enumerate(epoch_specs)
    ]
    for i, (_, metric) in enumerate(batch_objects):
        if not callable(metric):
            raise TypeError(
                f"batch_metrics[{i}] must be a metric name (str), a callable (y_pred, y_true), "
                f"or a (name, metric) tuple; got {type(metric).__name__}."
            )
    renamed = rename_doubles([names for names, _ in batch_objects + epoch_objects])
    batch_names, epoch_names = renamed[: len(batch_objects)], renamed[len(batch_objects) :]
    batch = tuple(
        BatchMetric(names, metric)
        for names, (_, metric) in zip(batch_names, batch_objects, strict=True)
    )
    epoch = [
        _epoch_state(names, metric, f"epoch_metrics[{i}]")
        for i, (names, (_, metric)) in enumerate(zip(epoch_names, epoch_objects, strict=True))
    ]
    epoch += [
        EpochMetricState(names, metric, from_batch=True)
        for names, (_, metric) in zip(batch_names, batch_objects, strict=True)
        if _is_stateful(metric)
    ]
    return ResolvedMetrics(
        batch=batch,
        epoch=tuple(epoch),
        batch_names=tuple(name for names in batch_names for name in names),
        epoch_names=tuple(name for names in epoch_names for name in names),
    )


def resolve_batch_metrics(
    specs: Sequence[Any] | None, *, registry: MetricRegistry = BUILTIN_REGISTRY
) -> list[BatchMetric]:
    """The batch metrics of :func:`resolve_metrics` alone (doubles numbered among them)."""
    return list(resolve_metrics(specs, None, registry=registry).batch)


def resolve_epoch_metrics(
    specs: Sequence[Any] | None, *, registry: MetricRegistry = BUILTIN_REGISTRY
) -> list[EpochMetricState]:
    """The epoch metrics of :func:`resolve_metrics` alone (doubles numbered among them)."""
    return list(resolve_metrics(None, specs, registry=registry).epoch)
