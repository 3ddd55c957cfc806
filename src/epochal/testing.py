"""Fakes for tests, yours and ours: same contracts as the real adapters, state you can assert on.

Example:
    >>> from epochal.testing import MemoryCheckpointStore
    >>> store = MemoryCheckpointStore()
    >>> store.write("a/b.ckpt", b"x")
    >>> store.blobs
    {'a/b.ckpt': b'x'}
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from epochal.bus import RecordBus, Subscription

if TYPE_CHECKING:
    import torch

__all__ = ["FakeClock", "FakeTrainingContext", "MemoryCheckpointStore", "RecordingSink"]


class MemoryCheckpointStore:
    """A ``CheckpointStore`` in a dict. Same contract as the real adapters.

    Args:
        fail_writes: Names whose ``write`` raises ``OSError`` (to test that a failed write
            keeps the old bytes).
    """

    def __init__(self, *, fail_writes: set[str] | None = None) -> None:
        self.blobs: dict[str, bytes] = {}
        self.fail_writes: set[str] = set(fail_writes or ())

    def url(self, name: str) -> str:
        return f"fake-memory://{name}"

    @staticmethod
    def _check_name(name: str) -> None:
        parts = name.split("/") if isinstance(name, str) else []
        if (
            not parts
            or name.startswith("/")
            or "\\" in name
            or any(part in ("", ".", "..") for part in parts)
        ):
            raise ValueError(
                f"Invalid blob name {name!r}: expected a relative '/'-separated path without "
                "empty, '.' or '..' parts, e.g. 'checkpoints/epoch_3.ckpt'."
            )

    def write(self, name: str, data: bytes) -> None:
        self._check_name(name)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"write() takes bytes, got {type(data).__name__}")
        if name in self.fail_writes:
            raise OSError(f"simulated write failure for {self.url(name)}")
        self.blobs[name] = bytes(data)

    @contextlib.contextmanager
    def open_write(self, name: str) -> Iterator[io.BytesIO]:
        """Stream ``name``'s bytes into a buffer; :meth:`write` stores them at a normal exit
        (so ``fail_writes`` and overrides of ``write`` apply), nothing is stored at an
        exception."""
        self._check_name(name)
        buffer = io.BytesIO()
        yield buffer
        self.write(name, buffer.getvalue())

    def read(self, name: str) -> bytes:
        self._check_name(name)
        try:
            return self.blobs[name]
        except KeyError:
            raise FileNotFoundError(f"no blob named {self.url(name)}") from None

    def exists(self, name: str) -> bool:
        self._check_name(name)
        return name in self.blobs

    def names(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self.blobs if n.startswith(prefix))

    def delete(self, name: str) -> None:
        self._check_name(name)
        self.blobs.pop(name, None)


class FakeClock:
    """A clock that advances by ``tick_s`` seconds each time it is read.

    Args:
        start_s: First value returned.
        tick_s: Increment per call, seconds.
    """

    def __init__(self, start_s: float = 0.0, tick_s: float = 0.5) -> None:
        self.now_s = start_s
        self.tick_s = tick_s

    def __call__(self) -> float:
        value = self.now_s
        self.now_s += self.tick_s
        return value


class RecordingSink:
    """Subscribes to record types on a bus and keeps every record it receives, in order.

    Args:
        *record_types: The record classes to listen to.
    """

    def __init__(self, *record_types: type) -> None:
        self.record_types = record_types
        self.records: list[Any] = []
        self._subscriptions: list[Subscription] = []

    def attach(self, bus: RecordBus) -> None:
        for record_type in self.record_types:
            self._subscriptions.append(bus.subscribe(record_type, self.records.append))

    def detach(self) -> None:
        for subscription in self._subscriptions:
            subscription.cancel()
        self._subscriptions.clear()

    def of_type(self, record_type: type) -> list[Any]:
        """The received records of exactly ``record_type``, in order."""
        return [r for r in self.records if type(r) is record_type]


class FakeTrainingContext:
    """A :class:`epochal.ports.TrainingContext` without a training: what a callback reads of
    ``self.model``, as plain attributes a test sets and asserts on.

    Args:
        network: The network (any ``nn.Module``; None when the callback never reads it).
        optimizer: Its optimizer, or None.
        metrics_names: Log names of the metrics.
        epoch_log_keys: The keys of the epoch logs; defaults to Poutyne's keys for
            ``metrics_names`` with validation.
        lrs: What :meth:`learning_rates` returns (a copy each call).

    Example:
        >>> from epochal.testing import FakeTrainingContext
        >>> context = FakeTrainingContext(metrics_names=["acc"], lrs={"lr": 0.1})
        >>> context.epoch_log_keys
        ('epoch', 'time', 'loss', 'acc', 'val_loss', 'val_acc')
        >>> context.learning_rates()
        {'lr': 0.1}
    """

    def __init__(
        self,
        *,
        network: torch.nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        metrics_names: Sequence[str] = (),
        epoch_log_keys: Sequence[str] | None = None,
        lrs: Mapping[str, float] | None = None,
    ) -> None:
        self.network = network
        self.optimizer = optimizer
        self.stop_training = False
        self.metrics_names = list(metrics_names)
        if epoch_log_keys is None:
            names = self.metrics_names
            epoch_log_keys = ("epoch", "time", "loss", *names, "val_loss",
                              *(f"val_{n}" for n in names))
        self.epoch_log_keys: tuple[str, ...] = tuple(epoch_log_keys)
        self.epoch_complete = True
        self.global_step = 0
        self.lrs: dict[str, float] = dict(lrs or {})
        self.weights: dict[str, torch.Tensor] = {}

    def learning_rates(self) -> dict[str, float]:
        """A copy of ``lrs``."""
        return dict(self.lrs)

    def get_weight_copies(self) -> dict[str, torch.Tensor]:
        """Copies of the network's weights (of ``weights`` when there is no network)."""
        if self.network is None:
            return {k: v.clone() for k, v in self.weights.items()}
        return {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}

    def set_weights(self, weights: Mapping[str, torch.Tensor], strict: bool = True) -> Any:
        """Load into the network, or keep in ``weights`` when there is none."""
        if self.network is None:
            self.weights = dict(weights)
            return None
        return self.network.load_state_dict(weights, strict=strict)
