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
    due: Callable[[], bool] | None = None

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

    def subscribe(
        self,
        record_type: type,
        handler: Callable[[Any], Any],
        *,
        due: Callable[[], bool] | None = None,
    ) -> Subscription:
        """Call ``handler(record)`` for every published record whose type is ``record_type``.

        Args:
            record_type: The exact class of the records to receive.
            handler: Called with each record; a non-``None`` return value is a directive.
            due: A sampling subscriber (a display refreshed every 0.1 s): ``due()`` says
                whether it would use a record published now. A publisher that asks
                :meth:`due` may skip building records while no subscriber's ``due()`` is
                true; the handler still receives every record that is published.

        Raises:
            TypeError: ``record_type`` is not a class or ``handler`` is not callable.
        """
        if not isinstance(record_type, type):
            raise TypeError(f"record_type must be a class, got {record_type!r}")
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        if due is not None and not callable(due):
            raise TypeError(f"due must be callable or None, got {due!r}")
        subscription = Subscription(self, record_type, handler, due=due)
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

    def due(self, record_type: type) -> Callable[[], bool] | None:
        """When every subscriber of ``record_type`` samples (subscribed with ``due``), a
        callable true when one of them would use a record now; else None (every record is
        wanted, or nobody listens: see :meth:`has_subscribers`)."""
        subscriptions = self._handlers.get(record_type, [])
        checks = [s.due for s in subscriptions]
        if not checks or any(check is None for check in checks):
            return None
        if len(checks) == 1:
            return checks[0]
        gates = tuple(c for c in checks if c is not None)
        return lambda: any(check() for check in gates)

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
