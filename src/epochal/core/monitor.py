"""Monitoring a logged value: which epoch is best, and when patience runs out. Pure.

Conventions (as Keras and Poutyne): in ``'min'`` mode a value improves on the best when
``value < best - min_delta``; in ``'max'`` mode when ``value > best + min_delta``. A NaN
value never improves. The first finite value always improves on "no best yet".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs

from epochal.exceptions import ConfigurationError

__all__ = ["Monitor", "MonitorState", "best_epoch", "early_stopping_epoch", "should_stop"]

_MODES = ("min", "max")


def _check_mode(mode: str) -> str:
    if mode not in _MODES:
        raise ConfigurationError(f"mode must be 'min' or 'max'; got {mode!r}.")
    return mode


@attrs.frozen(kw_only=True)
class Monitor:
    """What to watch and which way is better.

    Attributes:
        key: The log key (``'val_loss'``, ``'val_acc'``, ...).
        mode: ``'min'`` or ``'max'``.
        min_delta: The smallest change that counts as an improvement (>= 0).

    Raises:
        ConfigurationError: ``mode`` is not ``'min'``/``'max'`` or ``min_delta`` < 0.
    """

    key: str
    mode: str = attrs.field(default="min", validator=lambda _s, _a, v: _check_mode(v))
    min_delta: float = 0.0

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ConfigurationError(f"monitor must be a non-empty log key; got {self.key!r}.")
        if self.min_delta < 0:
            raise ConfigurationError(f"min_delta must be >= 0; got {self.min_delta!r}.")

    def improves(self, value: float, best: float | None) -> bool:
        """Whether ``value`` is better than ``best`` by more than ``min_delta``."""
        if value is None or math.isnan(value):
            return False
        if best is None:
            return True
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta


@attrs.frozen(kw_only=True)
class MonitorState:
    """Best value so far, its epoch, and epochs since (immutable; see :meth:`update`)."""

    best: float | None = None
    best_epoch: int | None = None
    wait: int = 0

    def update(self, monitor: Monitor, epoch: int, value: float) -> MonitorState:
        """The state after observing ``value`` at ``epoch``."""
        if monitor.improves(value, self.best):
            return MonitorState(best=float(value), best_epoch=epoch, wait=0)
        return attrs.evolve(self, wait=self.wait + 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a checkpoint."""
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> MonitorState:
        """Inverse of :meth:`to_dict`."""
        return cls(best=state.get("best"), best_epoch=state.get("best_epoch"),
                   wait=int(state.get("wait", 0)))


def best_epoch(values: Sequence[float], monitor: Monitor, first_epoch: int = 1) -> int | None:
    """The epoch (``first_epoch``-based) whose value a run of :class:`MonitorState` keeps as
    best: the first to reach the running best by more than ``min_delta``."""
    state = MonitorState()
    for i, value in enumerate(values):
        state = state.update(monitor, first_epoch + i, value)
    return state.best_epoch


def early_stopping_epoch(
    values: Sequence[float], monitor: Monitor, patience: int, first_epoch: int = 1
) -> int | None:
    """The epoch at whose end early stopping ends training, or None if it never does.

    Rule (Keras's): after each epoch the monitor's wait counter is reset on improvement and
    incremented otherwise; training stops when the counter is positive and reaches
    ``patience``. So with ``patience >= 1`` training stops after exactly
    ``best_epoch + patience`` epochs; with ``patience == 0`` after the first epoch that does
    not improve (``best_epoch + 1``). The last epoch's value counts like any other.

    Raises:
        ConfigurationError: ``patience`` < 0.
    """
    if patience < 0:
        raise ConfigurationError(f"patience must be >= 0; got {patience}.")
    state = MonitorState()
    for i, value in enumerate(values):
        state = state.update(monitor, first_epoch + i, value)
        if should_stop(state, patience):
            return first_epoch + i
    return None


def should_stop(state: MonitorState, patience: int) -> bool:
    """Early stopping's rule on a monitor state: ``wait > 0 and wait >= patience``."""
    return state.wait > 0 and state.wait >= patience
