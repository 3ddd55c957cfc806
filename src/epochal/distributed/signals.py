"""SIGTERM/SIGINT during training: finish the step, commit a partial snapshot, then exit.

Schedulers (Slurm, Kubernetes, torchrun's agent) send SIGTERM before killing a job; a user
presses Ctrl-C (SIGINT). :class:`PreemptionGuard` turns the first such signal into a flag the
driver reads after each step (and passes to
:meth:`~epochal.distributed.consensus.StopConsensus.request` with ``PREEMPTED``). A second
signal restores the previous handler and delivers the signal again: it exits at once.
"""

from __future__ import annotations

import os
import signal
import threading
import types
from collections.abc import Callable
from typing import Any

__all__ = ["PreemptionGuard", "resume_hint"]

_Handler = Callable[[int, types.FrameType | None], Any] | int | None


class PreemptionGuard:
    """A context manager that records SIGTERM/SIGINT instead of dying on the first one.

    Args:
        signals: Signals to catch (default SIGTERM and SIGINT).

    Attributes:
        signal_received: The first signal's number, or None.

    Outside the main thread (where Python cannot install handlers) it installs nothing and
    never reports a signal. The previous handlers are restored on exit.

    Example:
        A signal sent to the process inside the block is recorded, not acted on; the
        previous handler is back after it:

        >>> import os, signal
        >>> with PreemptionGuard(signals=(signal.SIGUSR1,)) as guard:
        ...     os.kill(os.getpid(), signal.SIGUSR1)
        ...     guard.requested, guard.signal_received == signal.SIGUSR1
        (True, True)
        >>> signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
        True

        In a training loop, check ``guard.requested`` after each step: commit a partial
        snapshot and leave the loop when it is True.
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)):
        self.signals = signals
        self.signal_received: int | None = None
        self._previous: dict[int, _Handler] = {}
        self._installed = False

    @property
    def requested(self) -> bool:
        """True once a first signal arrived."""
        return self.signal_received is not None

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        if self.signal_received is None:
            self.signal_received = signum
            return
        # Second signal: give up the graceful path and let it act as it would have.
        self._restore()
        os.kill(os.getpid(), signum)

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[int(sig)] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
            self._installed = True
        return self

    def _restore(self) -> None:
        if not self._installed:
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()
        self._installed = False

    def __exit__(self, *exc: object) -> None:
        self._restore()


def resume_hint(signum: int, *, epoch: int, step: int, location: str) -> str:
    """The one-line message printed (by rank 0) after a preemption snapshot was committed.

    Args:
        signum: The signal received.
        epoch: 1-based epoch of the partial snapshot.
        step: Steps of that epoch done.
        location: The bundle's directory or URL.
    """
    name = signal.Signals(signum).name
    return (
        f"Stopped by {name} at epoch {epoch}, step {step}; the state is saved in {location}. "
        "Run the same command again to resume from there."
    )
