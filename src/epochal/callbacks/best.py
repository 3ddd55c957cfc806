"""``BestModelRestore``: keep the best epoch's weights in memory and put them back when
training ends."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import attrs
import torch

from epochal.callbacks._monitoring import (
    check_mode_and_period,
    check_monitor_key,
    check_monitor_name,
    check_state_monitor,
    epoch_complete,
    monitored_value,
    network_weights_finite,
)
from epochal.callbacks.base import Callback
from epochal.core.monitor import Monitor, MonitorState

__all__ = ["BestModelRestore"]



class BestModelRestore(Callback):
    """Keep a CPU copy of the best epoch's weights and load it back at the end of training,
    whatever ended it (last epoch, early stop, NaN).

    Args:
        monitor: Log key to watch (``'val_loss'``, ``'val_acc'``...).
        mode: ``'min'`` or ``'max'``.
        verbose: Print Poutyne's lines: ``Epoch N: val_loss improved from a to b`` at each
            new best, ``Restoring best model`` when restoring.

    When it acts:
        ``on_train_begin`` checks the monitor key; ``on_epoch_end`` of each complete epoch
        copies the weights when the value improves (a device-to-host copy per improvement;
        weights with NaN/inf are never kept); ``on_train_end`` restores.

    State:
        :meth:`state_dict` holds plain values (best value, epoch, wait), not the weights: after
        a resume whose best epoch came before it, restoring warns and does nothing until a
        new best arrives. For restores that survive a resume use
        ``ModelCheckpoint(..., save_best_only=True, restore_best=True)``.

    Raises:
        ConfigurationError: ``mode`` is not ``'min'``/``'max'``; a monitor with a path
            separator.
        MonitorKeyError: At train begin, the monitor will never be logged.
    """

    def __init__(self, *, monitor: str = "val_loss", mode: str = "min", verbose: bool = False) -> None:
        super().__init__()
        check_mode_and_period(mode, 1)
        check_monitor_name("BestModelRestore", monitor)
        self.monitor = monitor
        self.mode = mode
        self.verbose = verbose
        self._monitor = Monitor(key=monitor, mode=mode)
        self._state = MonitorState()
        self.best_weights: dict[str, torch.Tensor] | None = None

    @property
    def best(self) -> float | None:
        """The best monitored value so far, or None."""
        return self._state.best

    @property
    def best_epoch(self) -> int | None:
        """The epoch of the best value so far, or None."""
        return self._state.best_epoch

    @property
    def current_best(self) -> float:
        """Poutyne's attribute: the best monitored value so far, ``inf`` (mode ``'min'``) or
        ``-inf`` (``'max'``) before the first; the value whose weights ``best_weights`` holds.

        Setting it sets the value a later epoch must beat (``best_epoch`` is kept).
        """
        if self._state.best is not None:
            return self._state.best
        return math.inf if self._monitor.mode == "min" else -math.inf

    @current_best.setter
    def current_best(self, value: float) -> None:
        initial = math.inf if self._monitor.mode == "min" else -math.inf
        self._state = attrs.evolve(self._state, best=None if value == initial else float(value))

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        check_monitor_key(self, self.monitor)

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        if not epoch_complete(self):
            return
        value = monitored_value(self, self.monitor, epoch_number, logs)
        if self._monitor.improves(value, self._state.best):
            if not network_weights_finite(self, f"keeping the weights of epoch {epoch_number}"):
                return
            if self.verbose:  # Poutyne's line
                old = self._state.best
                shown_old = old if old is not None else (
                    math.inf if self._monitor.mode == "min" else -math.inf)
                print(f"Epoch {epoch_number:d}: {self.monitor} improved from {shown_old:0.5f} "
                      f"to {value:0.5f}")
            self.best_weights = self.model.get_weight_copies()
        self._state = self._state.update(self._monitor, epoch_number, value)

    def on_train_end(self, logs: dict[str, Any]) -> None:
        if self.best_weights is None:
            detail = (
                f"the best epoch ({self._state.best_epoch}) predates a state load, and its "
                "weights are not held in memory"
                if self._state.best_epoch is not None
                else f"{self.monitor!r} never improved on a complete epoch"
            )
            warnings.warn(
                f"BestModelRestore: nothing to restore: {detail}; the network keeps its last "
                "weights.",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        if self.verbose:
            print("Restoring best model")
        self.model.set_weights(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        """Plain values: the monitor, its mode and state (best value, best epoch, wait)."""
        return {"monitor": self.monitor, "mode": self.mode,
                "monitor_state": self._state.to_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the best weights are not part of it)."""
        check_state_monitor("BestModelRestore", state, self._monitor)
        self._state = MonitorState.from_dict(dict(state.get("monitor_state", {})))
        self.best_weights = None
