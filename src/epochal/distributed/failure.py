"""A failure inside one rank's step, told to the other ranks instead of leaving them waiting.

An exception in one rank's forward, loss or backward pass leaves the other ranks inside a
collective (DDP's gradient all-reduce, the stop flag, the pass's reduction) that the failed
rank will never join. The per-step stop flag cannot carry it: the failed rank never reaches
its next flag. So the failed rank writes a one-line description of its exception to the
job's rendezvous store (the key-value store every rank reached at ``init_process_group``),
aborts its NCCL communicators (NCCL only: gloo has no abort, its connections close when the
process exits, which the exception causes), and re-raises. A peer whose collective then fails
reads the store and raises :class:`~epochal.exceptions.PeerFailedError` naming the rank and
its exception, within seconds rather than after the group's timeout.

The driver calls, around each pass::

    try:
        run the pass
    except Exception as exc:
        peer = peer_failure(store, rank=rank, world_size=world, wait_s=2.0)
        if peer is not None:
            raise peer_failed_error(peer, rank=rank, where="...") from exc
        announce_failure(store, rank=rank, text=describe(exc))
        abort_communicators(backend)
        raise
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import torch.distributed as dist

from epochal.exceptions import DistributedError, PeerFailedError

__all__ = [
    "abort_communicators", "announce_failure", "collective_failed", "default_store",
    "describe", "lost_peer_error", "peer_failed_error", "peer_failure",
]

_KEY = "epochal/failed/"
_STORE_TIMEOUT_S = 5.0
# Phrases of the errors a collective raises when a peer's process or connection went away.
_COLLECTIVE_SIGNS = ("gloo", "nccl", "connection closed", "connection reset", "broken pipe",
                     "timed out", "timeout", "process group", "processgroup")


def default_store() -> Any | None:
    """The default process group's rendezvous store, or None (no group, or a torch without
    the accessor)."""
    getter = getattr(dist.distributed_c10d, "_get_default_store", None)
    if getter is None or not dist.is_initialized():
        return None
    try:
        return getter()
    except (RuntimeError, ValueError):
        return None


def describe(exc: BaseException) -> str:
    """One line naming an exception: ``'ValueError: bad input'`` (first line of the text,
    at most 300 characters)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def announce_failure(store: Any | None, *, rank: int, text: str) -> bool:
    """Write this rank's failure to ``store`` for its peers. Returns whether it was written
    (False without a store, or when the store cannot be reached: the peers then raise a
    generic :class:`DistributedError`)."""
    if store is None:
        return False
    try:
        store.set(f"{_KEY}{rank}", text)
    except Exception:  # the store itself is gone: nothing more to tell
        return False
    return True


def peer_failure(
    store: Any | None, *, rank: int, world_size: int, wait_s: float = 0.0
) -> tuple[int, str] | None:
    """The lowest other rank that announced a failure, with its text, or None.

    Args:
        store: The rendezvous store (:func:`default_store`).
        rank: This rank (not looked up).
        world_size: Number of ranks.
        wait_s: Seconds to keep looking when nothing is announced yet (a peer announces
            before its process exits, so a collective that failed because of it finds the
            text at once; the wait covers a store that answers slowly).

    Returns:
        ``(rank, text)`` or None (nothing announced, or the store is unreachable, e.g. it
        lived in the failed rank 0's process).
    """
    if store is None:
        return None
    keys = {peer: f"{_KEY}{peer}" for peer in range(world_size) if peer != rank}
    deadline = time.monotonic() + max(0.0, wait_s)
    try:
        store.set_timeout(datetime.timedelta(seconds=_STORE_TIMEOUT_S))
        while True:
            for peer, key in keys.items():
                if store.check([key]):
                    return peer, bytes(store.get(key)).decode("utf-8", "replace")
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)
    except Exception:  # unreachable store (its host process ended)
        return None


def collective_failed(exc: BaseException) -> bool:
    """Whether ``exc`` looks like a collective that failed because a peer went away (a
    ``torch.distributed`` error, or a plain ``RuntimeError`` naming gloo, NCCL, a closed
    connection or a timeout)."""
    dist_error = getattr(dist, "DistError", None)
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    if type(exc) is not RuntimeError:  # gloo and NCCL raise plain RuntimeErrors; epochal's
        return False                   # own (NetworkInputError, ...) are subclasses
    text = str(exc).lower()
    return any(sign in text for sign in _COLLECTIVE_SIGNS)


def abort_communicators(backend: str) -> None:
    """Abort the process groups' NCCL communicators, so that the peers' pending NCCL
    collectives fail instead of waiting for the timeout and this process exits without
    hanging on them. Does nothing for gloo (its connections close when the process exits)."""
    if backend != "nccl" or not dist.is_initialized():
        return
    abort = getattr(dist.distributed_c10d, "_abort_process_group", None)
    if abort is None:
        return
    try:
        abort()
    except Exception:  # already aborted or destroyed: nothing left to free
        return


def peer_failed_error(peer: tuple[int, str], *, rank: int, where: str) -> PeerFailedError:
    """The error a rank raises during ``where`` when ``peer`` (``(rank, text)``, the text as
    announced: ``'during ...: ValueError: ...'``) failed."""
    failed_rank, text = peer
    return PeerFailedError(
        f"Rank {failed_rank} failed {text}. Rank {rank} stopped during {where} instead of "
        f"waiting for it (rank {failed_rank}'s output has the full traceback). Fix the error "
        "and relaunch; a ModelBundle resumes from its last committed snapshot.",
        failed_rank=failed_rank,
    )


def lost_peer_error(exc: BaseException, *, rank: int, world_size: int,
                    where: str) -> DistributedError:
    """The error a rank raises when a collective failed and no peer announced why."""
    return DistributedError(
        f"Rank {rank} of {world_size}: a collective failed during {where} ({describe(exc)}). "
        "Another rank stopped without announcing an error (its process was killed, or rank 0, "
        "which holds the rendezvous store, failed); its output has the cause. Relaunch; a "
        "ModelBundle resumes from its last committed snapshot."
    )
