"""Stopping callbacks: end training when a monitored value stops improving, or when the loss
becomes NaN or infinite.

Both stop through the Poutyne channel, ``model.stop_training = True``: set in
``on_epoch_end`` it ends training before the next epoch; set in ``on_train_batch_end`` it ends
training at the end of that very step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from epochal.callbacks._monitoring import (
    check_mode_and_period,
    check_monitor_key,
    check_monitor_name,
    check_state_monitor,
    epoch_complete,
    monitored_value,
)
from epochal.callbacks.base import Callback
from epochal.core.directives import StopTraining
from epochal.core.monitor import Monitor, MonitorState, should_stop
from epochal.exceptions import ConfigurationError

__all__ = ["EarlyStopping", "TerminateOnNaN"]


class EarlyStopping(Callback):
    """Stop training when a monitored value has stopped improving.

    Rule (Keras's and Poutyne's, see :func:`epochal.core.monitor.early_stopping_epoch`): after
    each complete epoch a wait counter is reset when the value improves on the best by more
    than ``min_delta`` and incremented otherwise (a NaN never improves); training stops when
    the counter is positive and reaches ``patience``. So with ``patience >= 1`` training stops
    after exactly ``best_epoch + patience`` epochs; with ``patience == 0`` after the first
    epoch that does not improve. The last epoch's value counts like any other.

    Args:
        monitor: Log key to watch (``'val_loss'``, ``'val_acc'``...).
        min_delta: Smallest change that counts as an improvement (>= 0, in the monitored
            value's units).
        patience: Epochs without improvement to wait before stopping (>= 0).
        verbose: Print ``Epoch N: early stopping`` at the end of the epoch that stops training.
        mode: ``'min'`` (lower is better) or ``'max'``.

    When it acts:
        ``on_train_begin`` checks the monitor key and starts afresh (unless a state was just
        loaded with :meth:`load_state_dict`, to resume); ``on_epoch_end`` of each complete
        epoch updates the counter and sets ``model.stop_training``. An epoch a stop request cut
        short is not counted (it has no ``val_*`` keys).

    Attributes:
        stopped_epoch: The epoch at whose end it stopped training, 0 if it has not.

    Raises:
        ConfigurationError: At construction: ``mode`` not ``'min'``/``'max'``, ``patience`` not
            an int >= 0, ``min_delta`` < 0, a monitor with a path separator.
        MonitorKeyError: At train begin: the monitor will never be logged (the message lists
            the logged keys and suggests the closest one).
    """

    def __init__(
        self,
        *,
        monitor: str = "val_loss",
        min_delta: float = 0,
        patience: int = 0,
        verbose: bool = False,
        mode: str = "min",
    ) -> None:
        super().__init__()
        check_mode_and_period(mode, 1)
        check_monitor_name("EarlyStopping", monitor)
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ConfigurationError(f"patience must be an int >= 0 (epochs); got {patience!r}.")
        self.monitor = monitor
        self.mode = mode
        self.min_delta = float(min_delta)
        self.patience = patience
        self.verbose = verbose
        self._monitor = Monitor(key=monitor, mode=mode, min_delta=self.min_delta)
        self._state = MonitorState()
        self.stopped_epoch = 0
        self._resuming = False

    @property
    def best(self) -> float | None:
        """The best monitored value so far, or None."""
        return self._state.best

    @property
    def best_epoch(self) -> int | None:
        """The epoch of the best value so far, or None."""
        return self._state.best_epoch

    @property
    def wait(self) -> int:
        """Complete epochs since the best one."""
        return self._state.wait

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        check_monitor_key(self, self.monitor)
        if not self._resuming:
            self._state = MonitorState()
            self.stopped_epoch = 0
        self._resuming = False

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        if not epoch_complete(self):
            return
        value = monitored_value(self, self.monitor, epoch_number, logs)
        self._state = self._state.update(self._monitor, epoch_number, value)
        if should_stop(self._state, self.patience):
            self.stopped_epoch = epoch_number
            self.model.stop_training = True
            if self.verbose:  # at the epoch's end, as Poutyne prints it
                print(f"Epoch {self.stopped_epoch}: early stopping")

    def state_dict(self) -> dict[str, Any]:
        """Plain values: the monitor, its mode, the best value, best epoch, wait counter and
        the epoch it stopped at."""
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "monitor_state": self._state.to_dict(),
            "stopped_epoch": self.stopped_epoch,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; the next ``on_train_begin`` keeps it (a
        resumed training continues the count) instead of starting afresh.

        Raises:
            ConfigurationError: The state was saved by a callback with another monitor/mode.
        """
        check_state_monitor("EarlyStopping", state, self._monitor)
        self._state = MonitorState.from_dict(dict(state.get("monitor_state", {})))
        self.stopped_epoch = int(state.get("stopped_epoch", 0))
        self._resuming = True


def _loss_value(loss: Any, batch_number: int) -> float:
    """The batch loss as a float: a number, or a one-element tensor/array of any shape.

    Raises:
        ConfigurationError: A tensor/array with other than one element.
    """
    if isinstance(loss, (int, float)):
        return float(loss)
    values: Any
    if isinstance(loss, torch.Tensor):
        values = loss.detach().reshape(-1)
    else:
        values = np.asarray(loss).reshape(-1)
    if values.shape[0] != 1:
        raise ConfigurationError(
            f"TerminateOnNaN: the loss of batch {batch_number} has {values.shape[0]} elements; "
            "a loss must be a number or a one-element tensor/array (reduce it, e.g. .mean())."
        )
    return float(values[0])


class TerminateOnNaN(Callback):
    """Stop training as soon as a training batch's loss is NaN or infinite.

    When it acts:
        ``on_train_batch_end``: prints ``Batch N: Invalid loss, terminating training`` (as
        Poutyne) and sets ``model.stop_training``, so training ends at the end of that very
        step; the epoch is then incomplete (``model.epoch_complete`` False in
        ``on_epoch_end``, no validation), and ``on_train_end`` still runs (so
        ``BestModelRestore`` / ``ModelCheckpoint(restore_best=True)`` restore the best
        weights). Reading the batch loss is one host sync per step on an accelerator.

    Attributes:
        stopped_batch: ``(epoch, batch)`` of the invalid loss, or None.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stopped_batch: tuple[int, int] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch_number: int, logs: dict[str, Any]) -> None:
        self._epoch = epoch_number

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> StopTraining | None:
        loss = logs.get("loss")
        if loss is None:
            return None
        loss = _loss_value(loss, batch_number)
        if not (math.isnan(loss) or math.isinf(loss)):
            return None
        print(f"Batch {batch_number}: Invalid loss, terminating training")
        self.stopped_batch = (self._epoch, batch_number)
        self.model.stop_training = True
        return StopTraining(reason=f"loss is {loss}")

    def state_dict(self) -> dict[str, Any]:
        """Nothing to resume (an empty dict), for uniformity with the other callbacks."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Accept what :meth:`state_dict` returned."""
