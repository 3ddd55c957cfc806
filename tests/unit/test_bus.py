"""The record bus (epochal.bus)."""

from __future__ import annotations

import doctest

import pytest

import epochal.bus
from epochal.bus import RecordBus
from epochal.core.directives import StopTraining
from epochal.core.records import EpochBegin, TrainBegin


class TestRecordBus:
    def test_handlers_run_in_subscription_order_for_their_exact_type(self):
        """Handlers of a type run in the order subscribed; other types' handlers do not run."""
        bus = RecordBus()
        seen = []
        bus.subscribe(EpochBegin, lambda r: seen.append(("a", r.epoch)))
        bus.subscribe(EpochBegin, lambda r: seen.append(("b", r.epoch)))
        bus.subscribe(TrainBegin, lambda r: seen.append(("train", 0)))
        bus.publish(EpochBegin(epoch=4))
        assert seen == [("a", 4), ("b", 4)]

    def test_non_none_returns_are_directives_in_order(self):
        """publish returns the handlers' non-None values, in order."""
        bus = RecordBus()
        stop = StopTraining(reason="x")
        bus.subscribe(EpochBegin, lambda r: None)
        bus.subscribe(EpochBegin, lambda r: stop)
        assert bus.publish(EpochBegin(epoch=1)) == [stop]

    def test_cancel_removes_and_is_idempotent(self):
        """A cancelled handler stops receiving records; cancelling twice is harmless and
        has_subscribers turns False with the last handler."""
        bus = RecordBus()
        seen = []
        sub = bus.subscribe(EpochBegin, seen.append)
        assert bus.has_subscribers(EpochBegin)
        sub.cancel()
        sub.cancel()
        bus.publish(EpochBegin(epoch=1))
        assert seen == [] and not bus.has_subscribers(EpochBegin)

    def test_subscribing_during_publish_does_not_see_the_record(self):
        """A handler subscribed while a record is being published does not receive it."""
        bus = RecordBus()
        late = []

        def first(record):
            bus.subscribe(EpochBegin, late.append)

        bus.subscribe(EpochBegin, first)
        bus.publish(EpochBegin(epoch=1))
        assert late == []
        bus.publish(EpochBegin(epoch=2))
        assert [r.epoch for r in late] == [2]

    def test_handler_exception_propagates_and_stops_the_rest(self):
        """An exception in a handler leaves publish; later handlers of that record do not run."""
        bus = RecordBus()
        after = []

        def boom(record):
            raise RuntimeError("boom")

        bus.subscribe(EpochBegin, boom)
        bus.subscribe(EpochBegin, after.append)
        with pytest.raises(RuntimeError, match="boom"):
            bus.publish(EpochBegin(epoch=1))
        assert after == []

    def test_bad_subscriptions_are_type_errors(self):
        """A non-class record type or a non-callable handler is a TypeError."""
        bus = RecordBus()
        with pytest.raises(TypeError):
            bus.subscribe("EpochBegin", print)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            bus.subscribe(EpochBegin, 3)  # type: ignore[arg-type]

    def test_docstring_examples_run(self):
        """The module's examples give the results they show."""
        assert doctest.testmod(epochal.bus).failed == 0


class TestSamplingSubscribers:
    def test_due_is_none_without_sampling_subscribers(self) -> None:
        """Nobody listening, or one subscriber without ``due``: every record is wanted (None)."""
        bus = RecordBus()
        assert bus.due(EpochBegin) is None
        bus.subscribe(EpochBegin, lambda r: None, due=lambda: False)
        bus.subscribe(EpochBegin, lambda r: None)
        assert bus.due(EpochBegin) is None

    def test_due_follows_the_sampling_subscribers(self) -> None:
        """With sampling subscribers only, ``due()`` is true when one of them is due."""
        bus = RecordBus()
        flags = [False, False]
        bus.subscribe(EpochBegin, lambda r: None, due=lambda: flags[0])
        second = bus.subscribe(EpochBegin, lambda r: None, due=lambda: flags[1])
        due = bus.due(EpochBegin)
        assert due is not None and due() is False
        flags[1] = True
        assert due() is True
        second.cancel()
        only = bus.due(EpochBegin)
        assert only is not None and only() is False

    def test_sampling_handler_still_gets_published_records(self) -> None:
        """``due`` is a hint to the publisher: a published record reaches the handler."""
        bus = RecordBus()
        seen: list[int] = []
        bus.subscribe(EpochBegin, lambda r: seen.append(r.epoch), due=lambda: False)
        bus.publish(EpochBegin(epoch=3))
        assert seen == [3]

    def test_due_must_be_callable(self) -> None:
        """A ``due`` that is not callable is refused when subscribing."""
        with pytest.raises(TypeError, match="due must be callable"):
            RecordBus().subscribe(EpochBegin, lambda r: None, due=True)  # type: ignore[arg-type]
