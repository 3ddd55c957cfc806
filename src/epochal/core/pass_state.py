"""What a training pass cut short leaves behind, so that it can be finished later exactly.

A pass stopped after ``s`` of its batches (a preemption) is resumed by running the remaining
batches with the first ``s`` batches' per-batch values and epoch metric statistics put back
first: the epoch's loss and metrics are then the same operations, in the same order, as an
uninterrupted pass's (see :class:`epochal.core.loop._PassAccumulator`), so bit-identical.

Epoch metric statistics are found generically: the private attributes (a tensor, None or a
number) that a metric's ``reset()`` assigns (:func:`statistic_fields`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch

__all__ = ["PassStart", "load_metric_statistics", "metric_statistics", "statistic_fields"]

_SENTINEL = object()


def statistic_fields(metric: Any) -> tuple[str, ...]:
    """The attributes holding a metric's pass statistics: its private attributes (a tensor,
    None or a number) that ``reset()`` assigns.

    Found by running ``reset()`` on a shallow copy whose candidate attributes hold a sentinel:
    those it overwrote are the statistics (configuration is left alone). A metric without
    ``reset()``, or whose ``reset()`` fails on the copy, has none.
    """
    reset = getattr(metric, "reset", None)
    if not callable(reset) or not hasattr(metric, "__dict__"):
        return ()
    candidates = [
        name
        for name, value in vars(metric).items()
        if name.startswith("_") and not name.startswith("__")
        and (value is None or isinstance(value, (torch.Tensor, int, float)))
        and not isinstance(value, bool)
    ]
    if not candidates:
        return ()
    probe = copy.copy(metric)
    probe.__dict__.update(dict.fromkeys(candidates, _SENTINEL))
    try:
        probe.reset()
    except Exception:
        return ()
    return tuple(name for name in candidates if probe.__dict__.get(name) is not _SENTINEL)


def metric_statistics(metric: Any) -> dict[str, Any] | None:
    """A copy of a metric's pass statistics (:func:`statistic_fields`), or None when it has
    none that can be found."""
    fields = statistic_fields(metric)
    if not fields:
        return None
    out: dict[str, Any] = {}
    for name in fields:
        value = getattr(metric, name)
        out[name] = value.detach().clone() if isinstance(value, torch.Tensor) else value
    return out


def load_metric_statistics(
    metric: Any, statistics: Mapping[str, Any] | None, device: torch.device | None = None
) -> None:
    """Put statistics from :func:`metric_statistics` back (after the metric's ``reset()``),
    their tensors on ``device`` when given."""
    if not statistics:
        return
    for name, value in statistics.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device) if device is not None else value.clone()
        setattr(metric, name, value)


@attrs.frozen(kw_only=True)
class PassStart:
    """A training pass's first ``steps`` batches, as far as the rest of the pass needs them.

    Attributes:
        steps: Batches already run in the pass.
        sizes: Examples per batch, in order.
        columns: Per-batch values (float64 exact, as Python floats): the loss first, then each
            batch metric in ``EpochSetup.metric_names`` order; one value per batch.
        epoch_metrics: Per epoch metric, its statistics (:func:`metric_statistics`) or None.
    """

    steps: int
    sizes: tuple[int, ...] = ()
    columns: tuple[tuple[float, ...], ...] = ()
    epoch_metrics: tuple[Mapping[str, Any] | None, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (for ``torch.save`` with ``weights_only`` loading)."""
        return {
            "steps": self.steps,
            "sizes": list(self.sizes),
            "columns": [list(column) for column in self.columns],
            "epoch_metrics": [None if s is None else dict(s) for s in self.epoch_metrics],
        }

    @classmethod
    def from_dict(cls, content: Mapping[str, Any]) -> PassStart:
        """Inverse of :meth:`to_dict`."""
        metrics: Sequence[Any] = content.get("epoch_metrics", ())
        return cls(
            steps=int(content["steps"]),
            sizes=tuple(int(s) for s in content.get("sizes", ())),
            columns=tuple(tuple(float(v) for v in c) for c in content.get("columns", ())),
            epoch_metrics=tuple(None if s is None else dict(s) for s in metrics),
        )
