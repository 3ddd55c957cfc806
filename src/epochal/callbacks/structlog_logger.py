"""``StructlogLogger``: one structlog event per epoch.

The library never configures logging: the logger is ``structlog.get_logger("epochal")``,
fetched lazily, unless the application injects one (the
:class:`epochal_adapters.structlog_sink.EventLogger` protocol, shared with the bus sink).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from epochal.callbacks.base import Callback

if TYPE_CHECKING:
    from epochal_adapters.structlog_sink import EventLogger

__all__ = ["StructlogLogger"]


class StructlogLogger(Callback):
    """Log one structlog event per epoch, at info level, with the epoch's logs as key-values.

    The event (named ``event``, ``'epoch_end'`` by default) carries ``epoch``, ``time``
    (seconds), the learning rates (``lr`` or ``lr_group_<i>``), ``loss``, the metrics,
    ``val_*``, plus ``complete`` (False when a stop request cut the epoch short). A log key
    that would clash with ``event`` or ``complete`` is logged as ``metric_<key>``.

    Args:
        logger: The logger to write to (anything with structlog's ``info(event, **kw)``);
            None for ``structlog.get_logger("epochal")``, fetched at the first event so the
            application's ``structlog.configure`` applies.
        event: The event name.
    """

    def __init__(self, logger: EventLogger | None = None, *, event: str = "epoch_end") -> None:
        super().__init__()
        self._logger = logger
        self.event = event

    @property
    def logger(self) -> EventLogger:
        """The injected logger, or ``structlog.get_logger("epochal")`` (fetched once)."""
        if self._logger is None:
            import structlog

            self._logger = structlog.get_logger("epochal")
        return self._logger

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        """Log the epoch's event."""
        complete = bool(getattr(self.model, "epoch_complete", True))
        learning_rates = getattr(self.model, "learning_rates", None)
        merged = {**logs, **(learning_rates() if callable(learning_rates) else {})}
        fields: dict[str, Any] = {}
        for key, value in merged.items():
            fields[f"metric_{key}" if key in ("event", "complete") else key] = value
        fields["complete"] = complete
        self.logger.info(self.event, **fields)
