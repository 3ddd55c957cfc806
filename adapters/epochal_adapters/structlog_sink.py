"""Structured log events from the record bus, through structlog.

One event per finished pass (``EpochRecord``: training, validation or test) and one when
training ends (``TrainEnd``). The library never configures logging: the logger is
``structlog.get_logger("epochal")``, fetched at the first event (so the application's
``structlog.configure`` applies), unless the application injects its own.

Example:
    >>> from structlog.testing import capture_logs
    >>> from epochal.bus import RecordBus
    >>> from epochal.core.records import EpochRecord, PassPhase
    >>> bus = RecordBus()
    >>> sink = StructlogRecordSink()
    >>> sink.attach(bus)
    >>> with capture_logs() as events:
    ...     _ = bus.publish(EpochRecord(phase=PassPhase.TRAIN, epoch=1, steps=2, samples=64,
    ...                                 loss=0.5, metrics={"acc": 80.0}, duration_s=1.25))
    >>> events[0]["event"], events[0]["phase"], events[0]["acc"]
    ('epoch_end', 'train', 80.0)
    >>> sink.detach()
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import structlog

from epochal.bus import RecordBus, Subscription
from epochal.core.records import EpochRecord, TrainEnd

__all__ = ["EventLogger", "StructlogRecordSink"]


class EventLogger(Protocol):
    """What the sink needs from a logger: structlog's ``info(event, **key_values)``."""

    def info(self, event: str, /, **key_values: Any) -> Any: ...


def _merge(fields: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` plus ``extra``; an extra key that would overwrite a field (or structlog's
    ``event``) is kept as ``metric_<key>`` instead."""
    out = dict(fields)
    for key, value in extra.items():
        name = key if key not in out and key != "event" else f"metric_{key}"
        out[name] = value
    return out


class StructlogRecordSink:
    """Logs each finished pass and the end of training as structlog events, at info level.

    Implements :class:`epochal.ports.Attachable`.

    Per ``EpochRecord``, one event named ``event`` with the key-values ``epoch``, ``phase``
    (``"train"``, ``"valid"``, ``"test"``, ``"predict"``), ``samples``, ``steps``, ``loss``,
    each metric under its own name (a metric whose name clashes with one of these keys is
    logged as ``metric_<name>``), ``duration_s`` (seconds) and ``complete`` (False when a stop
    request cut the pass short). Per ``TrainEnd``, one event named ``train_end_event`` with
    ``last_epoch``, ``stopped`` and the last epoch's logs (``epoch``, ``time``, ``loss``,
    ``val_loss``, ...), clashing keys prefixed the same way.

    Args:
        logger: The logger to write to (anything with structlog's ``info(event, **kw)``);
            None for ``structlog.get_logger("epochal")``, fetched at the first event.
        event: Name of the per-pass event.
        train_end_event: Name of the end-of-training event.
    """

    def __init__(
        self,
        logger: EventLogger | None = None,
        *,
        event: str = "epoch_end",
        train_end_event: str = "train_end",
    ) -> None:
        self._logger = logger
        self.event = event
        self.train_end_event = train_end_event
        self._subscriptions: list[Subscription] = []

    @property
    def logger(self) -> EventLogger:
        """The injected logger, or ``structlog.get_logger("epochal")`` (fetched once, on
        first use)."""
        if self._logger is None:
            self._logger = structlog.get_logger("epochal")
        return self._logger

    def attach(self, bus: RecordBus) -> None:
        """Subscribe to ``bus``; attaching again first detaches from the previous bus."""
        self.detach()
        self._subscriptions = [
            bus.subscribe(EpochRecord, self._on_epoch_record),
            bus.subscribe(TrainEnd, self._on_train_end),
        ]

    def detach(self) -> None:
        """Unsubscribe. Calling it twice is harmless."""
        for subscription in self._subscriptions:
            subscription.cancel()
        self._subscriptions = []

    def _on_epoch_record(self, record: EpochRecord) -> None:
        fields: dict[str, Any] = {
            "epoch": record.epoch,
            "phase": record.phase.value,
            "samples": record.samples,
            "steps": record.steps,
            "loss": record.loss,
            "duration_s": record.duration_s,
            "complete": record.complete,
        }
        self.logger.info(self.event, **_merge(fields, record.metrics))

    def _on_train_end(self, record: TrainEnd) -> None:
        fields: dict[str, Any] = {"last_epoch": record.last_epoch, "stopped": record.stopped}
        self.logger.info(self.train_end_event, **_merge(fields, record.logs))
