"""Tests of ``epochal_adapters.structlog_sink.StructlogRecordSink``."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from epochal.bus import RecordBus
from epochal.core.records import EpochEnd, EpochRecord, PassPhase, StepRecord, TrainEnd
from epochal.ports import Attachable
from epochal_adapters.structlog_sink import StructlogRecordSink


class RecordingLogger:
    """A logger that keeps every ``info`` call as ``(event, key_values)``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, /, **key_values: Any) -> None:
        self.events.append((event, key_values))


def epoch_record(phase: PassPhase = PassPhase.TRAIN, **metrics: float) -> EpochRecord:
    return EpochRecord(
        phase=phase, epoch=2, steps=10, samples=320, loss=0.25,
        metrics=metrics or {"acc": 91.5}, duration_s=3.5,
    )


def attached(sink: StructlogRecordSink) -> RecordBus:
    bus = RecordBus()
    sink.attach(bus)
    return bus


class TestStructlogRecordSink:
    def test_one_event_per_epoch_record(self) -> None:
        """Each EpochRecord becomes one 'epoch_end' event with the pass's key-values."""
        bus = attached(StructlogRecordSink())
        with capture_logs() as events:
            bus.publish(epoch_record(PassPhase.TRAIN))
            bus.publish(epoch_record(PassPhase.VALID))
        assert events == [
            {
                "event": "epoch_end", "log_level": "info", "epoch": 2, "phase": phase,
                "samples": 320, "steps": 10, "loss": 0.25, "acc": 91.5, "duration_s": 3.5,
                "complete": True,
            }
            for phase in ("train", "valid")
        ]

    def test_train_end_event(self) -> None:
        """TrainEnd becomes one 'train_end' event with the last epoch's logs."""
        bus = attached(StructlogRecordSink())
        with capture_logs() as events:
            bus.publish(TrainEnd(last_epoch=3, stopped=True, logs={"epoch": 3, "loss": 0.1}))
        assert events == [
            {"event": "train_end", "log_level": "info", "last_epoch": 3, "stopped": True,
             "epoch": 3, "loss": 0.1}
        ]

    def test_ignores_other_records(self) -> None:
        """Step records and epoch ends produce no event."""
        bus = attached(StructlogRecordSink())
        with capture_logs() as events:
            bus.publish(StepRecord(phase=PassPhase.TRAIN, epoch=1, step=1, global_step=1,
                                   batch_size=4, loss=0.5, duration_s=0.1))
            bus.publish(EpochEnd(epoch=1, logs={"epoch": 1, "loss": 0.5}))
        assert events == []

    def test_injected_logger(self) -> None:
        """An injected logger receives the events instead of structlog's."""
        logger = RecordingLogger()
        bus = attached(StructlogRecordSink(logger, event="pass_end"))
        bus.publish(epoch_record(PassPhase.TEST))
        assert logger.events == [
            ("pass_end", {"epoch": 2, "phase": "test", "samples": 320, "steps": 10,
                          "loss": 0.25, "acc": 91.5, "duration_s": 3.5, "complete": True})
        ]

    def test_clashing_metric_names_are_prefixed(self) -> None:
        """A metric named like a record field (or 'event') is logged as 'metric_<name>'."""
        logger = RecordingLogger()
        bus = attached(StructlogRecordSink(logger))
        bus.publish(epoch_record(steps=7.0, event=1.0))
        (_, key_values), = logger.events
        assert key_values["steps"] == 10
        assert key_values["metric_steps"] == 7.0
        assert key_values["metric_event"] == 1.0

    def test_logger_fetched_at_first_event(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The 'epochal' structlog logger is fetched at the first event, not before."""
        logger = RecordingLogger()
        names: list[str] = []

        def get_logger(name: str) -> RecordingLogger:
            names.append(name)
            return logger

        monkeypatch.setattr(structlog, "get_logger", get_logger)
        bus = attached(StructlogRecordSink())
        assert names == []
        bus.publish(epoch_record())
        bus.publish(epoch_record())
        assert names == ["epochal"]
        assert len(logger.events) == 2

    def test_does_not_configure_structlog(self) -> None:
        """Logging an event leaves structlog's configuration as the application set it."""
        before = structlog.get_config()
        bus = attached(StructlogRecordSink())
        with capture_logs():
            bus.publish(epoch_record())
        assert structlog.get_config() == before

    def test_detach_stops_events(self) -> None:
        """After detach, records produce no event; detaching twice is harmless."""
        logger = RecordingLogger()
        sink = StructlogRecordSink(logger)
        bus = attached(sink)
        sink.detach()
        sink.detach()
        bus.publish(epoch_record())
        assert logger.events == []
        assert isinstance(sink, Attachable)
