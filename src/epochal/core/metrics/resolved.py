"""Resolved metrics the loop uses: :class:`BatchMetric` and :class:`EpochMetricState`, and the
naming rules of metric logs (default names, Poutyne's numbering of doubles, uniqueness)."""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor

from epochal.exceptions import ConfigurationError

__all__ = [
    "BatchMetric",
    "EpochMetricState",
    "camel_to_snake",
    "check_unique_names",
    "default_names",
    "names_tuple",
    "rename_doubles",
]

_CAMEL1 = re.compile(r"(.)([A-Z][a-z]+)")
_CAMEL2 = re.compile(r"([a-z0-9])([A-Z])")


def camel_to_snake(name: str) -> str:
    """``'SomeConstantMetric'`` -> ``'some_constant_metric'`` (Poutyne's rule for the log name
    of a metric object without ``__name__``)."""
    return _CAMEL2.sub(r"\1_\2", _CAMEL1.sub(r"\1_\2", name)).lower()


def names_tuple(value: Any, what: str) -> tuple[str, ...]:
    """``value`` (a name or a list/tuple of names) as a tuple of non-empty strings.

    Raises:
        TypeError: ``value`` is not a str or a sequence of non-empty str.
    """
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




def default_names(obj: Any, what: str) -> tuple[str, ...]:
    """Log names of a metric given without a name, by Poutyne's rules.

    Its ``__name__`` (a function's name, or an attribute that may be a list of names); a
    ``functools.partial`` takes its function's; else the snake_case of its class name. A
    lambda logs as ``'<lambda>'`` (numbered ``'<lambda>1'``, ``'<lambda>2'`` when there are
    several), as in Poutyne; pass ``('name', fn)`` for a name that reads better.
    """
    target = obj
    while isinstance(target, functools.partial):
        target = target.func
    name = getattr(target, "__name__", None)
    if name is None:
        name = camel_to_snake(type(target).__name__)
    return names_tuple(name, what)


def rename_doubles(names: Sequence[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Number every name that occurs more than once, from 1, without separator (Poutyne).

    ``[('acc',), ('f1', 'acc'), ('top3',)]`` -> ``[('acc1',), ('f1', 'acc2'), ('top3',)]``.

    Args:
        names: The names of each metric, batch metrics then epoch metrics.

    Returns:
        The names with the same structure; names seen once are unchanged.
    """
    counts = Counter(name for group in names for name in group)
    numbering: Counter[str] = Counter()

    def renamed(name: str) -> str:
        if counts[name] < 2:
            return name
        numbering[name] += 1
        return f"{name}{numbering[name]}"

    return [tuple(renamed(name) for name in group) for group in names]


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
            # The common case, kept cheap (called once per batch): a value computed from the
            # detached output (accuracy: arg-max, counts) has no graph and needs no detach op.
            return (result.detach() if result.requires_grad else result,)
        what = f"Batch metric {', '.join(self.names)}"
        device = _device_of(y_pred)
        return tuple(
            _scalar_tensor(value, device, what) for value in _split_values(result, self.names, what)
        )


def _ignore(y_pred: Any, y_true: Any) -> None:
    """The update of a stateful batch metric's pass value: its forward already added it."""


def _to_floats(value: Any, what: str) -> list[float]:
    if isinstance(value, Tensor):
        return [float(item) for item in value.detach().reshape(-1).tolist()]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    if hasattr(value, "tolist") and hasattr(value, "shape"):  # NumPy arrays and scalars
        listed = value.tolist()
        return [float(item) for item in (listed if isinstance(listed, list) else [listed])]
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
        from_batch: The object is also a batch metric whose ``forward`` already adds each
            batch (Poutyne's stateful batch metric): :meth:`update` then does nothing, and
            ``compute`` gives the pass's value of the batch metric.

    Raises:
        TypeError: ``metric`` has neither ``update``/``compute`` nor ``forward``/``get_metric``.
    """

    def __init__(self, names: tuple[str, ...], metric: Any, *, from_batch: bool = False) -> None:
        self.names = names
        self.metric = metric
        self.from_batch = from_batch
        if from_batch and callable(getattr(metric, "compute", None)):
            self._update: Callable[[Any, Any], Any] = _ignore
            self._compute: Callable[[], Any] = metric.compute
        elif callable(getattr(metric, "update", None)) and callable(getattr(metric, "compute", None)):
            self._update = metric.update
            self._compute = metric.compute
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
        return (
            f"EpochMetricState(names={self.names!r}, metric={self.metric!r}, "
            f"from_batch={self.from_batch!r})"
        )

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

