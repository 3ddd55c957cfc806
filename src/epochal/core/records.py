"""Immutable records that the functional core produces and the bus dispatches.

Every record is an ``attrs.frozen`` class with keyword-only fields. Change one with
``attrs.evolve(record, field=value)``, never by mutation. Metric values are read-only mappings.
Step records may carry *detached* 0-dim tensors (no device-to-host copy per step); epoch records
carry Python floats, converted once per pass.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping
from typing import Any

import attrs
import torch

from epochal.core.pass_state import PassStart

__all__ = [
    "BackwardEnd",
    "EpochBegin",
    "EpochEnd",
    "EpochRecord",
    "PassPhase",
    "PhaseBegin",
    "StepBegin",
    "StepRecord",
    "TrainBegin",
    "TrainEnd",
    "frozen_mapping",
    "to_float",
]


class PassPhase(str, enum.Enum):
    """Which pass a record belongs to. The value is Poutyne's log prefix stem."""

    TRAIN = "train"
    VALID = "valid"
    TEST = "test"
    PREDICT = "predict"

    @property
    def prefix(self) -> str:
        """Prefix of this phase's keys in the epoch logs: ``''`` for train, ``'val_'`` for
        validation, ``'test_'`` for test and ``'predict_'`` for prediction."""
        return {"train": "", "valid": "val_", "test": "test_", "predict": "predict_"}[self.value]


def frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Copy ``value`` into a read-only mapping (``types.MappingProxyType`` over a new dict)."""
    if value is None:
        return types.MappingProxyType({})
    if isinstance(value, types.MappingProxyType):
        return value
    return types.MappingProxyType(dict(value))


def _detach_values(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if value is None:
        return types.MappingProxyType({})
    if type(value) is types.MappingProxyType:
        for item in value.values():
            if isinstance(item, torch.Tensor) and item.requires_grad:
                break
        else:
            return value  # already read-only and detached (the core's own records)
    out: dict[str, Any] = {}
    for key, item in value.items():
        out[key] = _detach(item)
    return types.MappingProxyType(out)


def _detach(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and (value.requires_grad or value.grad_fn is not None):
        return value.detach()
    return value


def _to_tuple(value: Any) -> tuple[str, ...]:
    return tuple(value)


def to_float(value: float | torch.Tensor) -> float:
    """A Python float from a float or a 0-dim tensor (a host sync for a device tensor)."""
    if isinstance(value, torch.Tensor):
        return float(value.item())
    return float(value)


@attrs.frozen(kw_only=True)
class StepRecord:
    """One finished step (one batch) of one phase.

    Published after the batch's forward pass (and, in training, its backward pass and, at the
    end of an accumulation group, the optimizer step).

    Attributes:
        phase: The pass this step belongs to.
        epoch: 1-based epoch number (0 for a stand-alone evaluation or prediction).
        step: 1-based index of the batch within its pass.
        global_step: 1-based count of training batches since the start of training; for
            evaluation phases, the same as ``step``.
        batch_size: Number of examples in the batch.
        loss: The batch's mean loss, a detached 0-dim tensor (or a float); ``nan`` when
            there is no loss (prediction).
        metrics: Batch-metric values by log name, detached 0-dim tensors or floats.
        duration_s: Wall time of the step, seconds, from the injected clock.
    """

    phase: PassPhase
    epoch: int
    step: int
    global_step: int
    batch_size: int
    loss: float | torch.Tensor = attrs.field(converter=_detach)
    metrics: Mapping[str, float | torch.Tensor] = attrs.field(
        factory=dict, converter=_detach_values
    )
    duration_s: float

    def logs(self) -> dict[str, Any]:
        """Poutyne's batch logs: ``batch`` and ``size`` (ints), ``time``, the loss and each
        metric with the phase prefix (``loss``/``acc`` in training, ``val_loss``/``val_acc``
        in validation, ``test_loss``/``test_acc`` in a test pass); a prediction's logs are
        ``batch`` and ``time`` alone. Values are Python floats (a host sync per call on an
        accelerator; call it sparingly)."""
        if self.phase is PassPhase.PREDICT:
            return {"batch": self.step, "time": self.duration_s}
        prefix = self.phase.prefix
        out: dict[str, Any] = {
            "batch": self.step,
            "size": self.batch_size,
            "time": self.duration_s,
            f"{prefix}loss": to_float(self.loss),
        }
        for key, value in self.metrics.items():
            out[f"{prefix}{key}"] = to_float(value)
        return out


@attrs.frozen(kw_only=True)
class EpochRecord:
    """One finished pass of one phase over its batches.

    Published once per phase per epoch, after the last step record of that pass.

    Attributes:
        phase: The pass.
        epoch: 1-based epoch number (0 for a stand-alone evaluation).
        steps: Number of batches in the pass.
        samples: Number of examples seen in the pass.
        loss: Sample-weighted mean of the batch losses over the pass.
        metrics: Batch metrics (sample-weighted means) then epoch metrics (computed once over
            the pass), by log name, as floats.
        duration_s: Wall time of the pass, seconds, from the injected clock.
        complete: False when a stop request ended the pass before its last batch.
        first_nonfinite_step: 1-based index of the first batch whose loss was nan or inf,
            found once at the end of the pass (no host sync per step); None when the pass
            loss is finite.
        partial: For a training pass a stop cut short, what its batches left behind (to
            finish it later exactly: see :mod:`epochal.core.pass_state`); else None.
    """

    phase: PassPhase
    epoch: int
    steps: int
    samples: int
    loss: float
    metrics: Mapping[str, float] = attrs.field(factory=dict, converter=frozen_mapping)
    duration_s: float
    complete: bool = True
    first_nonfinite_step: int | None = None
    partial: PassStart | None = attrs.field(default=None, eq=False, repr=False)

    def logs(self) -> dict[str, float]:
        """Logs of this pass with the phase prefix: ``loss``, ``acc`` for training;
        ``val_loss``, ``val_acc`` for validation; ``test_loss`` ... for a test pass."""
        prefix = self.phase.prefix
        out = {f"{prefix}loss": self.loss}
        for key, value in self.metrics.items():
            out[f"{prefix}{key}"] = value
        return out


@attrs.frozen(kw_only=True)
class TrainBegin:
    """Training is about to start.

    Attributes:
        params: Poutyne's ``params``: ``epochs``, ``steps`` (training batches per epoch, or
            None when unknown) and ``valid_steps``.
        initial_epoch: The first epoch that will run (1-based).
        log_keys: The keys of the epoch logs this training writes, in order (``epoch``,
            ``time``, ``loss``, metrics, ``val_loss``, ``val_<metric>``), for sinks that
            write columns.
    """

    params: Mapping[str, Any] = attrs.field(converter=frozen_mapping)
    initial_epoch: int = 1
    log_keys: tuple[str, ...] = attrs.field(default=(), converter=_to_tuple)


@attrs.frozen(kw_only=True)
class TrainEnd:
    """Training ended (last epoch done, or stopped).

    Attributes:
        last_epoch: The last epoch that ran (complete or not); ``initial_epoch - 1`` if none.
        stopped: True when a stop request ended training before ``epochs``.
        logs: The last epoch's logs (empty if no epoch ran).
    """

    last_epoch: int
    stopped: bool
    logs: Mapping[str, float] = attrs.field(factory=dict, converter=frozen_mapping)


@attrs.frozen(kw_only=True)
class EpochBegin:
    """An epoch is about to start. ``epoch`` is 1-based."""

    epoch: int


@attrs.frozen(kw_only=True)
class EpochEnd:
    """An epoch ended; ``logs`` is its full log row with Poutyne's keys (``epoch``, ``time``,
    ``loss``, metrics, ``val_loss``, ``val_<metric>``).

    Attributes:
        epoch: 1-based epoch number.
        logs: The log row, Python floats (``epoch`` is an int).
        complete: False when a stop request ended the epoch's training pass early (validation
            is then skipped and the ``val_*`` keys are absent).
        lrs: The optimizer's learning rates at the epoch's end (``{'lr': x}``, or
            ``{'lr_group_<i>': x}`` per parameter group; empty without an optimizer), for
            sinks that write them beside the log row.
    """

    epoch: int
    logs: Mapping[str, float] = attrs.field(converter=frozen_mapping)
    complete: bool = True
    lrs: Mapping[str, float] = attrs.field(factory=dict, converter=frozen_mapping)


@attrs.frozen(kw_only=True)
class PhaseBegin:
    """A pass of ``phase`` is about to start (Poutyne's ``on_valid_begin``, ...)."""

    phase: PassPhase
    epoch: int


@attrs.frozen(kw_only=True)
class StepBegin:
    """A batch of ``phase`` is about to run (Poutyne's ``on_train_batch_begin``, ...).

    ``step`` is 1-based within the pass.
    """

    phase: PassPhase
    epoch: int
    step: int


@attrs.frozen(kw_only=True)
class BackwardEnd:
    """The gradients of an optimizer step are final (accumulated and normalised) and the
    optimizer is about to step (Poutyne's ``on_backward_end``; gradient clipping acts here).

    ``step`` is the 1-based index, within the training pass, of the batch that closes the
    accumulation group.
    """

    epoch: int
    step: int
