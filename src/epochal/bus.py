"""The synchronous, ordered event bus that dispatches records to subscribers.

Example:
    >>> from epochal.bus import RecordBus
    >>> from epochal.core.records import EpochBegin
    >>> bus = RecordBus()
    >>> seen = []
    >>> subscription = bus.subscribe(EpochBegin, seen.append)
    >>> bus.publish(EpochBegin(epoch=1))
    []
    >>> subscription.cancel()
    >>> bus.publish(EpochBegin(epoch=2))
    []
    >>> [r.epoch for r in seen]
    [1]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["RecordBus", "Subscription"]


@attrs.define(eq=False)
class Subscription:
    """A handle on one subscription; ``cancel()`` removes the handler (idempotent)."""

    _bus: RecordBus
    record_type: type
    handler: Callable[[Any], Any]
    active: bool = True

    def cancel(self) -> None:
        """Unsubscribe the handler. Calling it twice is harmless."""
        if self.active:
            self._bus._remove(self)
            self.active = False


class RecordBus:
    """Dispatches each published record to the handlers subscribed to its exact type, in
    subscription order, synchronously.

    A handler's exception propagates out of ``publish`` (the remaining handlers of that record
    do not run). A handler's non-``None`` return value is a directive (e.g.
    ``epochal.core.directives.StopTraining``); ``publish`` returns them in order.
    """

    def __init__(self) -> None:
        self._handlers: dict[type, list[Subscription]] = {}
        # The handlers themselves, per type, rebuilt on (un)subscribe: publish runs per step.
        self._calls: dict[type, tuple[Callable[[Any], Any], ...]] = {}

    def subscribe(self, record_type: type, handler: Callable[[Any], Any]) -> Subscription:
        """Call ``handler(record)`` for every published record whose type is ``record_type``.

        Raises:
            TypeError: ``record_type`` is not a class or ``handler`` is not callable.
        """
        if not isinstance(record_type, type):
            raise TypeError(f"record_type must be a class, got {record_type!r}")
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        subscription = Subscription(self, record_type, handler)
        # Copy on write: a handler that subscribes during publish does not see the record.
        self._handlers[record_type] = [*self._handlers.get(record_type, []), subscription]
        self._calls[record_type] = tuple(s.handler for s in self._handlers[record_type])
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        handlers = self._handlers.get(subscription.record_type, [])
        remaining = [s for s in handlers if s is not subscription]
        if remaining:
            self._handlers[subscription.record_type] = remaining
            self._calls[subscription.record_type] = tuple(s.handler for s in remaining)
        else:
            self._handlers.pop(subscription.record_type, None)
            self._calls.pop(subscription.record_type, None)

    def has_subscribers(self, record_type: type) -> bool:
        """True when at least one handler listens to ``record_type`` (lets a publisher skip
        building records nobody reads)."""
        return record_type in self._handlers

    def publish(self, record: Any) -> list[Any]:
        """Run the handlers of ``type(record)`` now, in subscription order.

        Returns:
            The non-``None`` values the handlers returned (directives), in order.

        Raises:
            Exception: Whatever a handler raised, unchanged.
        """
        calls = self._calls.get(type(record))
        if calls is None:
            return []
        directives = []
        for handler in calls:
            result = handler(record)
            if result is not None:
                directives.append(result)
        return directives
