"""Stop decisions taken on every rank at the same step: no rank waits on one that left.

A rank that decides to stop (early stopping, ``TerminateOnNaN``, ``stop_training``, a
preemption signal) or fails (an exception in a callback) only sets a local flag. After every
training step each rank starts a non-blocking ``all_reduce(MAX)`` of its flag and waits the
one it started after the previous step. So a decision taken during step ``t`` (before
:meth:`StopConsensus.after_step` of step ``t``) is known to every rank after step ``t + 1``
and all ranks leave the pass after that same step: within two steps, at one stop point.

The flag travels on a CPU (gloo) group even when the training uses nccl, so waiting for it
never synchronises the host with the GPU.

Per pass, the driver calls::

    consensus.start_pass()
    for record in run_epoch(..., hooks=consensus):   # training only (a core.loop.PassHooks)
        publish(record)                      # callbacks may call consensus.request(...)
    verdict = consensus.finish_pass()        # waits the last flag; no new collective
    ...
    verdict = consensus.agree()              # once per epoch, blocking: epoch-end decisions
    if verdict is not None:
        verdict.raise_if_failed()            # re-raise here, PeerFailedError elsewhere

Evaluation passes have uneven shards (exact counts), so they do not poll the flag per step;
a decision taken there waits for :meth:`StopConsensus.agree` at the epoch's end.

On CPU ranks the flag needs no collective of its own: a :class:`StopFlagCarrier` puts it in
DDP's gradient all-reduce (one more gradient element, the gradient of a parameter the
optimizer never sees). Only when that element says some rank wants to stop do the ranks run
the small blocking all-reduce that settles the reason and the failed rank. The timing is the
same: a decision taken during step ``t`` rides in step ``t + 1``'s gradients and every rank
stops after step ``t + 1``. (On a GPU reading the element would synchronise the host with
the device at every step, so CUDA ranks keep the separate gloo flag.)
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
import torch
import torch.distributed as dist

from epochal.distributed.signals import PreemptionGuard
from epochal.exceptions import PeerFailedError

__all__ = ["StopConsensus", "StopFlagCarrier", "StopReason", "StopVerdict"]


class StopReason(enum.IntEnum):
    """Why the job stops; a higher value wins when ranks disagree."""

    REQUESTED = 1  # early stopping, TerminateOnNaN, stop_training
    PREEMPTED = 2  # SIGTERM / SIGINT: commit a partial snapshot, then exit
    FAILED = 3  # an exception on some rank


@attrs.frozen(kw_only=True)
class StopVerdict:
    """The stop every rank agreed on.

    Attributes:
        reason: The strongest reason any rank gave.
        step: 1-based step of the pass after which every rank stopped (0 when agreed outside a
            pass's steps, by :meth:`StopConsensus.agree`).
        failed_rank: Lowest rank that failed, for ``FAILED``; else None.
        error: This rank's own exception when it is the one that failed, else None.
    """

    reason: StopReason
    step: int
    failed_rank: int | None = None
    error: BaseException | None = attrs.field(default=None, eq=False)

    def raise_if_failed(self) -> None:
        """Re-raise this rank's exception; on the other ranks raise :class:`PeerFailedError`.

        Raises:
            BaseException: The exception this rank recorded with :meth:`StopConsensus.fail`.
            PeerFailedError: Another rank failed; names it.
        """
        if self.reason is not StopReason.FAILED:
            return
        if self.error is not None:
            raise self.error
        raise PeerFailedError(
            f"Rank {self.failed_rank} raised an exception (its own traceback is in its "
            f"output); this rank stopped at the same step ({self.step}) instead of waiting "
            "for it. Fix the error on that rank and relaunch; the job resumes from its last "
            "committed snapshot.",
            failed_rank=self.failed_rank if self.failed_rank is not None else -1,
        )


class _CarryFlag(torch.autograd.Function):
    """Identity on the loss; its backward gives the carrier's parameter the local flag as
    gradient (read when the backward runs, so the newest decision rides along)."""

    @staticmethod
    def forward(ctx: Any, loss: torch.Tensor, flag: torch.Tensor, value: torch.Tensor) -> Any:
        ctx.value = value
        return loss.view_as(loss)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:  # type: ignore[override]
        return grad, ctx.value.clone(), None


class _CarryingLoss:
    """A loss function whose loss carries the stop flag into DDP's gradient all-reduce."""

    def __init__(self, loss_function: Any, carrier: StopFlagCarrier, ddp: Any) -> None:
        self.loss_function = loss_function
        self.__name__ = getattr(loss_function, "__name__", type(loss_function).__name__)
        self._carrier = carrier
        self._ddp = ddp

    def __call__(self, y_pred: Any, y_true: Any) -> Any:
        loss = self.loss_function(y_pred, y_true)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0 or not loss.requires_grad:
            return loss  # compute_loss or backward reports it, as without the carrier
        carrier = self._carrier
        carrier.synced = bool(self._ddp.require_backward_grad_sync)  # False under no_sync()
        return _CarryFlag.apply(loss, carrier.stop_flag, carrier.value)


class StopFlagCarrier(torch.nn.Module):
    """The network as ``DistributedDataParallel`` sees it when the stop flag rides on the
    gradient all-reduce: the network plus one parameter, ``stop_flag`` (shape ``(1,)``).

    The loss of every training step is passed through :meth:`carry`'s wrapper, whose
    backward sets ``stop_flag``'s gradient to this rank's flag (1.0 when it wants to stop,
    else 0.0); DDP averages it with the network's gradients, so after the backward of a
    synchronised step every rank reads the same value, above 0 when any rank wants to stop.
    No optimizer holds ``stop_flag`` and :func:`~epochal.distributed.unwrap_network` skips the
    carrier, so checkpoints and ``state_dict`` hold the network's parameters only.

    Needs DDP's defaults: every parameter gets its gradient once per backward
    (``find_unused_parameters=True`` would count ``stop_flag`` as unused in ``forward``).
    Use on CPU ranks (reading the gradient on a GPU would synchronise the host).

    Args:
        network: The plain network; it stays ``carrier.module``.
    """

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.module = network
        device = next((p.device for p in network.parameters()), torch.device("cpu"))
        self.stop_flag = torch.nn.Parameter(torch.zeros(1, device=device))
        self.value = torch.zeros(1, device=device)  # this rank's flag (not a buffer: unsynced)
        self.synced = False  # whether the last carried loss's backward was all-reduced
        self.sending = False  # what ``value`` says

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The network's forward."""
        return self.module(*args, **kwargs)

    def carry(self, loss_function: Any, ddp: Any) -> Any:
        """``loss_function`` wrapped so that its loss carries the flag through ``ddp`` (the
        ``DistributedDataParallel`` wrapper of this carrier). The wrapper keeps the loss's
        ``__name__`` (error messages name it) and returns the loss's value unchanged."""
        return _CarryingLoss(loss_function, self, ddp)

    def send(self, wants_stop: bool) -> None:
        """Set the flag the next synchronised backward carries (``sending`` tells it)."""
        self.value.fill_(1.0 if wants_stop else 0.0)
        self.sending = wants_stop

    def received(self) -> bool | None:
        """After a step: whether any rank's flag was set in the last all-reduced backward;
        None when that backward was not all-reduced (``no_sync``: nothing was exchanged)."""
        if not self.synced:
            return None
        self.synced = False
        grad = self.stop_flag.grad
        if grad is None:
            return None
        if grad.item() == 0.0:
            return False
        grad.zero_()
        return True


class StopConsensus:
    """Per-step stop flag, agreed across ranks one step late, without a GPU sync.

    Args:
        group: Process group of the training; the default group when None. When its backend
            is not gloo a gloo group over the same ranks is created for the flag (a
            collective call: every rank constructs its ``StopConsensus`` at the same point).
        preemption: An entered :class:`~epochal.distributed.signals.PreemptionGuard`; once it
            has seen a signal, this rank's flag says ``PREEMPTED`` (read with the flag, no
            extra work per step for the driver).
        carrier: The :class:`StopFlagCarrier` inside the training's DDP wrapper, when the
            flag rides on the gradient all-reduce (the pass's loss must be wrapped by
            :meth:`StopFlagCarrier.carry`); None for a separate all-reduce per step.

    Without a process group (one process) it works the same, locally: a decision is visible
    at once, :meth:`should_stop` is True after the step it was taken in.
    """

    def __init__(
        self,
        group: Any = None,
        *,
        preemption: PreemptionGuard | None = None,
        carrier: StopFlagCarrier | None = None,
    ) -> None:
        self._preemption = preemption
        self._carrier = carrier
        self._distributed = dist.is_initialized()
        self._group = group
        if self._distributed:
            self._rank = dist.get_rank(group)
            self._world = dist.get_world_size(group)
            if str(dist.get_backend(group)) != "gloo":
                ranks = None if group is None else dist.get_process_group_ranks(group)
                self._group = dist.new_group(ranks=ranks, backend="gloo")
        else:
            self._rank, self._world = 0, 1
        self._code = 0
        self._buffers = (torch.zeros(2, dtype=torch.int64), torch.zeros(2, dtype=torch.int64))
        self._turn = 0
        self._error: BaseException | None = None
        self._pending: tuple[Any, torch.Tensor] | None = None
        self._step = 0
        self._verdict: StopVerdict | None = None

    # ---- local decisions ---------------------------------------------------------------

    def request(self, reason: StopReason = StopReason.REQUESTED) -> None:
        """Record this rank's wish to stop (it reaches the others at the next flag)."""
        self._code = max(self._code, int(reason))

    def fail(self, error: BaseException) -> None:
        """Record an exception on this rank; the job stops and it is re-raised here by
        :meth:`StopVerdict.raise_if_failed` (the first one is kept)."""
        if self._error is None:
            self._error = error
        self._code = int(StopReason.FAILED)

    @property
    def steps(self) -> int:
        """Training steps of the current pass that passed :meth:`after_step`."""
        return self._step

    @property
    def verdict(self) -> StopVerdict | None:
        """The agreed stop, once known (also after the pass ends)."""
        return self._verdict

    # ---- per pass ----------------------------------------------------------------------

    def start_pass(self) -> None:
        """Reset the step counter (a verdict already reached stays); with a carrier, set its
        flag to this consensus's (an earlier call's stop must not ride along)."""
        self._step = 0
        carrier = self._carrier
        if carrier is not None and carrier.sending != (self._code > 0):
            carrier.send(self._code > 0)

    def _note_preemption(self) -> None:
        """Once the guard has seen a signal, this rank's code says at least ``PREEMPTED``."""
        if self._preemption is not None and self._preemption.signal_received is not None:
            self._code = max(self._code, int(StopReason.PREEMPTED))

    def _flag(self) -> torch.Tensor:
        """This rank's flag in the next of two alternating buffers (one may still be in
        flight): ``[code, world - rank if failed else 0]``, reduced by MAX."""
        self._note_preemption()
        self._turn ^= 1
        buffer = self._buffers[self._turn]
        if self._code == 0:
            return buffer.zero_()  # the common case: no allocation, no Python list
        failed = self._world - self._rank if self._code == StopReason.FAILED else 0
        return buffer.copy_(torch.tensor([self._code, failed], dtype=torch.int64))

    def _decide(self, flag: torch.Tensor, step: int) -> StopVerdict | None:
        code, failed = flag.tolist()
        if code == 0:
            return None
        reason = StopReason(code)
        failed_rank = self._world - failed if reason is StopReason.FAILED and failed else None
        error = self._error if failed_rank == self._rank else None
        self._verdict = StopVerdict(
            reason=reason, step=step, failed_rank=failed_rank, error=error
        )
        return self._verdict

    def after_step(self) -> StopVerdict | None:
        """After each training step, on every rank: share this step's flag, read the previous
        step's. Returns the verdict once a stop is agreed (then stop the pass), else None."""
        self._step += 1
        if self._verdict is not None:
            return self._verdict
        if not self._distributed:
            return self._decide(self._flag(), self._step)
        if self._carrier is not None:
            return self._after_carried_step()
        previous = self._pending
        flag = self._flag()
        work = dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group, async_op=True)
        self._pending = (work, flag)
        if previous is None:
            return None
        previous_work, previous_flag = previous
        previous_work.wait()
        return self._decide(previous_flag, self._step)

    def _after_carried_step(self) -> StopVerdict | None:
        """:meth:`after_step` when the flag rides on the gradients: read what this step's
        backward carried, set what the next one carries; settle the details (reason, failed
        rank) by one blocking all-reduce only once a flag was seen."""
        carrier = self._carrier
        assert carrier is not None
        self._note_preemption()
        if carrier.sending != (self._code > 0):
            carrier.send(self._code > 0)
        if carrier.received():
            return self._settle(self._step)
        return None

    def _settle(self, step: int) -> StopVerdict | None:
        """Blocking all-reduce of every rank's flag now (all ranks call it at the same step)."""
        flag = self._flag()
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        return self._decide(flag, step)

    def should_stop(self) -> bool:
        """Whether the pass must end after this step: :meth:`after_step` as a bool."""
        return self.after_step() is not None

    # ---- as a core.loop.PassHooks (a pass that only needs the stop flag) ----------------

    announces_steps = False
    announces_backward = False

    def step_begins(self, step: int) -> None:
        """Not called (``announces_steps`` is False)."""

    def gradients_ready(self, step: int) -> None:
        """Not called (``announces_backward`` is False)."""

    def stop_requested(self) -> bool:
        """:meth:`should_stop`, polled by ``run_epoch`` after each step."""
        return self.after_step() is not None

    def finishes_group(self) -> bool:
        """A preemption runs the accumulation group to its end (``run_epoch`` asks when a
        stop comes inside a group of accumulated batches)."""
        return self._verdict is not None and self._verdict.reason is StopReason.PREEMPTED

    def finish_pass(self) -> StopVerdict | None:
        """At the end of a training pass (also when it ended by a stop): wait the last flag.
        Starts no new collective (with a carrier: one blocking all-reduce of the flag, for
        the decisions of the last step, which no backward carried)."""
        if self._carrier is not None:  # decisions of the pass's last step: agreed now
            if self._verdict is None and self._distributed:
                return self._settle(self._step)
            return self._verdict
        pending, self._pending = self._pending, None
        if pending is not None:
            work, flag = pending
            work.wait()
            if self._verdict is None:
                return self._decide(flag, self._step)
        return self._verdict

    def agree(self) -> StopVerdict | None:
        """Blocking agreement on every decision taken so far (once per epoch, after the
        epoch-end callbacks, and after evaluation passes). Collective."""
        if self._carrier is None:  # (a carrier's finish_pass would all-reduce the flag twice)
            self.finish_pass()
        if self._verdict is not None:
            return self._verdict
        flag = self._flag()
        if self._distributed:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        return self._decide(flag, 0)
