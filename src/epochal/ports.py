"""Ports: the capabilities the core and the shell need from the outside world.

Each port is a ``typing.Protocol`` (or, for a one-function port, a named ``Callable`` alias).
Adapters in ``epochal_adapters`` implement them; fakes in ``epochal.testing`` implement them
for tests. A port's contract is in its docstring; ``tests/contract/`` holds one suite per port
to run against every adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

from epochal.bus import RecordBus

__all__ = ["Attachable", "CheckpointStore", "Clock", "RecordHandler", "TrainingContext"]

#: Seconds from an arbitrary origin, monotonic (``time.perf_counter`` in production, a
#: fake that advances by a fixed amount in tests).
Clock = Callable[[], float]

#: A bus subscriber: takes one record, may return a directive (e.g. ``StopTraining``).
RecordHandler = Callable[[Any], Any]


@runtime_checkable
class CheckpointStore(Protocol):
    """Named blobs under one base location (a local directory, ``memory://``, ``s3://...``).

    Names are ``/``-separated relative paths (``"checkpoints/epoch_3.ckpt"``); they never start
    with ``/`` nor contain ``..``.

    Contract:
        * ``write`` is atomic per name: a reader sees the old bytes or the new bytes, never a
          mix or a truncated file; a failed ``write`` leaves the old bytes (or no object) in
          place and raises.
        * ``read`` of a missing name raises ``FileNotFoundError`` naming the URL.
        * ``names(prefix)`` lists every name under ``prefix`` that a completed ``write`` of this
          process created and no ``delete`` removed, sorted; it refreshes any listing cache
          first. Temporary files of in-flight writes are never listed.
        * ``delete`` of a missing name is not an error.
        * ``url(name)`` is the full URL of a name, for messages and for other libraries.

    Optional: ``open_write(name)``, a context manager yielding a binary file object (with
    ``write`` and ``flush``) whose bytes become ``name`` atomically when the block exits
    normally, with ``write``'s contract; an exception in the block leaves the old bytes and
    propagates (an ``OSError`` with the URL added to its message). The file's ``write`` receives memoryviews that are valid only during
    the call (``torch.save`` passes views of its own buffers): it must copy or write them
    before it returns. A
    bundle then serializes its state files straight into the store, so that no whole file is
    held in memory (``epochal_adapters``' store streams local files to disk). Stores without it
    receive each file's bytes whole through ``write``.

    Optional: ``open_staged(name)``, for a background commit: None when the store cannot
    stage (the bundle then copies the snapshot in memory and commits the copy from its writer
    thread), or a staged write: a binary file object (``write``, ``flush``, with
    ``open_write``'s memoryview rule) whose bytes are kept outside the process's memory, with
    ``publish()`` (make the bytes ``name``, durably and atomically, with ``write``'s
    contract; callable from another thread; an ``OSError`` naming the URL leaves the old bytes,
    unless only the durability of the rename itself failed, as for ``write``, and removes the
    staged ones) and ``discard()`` (remove the staged bytes; a no-op once
    published or discarded). ``publish`` after ``discard`` or a second ``publish`` raises
    ``ValueError``. Until ``publish``, ``names`` does not list the staged bytes.
    ``epochal_adapters``' store stages a local file in its temporary file beside ``name``, and
    a remote object in an anonymous local spool file.

    Run ``tests/contract/test_checkpoint_store.py`` against a new adapter.
    """

    def write(self, name: str, data: bytes) -> None: ...

    def read(self, name: str) -> bytes: ...

    def exists(self, name: str) -> bool: ...

    def names(self, prefix: str = "") -> list[str]: ...

    def delete(self, name: str) -> None: ...

    def url(self, name: str) -> str: ...


@runtime_checkable
class Attachable(Protocol):
    """Something that subscribes its handlers to a bus and can take them off again (a progress
    display, a log sink, an adapted callback list)."""

    def attach(self, bus: RecordBus) -> None: ...

    def detach(self) -> None: ...


@runtime_checkable
class TrainingContext(Protocol):
    """What a callback may read of the training it is attached to (``callback.model``).

    :class:`epochal.Model` implements it; ``epochal.testing`` has a fake. Poutyne-style user
    callbacks may read more of the ``Model`` (it is Poutyne's object); epochal's own callbacks
    read only this.

    Attributes:
        network: The network being trained (unwrapped: never a ``DistributedDataParallel``).
        optimizer: Its optimizer, or None for evaluation only.
        stop_training: Set to True to stop at the end of the current step.
        metrics_names: Log names of the batch then epoch metrics, in order (Poutyne's).
        epoch_log_keys: The keys of the epoch logs the current ``fit`` writes, in order
            (``epoch``, ``time``, ``loss``, metrics, ``val_loss``, ``val_<metric>``); known
            before ``on_train_begin``.
        epoch_complete: False while ``on_epoch_end`` handles an epoch a stop request cut
            short.
        global_step: Training batches run so far, across ``fit`` calls (updated at the end
            of each training pass).
    """

    network: torch.nn.Module
    optimizer: torch.optim.Optimizer | None
    stop_training: bool
    metrics_names: list[str]
    epoch_log_keys: tuple[str, ...]
    epoch_complete: bool
    global_step: int

    def get_weight_copies(self) -> dict[str, torch.Tensor]:
        """Copies of the network's weights on the CPU, safe to keep while training goes on."""
        ...

    def set_weights(self, weights: Mapping[str, torch.Tensor], strict: bool = True) -> Any:
        """Load a ``state_dict`` into the network (``load_state_dict``'s result)."""
        ...

    def learning_rates(self) -> dict[str, float]:
        """The optimizer's current learning rates: ``{'lr': x}`` for one parameter group,
        ``{'lr_group_0': x0, 'lr_group_1': x1, ...}`` for several, ``{}`` without optimizer."""
        ...
