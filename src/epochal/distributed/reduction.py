"""Global epoch values: one all-reduce of sums and counts per pass, epoch metrics' state summed.

A pass on each rank ends with an :class:`~epochal.core.records.EpochRecord` whose ``loss`` and
batch metrics are sample-weighted means over that rank's shard. :func:`reduce_pass` turns the
rank's record into the job's: every rank contributes ``(samples, loss * samples,
metric * samples, ...)`` in one float64 ``all_reduce(SUM)``, and the global mean is
``sum(value_r * samples_r) / sum(samples_r)`` -- exactly the mean over all examples of the
epoch, since the exact evaluation shards partition the dataset. Epoch metrics (F1 and the
like) cannot be averaged: their statistics are summed across ranks before they are computed
(:class:`ReducibleState`). Nothing is reduced per step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import attrs
import torch
import torch.distributed as dist
from torch import Tensor

from epochal.core.metrics import EpochMetricState, Metric
from epochal.core.pass_state import statistic_fields
from epochal.core.records import EpochRecord
from epochal.exceptions import ConfigurationError

__all__ = [
    "ReducibleState",
    "check_reducible",
    "reduce_pass",
    "sum_epoch_metric_states",
]


@runtime_checkable
class ReducibleState(Protocol):
    """An epoch metric whose pass statistics are sums, so ranks can add them up.

    Contract: ``state_tensors()`` returns the tensors that fully determine ``compute()``
    (None when nothing was added since ``reset()``); after ``load_state_tensors(ts)`` with
    the element-wise sums of every rank's tensors, ``compute()`` returns the value over the
    union of the ranks' batches. Shapes must not depend on the rank's data, except through
    being None.
    """

    def state_tensors(self) -> list[Tensor] | None: ...

    def load_state_tensors(self, tensors: list[Tensor]) -> None: ...


class _MetricStatistics:
    """:class:`ReducibleState` of an epochal :class:`~epochal.core.metrics.Metric` (``FBeta``
    and its family, ``DecomposableMetric``...): the tensors and numbers its ``reset()``
    clears, all summed across ranks (numbers travel as 0-dim float64 tensors)."""

    def __init__(self, metric: Metric, fields: tuple[str, ...]) -> None:
        self.metric = metric
        self.fields = fields

    def state_tensors(self) -> list[Tensor] | None:
        values = [getattr(self.metric, name) for name in self.fields]
        if any(v is None for v in values):
            return None
        return [
            v if isinstance(v, Tensor) else torch.tensor(float(v), dtype=torch.float64)
            for v in values
        ]

    def load_state_tensors(self, tensors: list[Tensor]) -> None:
        for name, tensor in zip(self.fields, tensors):
            current = getattr(self.metric, name)
            if isinstance(current, Tensor) or current is None:
                setattr(self.metric, name, tensor)
            else:  # a number (e.g. a sample count): keep its Python type
                setattr(self.metric, name, type(current)(tensor.item()))


def _is_self_syncing(metric: Any) -> bool:
    """torchmetrics' ``Metric`` all-gathers its own state in ``compute()`` (``sync_on_compute``
    is True by default)."""
    return bool(getattr(metric, "sync_on_compute", False)) and hasattr(metric, "_reductions")


def _state_of(entry: EpochMetricState) -> ReducibleState | None:
    metric = entry.metric
    if isinstance(metric, ReducibleState):
        return metric
    if isinstance(metric, Metric):
        fields = statistic_fields(metric)
        if fields:
            return _MetricStatistics(metric, fields)
    return None


def check_reducible(epoch_metrics: Sequence[EpochMetricState]) -> None:
    """Check, before any work, that every epoch metric can be computed over all ranks.

    Raises:
        ConfigurationError: A metric is neither an epochal ``Metric`` with statistics
            (``FBeta``, ``DecomposableMetric``...), nor a
            :class:`ReducibleState`, nor a torchmetrics ``Metric`` that syncs on compute; the
            message names it and says what to add.
    """
    for entry in epoch_metrics:
        if _state_of(entry) is None and not _is_self_syncing(entry.metric):
            raise ConfigurationError(
                f"The epoch metric {', '.join(entry.names)} ({type(entry.metric).__name__}) "
                "cannot be computed over all ranks: give it state_tensors() and "
                "load_state_tensors(tensors) returning/accepting its summable statistics "
                "(see epochal.distributed.ReducibleState), or use a torchmetrics Metric."
            )


def sum_epoch_metric_states(
    epoch_metrics: Sequence[EpochMetricState], *, group: Any = None
) -> None:
    """Replace every rank's epoch metric statistics by their sum over all ranks.

    Collective: every rank must call it, after its pass, with the same metrics in the same
    order. Costs one ``all_gather_object`` of the state shapes and one ``all_reduce`` per
    state tensor. torchmetrics metrics are left alone (their ``compute`` syncs).

    Raises:
        ConfigurationError: See :func:`check_reducible`.
    """
    check_reducible(epoch_metrics)
    if not dist.is_initialized():
        return
    states = [_state_of(entry) for entry in epoch_metrics]
    local: list[list[Tensor] | None] = [s.state_tensors() if s else None for s in states]
    shapes = [
        None if ts is None else [(tuple(t.shape), str(t.dtype).removeprefix("torch.")) for t in ts]
        for ts in local
    ]
    gathered: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, shapes, group=group)
    device = _collective_device(group)
    for position, state in enumerate(states):
        if state is None:
            continue
        layouts = [rank_shapes[position] for rank_shapes in gathered]
        known = [layout for layout in layouts if layout is not None]
        if not known:
            continue  # no rank saw a batch: every rank leaves the metric empty
        layout = known[0]
        if any(other != layout for other in known):
            raise ConfigurationError(
                f"The epoch metric {', '.join(epoch_metrics[position].names)} has statistics "
                f"of different shapes on different ranks ({known}); e.g. a different number of "
                "classes seen. Keep the network's output size fixed."
            )
        tensors = local[position]
        if tensors is None:
            tensors = [
                torch.zeros(shape, dtype=getattr(torch, dtype), device=device)
                for shape, dtype in layout
            ]
        summed: list[Tensor] = []
        for tensor in tensors:
            out = tensor.detach().to(device).clone()
            dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
            summed.append(out.to(tensor.device))
        state.load_state_tensors(summed)


def _collective_device(group: Any) -> torch.device:
    if str(dist.get_backend(group)) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def reduce_pass(
    record: EpochRecord,
    *,
    batch_metric_names: Sequence[str],
    epoch_metrics: Sequence[EpochMetricState] = (),
    group: Any = None,
) -> EpochRecord:
    """The job's epoch record from this rank's.

    Collective: every rank calls it once per pass (training, validation, test), in the same
    order. One float64 ``all_reduce`` of ``[samples, loss*samples, metric*samples...]``, then
    :func:`sum_epoch_metric_states` and ``compute()`` of each epoch metric on every rank.

    Args:
        record: This rank's record of the pass (from ``core.loop.run_epoch``); its epoch
            metrics must not have been reset since.
        batch_metric_names: Names of the record's batch metrics (``EpochSetup.metric_names``);
            the record's other metrics are epoch metrics.
        epoch_metrics: The pass's epoch metrics (``EpochSetup.epoch_metrics``).
        group: Process group; the default group when None.

    Returns:
        ``record`` with ``samples``, ``loss`` and ``metrics`` over all ranks (``loss`` is nan
        when no rank saw a batch); ``steps``, ``duration_s`` and ``complete`` stay this rank's.
        Without a process group, ``record`` itself.

    Raises:
        ConfigurationError: An epoch metric cannot be reduced (:func:`check_reducible`), or
            the record has metrics that are neither batch metrics nor in ``epoch_metrics``.
    """
    if not dist.is_initialized():
        return record  # one process: its record is the job's
    names = tuple(batch_metric_names)
    samples = float(record.samples)
    local = [samples, _weighted(record.loss, samples)]
    local.extend(_weighted(record.metrics.get(name, math.nan), samples) for name in names)
    device = _collective_device(group)
    totals = torch.tensor(local, dtype=torch.float64, device=device)
    dist.all_reduce(totals, op=dist.ReduceOp.SUM, group=group)
    values = totals.tolist()  # the pass's one host sync for this
    total_samples = values[0]
    means = [v / total_samples if total_samples else math.nan for v in values[1:]]
    metrics: dict[str, float] = dict(zip(names, means[1:]))
    if epoch_metrics:
        sum_epoch_metric_states(epoch_metrics, group=group)
        if total_samples:
            for entry in epoch_metrics:
                metrics.update(zip(entry.names, entry.compute()))
    else:
        unreduced = [key for key in record.metrics if key not in metrics]
        if unreduced:
            raise ConfigurationError(
                f"The record has metrics {unreduced} that are not batch metrics; pass their "
                "EpochMetricState objects as epoch_metrics so they are computed over all ranks."
            )
    return attrs.evolve(
        record,
        samples=int(total_samples),
        loss=means[0] if total_samples else math.nan,
        metrics=metrics,
    )


def _weighted(mean: float, samples: float) -> float:
    """``mean * samples``; 0 for a rank without samples (whose mean is nan)."""
    return mean * samples if samples else 0.0
