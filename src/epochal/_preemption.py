"""Preemption: SIGTERM/SIGINT during ``ModelBundle.train`` ends in a mid-epoch commit, and the
next launch finishes that epoch exactly.

On a first signal the current step finishes (with ``batches_per_step > 1``, the current
group of accumulated batches and its optimizer step, so the snapshot sits at a group
boundary), the training pass stops (on every rank, through the stop flag), the bundle commits a snapshot marked partial with its step (weights,
optimizer, callbacks, RNG states at the step and at the epoch's start, the pass's per-batch
values and epoch metric statistics: :class:`epochal.core.pass_state.PassStart`), and the
process exits with a one-line message. A second signal exits at once.

A resume restores the epoch-start RNG states, lets the loader draw the epoch's order again,
skips the batches already run (:func:`epochal.core.batches.skip_batches`), then restores the RNG states of the
step and runs the rest of the pass with the first batches' values put back.
"""

from __future__ import annotations

import signal
import types
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from epochal.core.pass_state import PassStart
from epochal.distributed.consensus import StopReason
from epochal.distributed.signals import PreemptionGuard, resume_hint
from epochal.seeding import get_random_states

if TYPE_CHECKING:
    from epochal._parallel import DataParallel

__all__ = [
    "BundleGuard", "epoch_start_states", "exit_message", "gather_passes", "pass_start_for",
    "preempted",
]




class BundleGuard(PreemptionGuard):
    """The preemption guard of ``ModelBundle.train``: a first SIGTERM/SIGINT asks the model
    to stop after its current step (``model.stop_training``; no work per step; the driver
    reads :attr:`requested` to run a group of accumulated batches to its end first), a second
    one acts as it would have without the guard (exits at once)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        first = self.signal_received is None
        super()._handle(signum, frame)
        if first:
            self.model.stop_training = True


def preempted(guard: PreemptionGuard | None, parallel: DataParallel | None) -> bool:
    """Whether this training stops for a preemption: a signal here, or (several ranks) one
    that reached this rank through the stop flag."""
    if guard is not None and guard.requested:
        return True
    verdict = parallel.verdict if parallel is not None else None
    return verdict is not None and verdict.reason is StopReason.PREEMPTED


def epoch_start_states(generators: Sequence[torch.Generator]) -> dict[str, Any]:
    """RNG and loader generator states at an epoch's start (the epoch's data order is drawn
    from them when the loader is iterated)."""
    return {
        "random_states": get_random_states(),
        "loader_generators": [g.get_state() for g in generators],
    }


def gather_passes(start: PassStart, parallel: DataParallel | None) -> list[dict[str, Any]]:
    """Every rank's :class:`PassStart` (as dicts, tensors on the CPU), indexed by rank.
    Collective with several ranks."""
    local = start.to_dict()
    local["epoch_metrics"] = [
        None if stats is None
        else {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in stats.items()}
        for stats in local["epoch_metrics"]
    ]
    if parallel is None:
        return [local]
    gathered: list[Any] = [None] * parallel.world_size
    dist.all_gather_object(gathered, local)
    return [dict(g) for g in gathered]


def pass_start_for(partial: Mapping[str, Any], parallel: DataParallel | None) -> PassStart:
    """This rank's :class:`PassStart` from a partial snapshot's ``partial`` field."""
    rank = parallel.rank if parallel is not None else 0
    return PassStart.from_dict(partial["passes"][rank])


def exit_message(guard: PreemptionGuard | None, *, epoch: int, step: int | None,
                 location: str) -> str:
    """The one line printed when a preempted training exits."""
    signum = guard.signal_received if guard is not None and guard.signal_received else 15
    if step is None:
        return (
            f"Stopped by {signal.Signals(signum).name} after epoch {epoch}; the state is saved "
            f"in {location}. Run the same command again to resume from there."
        )
    return resume_hint(signum, epoch=epoch, step=step, location=location)
