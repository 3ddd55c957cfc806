"""The training driver: the epoch loop over :func:`epochal.core.loop.run_epoch`.

It runs passes, publishes their records on the bus, applies the directives handlers return
(``StopTraining``), counts the global step and builds each epoch's log row with the pure
:func:`epochal.core.logs.epoch_log_row`. ``Model`` (Poutyne's façade) checks arguments, builds
loaders and shapes return values around it; the distributed layer plugs in here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from epochal._nonfinite import stopped_at_first_nonfinite
from epochal.bus import RecordBus
from epochal.core.batches import cycle_batches, skip_batches
from epochal.core.directives import StopTraining
from epochal.core.logs import epoch_log_row
from epochal.core.loop import run_epoch
from epochal.core.pass_state import PassStart
from epochal.core.records import (
    BackwardEnd,
    EpochBegin,
    EpochEnd,
    EpochRecord,
    PassPhase,
    PhaseBegin,
    StepBegin,
    StepRecord,
    TrainBegin,
    TrainEnd,
)
from epochal.core.steps import EpochSetup
from epochal.ports import TrainingContext

__all__ = ["TrainingDriver"]


class _PassHooks:
    """The :class:`epochal.core.loop.PassHooks` of one pass: publishes ``StepBegin`` and
    ``BackwardEnd`` when someone listens, and passes the context's stop request on."""

    __slots__ = ("_driver", "_epoch", "_phase", "_training", "announces_backward",
                 "announces_steps")

    def __init__(self, driver: TrainingDriver, phase: PassPhase, epoch: int) -> None:
        self._driver = driver
        self._phase = phase
        self._epoch = epoch
        self._training = phase is PassPhase.TRAIN
        bus = driver.bus
        self.announces_steps = bus.has_subscribers(StepBegin)
        self.announces_backward = self._training and bus.has_subscribers(BackwardEnd)

    def step_begins(self, step: int) -> None:
        self._driver.publish(StepBegin(phase=self._phase, epoch=self._epoch, step=step))

    def gradients_ready(self, step: int) -> None:
        self._driver.publish(BackwardEnd(epoch=self._epoch, step=step))

    def stop_requested(self) -> bool:
        return self._training and self._driver.context.stop_training

    def finishes_group(self) -> bool:
        """A preemption runs the accumulation group to its end (an exact resume point)."""
        preemption = self._driver.preemption
        return preemption is not None and preemption.requested


class TrainingDriver:
    """Runs passes and epochs for one training context, on one bus.

    Args:
        bus: Where records are published.
        context: The training's state that callbacks read and write (``stop_training``,
            ``epoch_complete``, ``learning_rates()``): the ``Model``.
        clock: Seconds, monotonic.
        global_step: Training batches run before (a resumed training's count).

    Attributes:
        global_step: Training batches run so far, updated at the end of each training pass.
        preemption: The preemption guard of the running ``fit`` (``ModelBundle.train``'s), or
            None: once it has seen a signal, a stop inside a group of accumulated batches
            waits for the group's end (so the mid-epoch snapshot is an exact resume point).
    """

    def __init__(
        self,
        *,
        bus: RecordBus,
        context: TrainingContext,
        clock: Callable[[], float],
        global_step: int = 0,
    ) -> None:
        self.bus = bus
        self.context = context
        self.clock = clock
        self.global_step = global_step
        self.preemption: Any = None

    def publish(self, record: Any) -> None:
        """Publish ``record`` and apply the directives its handlers return."""
        directives = self.bus.publish(record)
        if directives:
            self.apply(directives)

    def apply(self, directives: list[Any]) -> None:
        """Apply directives: ``StopTraining`` sets ``context.stop_training``."""
        for directive in directives:
            if isinstance(directive, StopTraining):
                self.context.stop_training = True

    # Seams of the distributed layer (epochal._parallel.ParallelDriver overrides them); one
    # process keeps these defaults, which add no work per step.

    def _pass_hooks(self, phase: PassPhase, epoch: int) -> _PassHooks:
        return _PassHooks(self, phase, epoch)

    def _step_publisher(self) -> Callable[[Any], list[Any]]:
        return self.bus.publish

    def _finish_pass(self, setup: EpochSetup, record: EpochRecord) -> EpochRecord:
        return record

    def _end_epoch(self) -> None:
        return None

    def run_pass(
        self,
        setup: EpochSetup,
        batches: Iterable[Any],
        *,
        phase: PassPhase,
        epoch: int,
        has_ground_truth: bool = True,
        outputs: list[tuple[Any, Any]] | None = None,
        start: PassStart | None = None,
        batch_count: int | None = None,
    ) -> EpochRecord:
        """Run one pass, publishing ``PhaseBegin``, the step records (when subscribed) and
        the epoch record.

        Args:
            setup: The pass's network, loss, metrics, optimizer and device.
            batches: The pass's batches, iterated once.
            phase: Which pass.
            epoch: 1-based epoch (0 outside ``fit``).
            has_ground_truth: False for inputs alone (prediction).
            outputs: Receives ``(y_pred, y_true)`` per batch when given.
            start: A training pass cut short, resumed (``run_epoch``'s ``start``).
            batch_count: Batches the whole pass yields, when known (``run_epoch``'s).

        Returns:
            The pass's epoch record (also published).
        """
        bus = self.bus
        self.publish(PhaseBegin(phase=phase, epoch=epoch))
        hooks = self._pass_hooks(phase, epoch)
        records = run_epoch(
            setup,
            batches,
            phase=phase,
            epoch=epoch,
            clock=self.clock,
            global_step=self.global_step,
            has_ground_truth=has_ground_truth,
            hooks=hooks if phase is PassPhase.TRAIN or hooks.announces_steps else None,
            outputs=outputs,
            emit_steps=bus.has_subscribers(StepRecord),
            start=start,
            batch_count=batch_count,
            step_due=bus.due(StepRecord),  # a display alone: records only when it refreshes
        )
        epoch_record: EpochRecord | None = None
        publish = self._step_publisher()
        for record in records:
            if type(record) is StepRecord:
                directives = publish(record)
                if directives:
                    self.apply(directives)
            else:
                assert isinstance(record, EpochRecord)
                epoch_record = record
        assert epoch_record is not None
        epoch_record = self._finish_pass(setup, epoch_record)
        if phase is PassPhase.TRAIN:
            self.global_step += epoch_record.steps
        self.publish(epoch_record)
        return epoch_record

    def fit(
        self,
        *,
        train_setup: EpochSetup,
        valid_setup: EpochSetup,
        train_generator: Iterable[Any],
        valid_generator: Iterable[Any] | None,
        steps_per_epoch: int | None,
        validation_steps: int | None,
        epochs: int,
        initial_epoch: int,
        params: Mapping[str, Any],
        log_keys: tuple[str, ...],
        learning_rates: Callable[[], dict[str, float]],
        start: PassStart | None = None,
        after_skip: Callable[[], None] | None = None,
        preemption: Any = None,
    ) -> list[dict[str, Any]]:
        """Run epochs ``initial_epoch..epochs``: each a training pass, then a validation pass
        when a validation generator is given and the training pass was not cut short.

        Publishes ``TrainBegin``, then per epoch ``EpochBegin``, the passes' records and
        ``EpochEnd``, then ``TrainEnd``. A stop request (``context.stop_training`` set, or a
        ``StopTraining`` directive) ends the current training pass after its step and the
        training after the epoch. The first epoch whose training loss is non-finite gets one
        ``RuntimeWarning`` naming the epoch and the batch (found from the values copied to
        the host once per epoch; no host sync per step).

        Args:
            train_setup: Setup of the training passes.
            valid_setup: Setup of the validation passes.
            train_generator: Training batches (re-iterated each epoch).
            valid_generator: Validation batches, or None.
            steps_per_epoch: Training batches per epoch (cycling the generator), or None for
                one pass over it.
            validation_steps: Validation batches per epoch, likewise.
            epochs: Last epoch (inclusive).
            initial_epoch: First epoch.
            params: Poutyne's ``params`` for ``TrainBegin``.
            log_keys: The epoch-log keys, for ``TrainBegin``.
            learning_rates: Reads the learning rates for each ``EpochEnd``.
            start: The first epoch's training pass was cut short after ``start.steps``
                batches: skip them and finish it (see :mod:`epochal._preemption`).
            after_skip: Called once those batches are skipped (restores RNG states).
            preemption: ``ModelBundle.train``'s preemption guard (see :attr:`preemption`).

        Returns:
            The epoch log rows, in order.
        """
        context = self.context
        history: list[dict[str, Any]] = []
        last_epoch = initial_epoch - 1
        warned_nonfinite = False
        self.preemption = preemption
        train_count = (
            _batch_count(train_generator, steps_per_epoch)
            if train_setup.batches_per_step > 1 else None
        )
        self.publish(TrainBegin(params=params, initial_epoch=initial_epoch, log_keys=log_keys))
        for epoch in range(initial_epoch, epochs + 1):
            if context.stop_training:
                break
            self.publish(EpochBegin(epoch=epoch))
            epoch_start = self.clock()
            resumed = start if epoch == initial_epoch else None
            train_batches = cycle_batches(train_generator, steps_per_epoch, what="training")
            if resumed is not None:
                train_batches = skip_batches(train_batches, resumed.steps, then=after_skip)
            train_record = self.run_pass(
                train_setup,
                train_batches,
                phase=PassPhase.TRAIN,
                epoch=epoch,
                start=resumed,
                batch_count=train_count,
            )
            if (train_record.first_nonfinite_step is not None and not warned_nonfinite
                    and not stopped_at_first_nonfinite(train_record, context.stop_training)):
                warned_nonfinite = True
                precision = getattr(train_setup, "precision", None)
                effect = (
                    "the loss scaler skipped the optimizer step of each such batch"
                    if getattr(precision, "scaler", None) is not None
                    else "the steps after it trained on non-finite gradients"
                )
                warnings.warn(
                    f"The training loss became non-finite (nan or inf) in epoch {epoch}, first "
                    f"at batch {train_record.first_nonfinite_step}; {effect}. Add "
                    "epochal.TerminateOnNaN() to the callbacks to stop at the first such batch, "
                    "and check the learning rate and the inputs.",
                    RuntimeWarning,
                    stacklevel=4,
                )
            valid_record = None
            if valid_generator is not None and train_record.complete:
                valid_record = self.run_pass(
                    valid_setup,
                    cycle_batches(valid_generator, validation_steps, what="validation"),
                    phase=PassPhase.VALID,
                    epoch=epoch,
                )
            lrs = learning_rates()
            logs = epoch_log_row(
                epoch=epoch, train=train_record, valid=valid_record,
                duration_s=self.clock() - epoch_start,
            )
            last_epoch = epoch
            history.append(dict(logs))
            context.epoch_complete = train_record.complete
            self.publish(EpochEnd(epoch=epoch, logs=logs, complete=train_record.complete, lrs=lrs))
            self._end_epoch()
            if not train_record.complete:
                context.stop_training = True
        self.publish(
            TrainEnd(
                last_epoch=last_epoch,
                stopped=context.stop_training,
                logs=history[-1] if history else {},
            )
        )
        return history


def _batch_count(loader: Iterable[Any], steps: int | None) -> int | None:
    """Batches a training pass yields: ``steps`` when given, else ``len(loader)`` when the
    loader has one (a ``DataLoader``, a list, a sharded loader), else None."""
    if steps is not None:
        return steps
    try:
        count = len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None
    return count if isinstance(count, int) and count > 0 else None
