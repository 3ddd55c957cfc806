"""``NotificationCallback``: messages to a channel (Slack, e-mail...) when training and
testing begin and end, and every few epochs; ``Notificator``, the protocol a channel
implements (the ``notif`` package's notificators fit it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from epochal.callbacks.base import Callback
from epochal.exceptions import ConfigurationError

__all__ = ["NotificationCallback", "Notificator"]


@runtime_checkable
class Notificator(Protocol):
    """A notification channel: implement ``send_notification`` (subclassing this class is
    optional)."""

    def send_notification(self, message: str, *, subject: str | None = None) -> None:
        """Send ``message`` (may be empty) with an optional ``subject`` line."""
        ...


class NotificationCallback(Callback):
    """Send notifications as training and testing go.

    Subjects: ``Start of the training.``, ``Epoch N is done.`` (every ``alert_frequency``
    epochs, the message listing the epoch logs one ``key: value`` per line), ``End of the
    training.``, ``Start of the testing.``, ``End of the testing.`` (the message listing the
    test logs); each ends with `` for <experiment_name>`` before the period when a name is
    given.

    Args:
        notificator: The channel (anything with ``send_notification(message, *, subject)``).
        alert_frequency: Notify every this many epochs (epochs whose number is a multiple).
        experiment_name: Added to each subject, or None.

    Raises:
        ConfigurationError: ``notificator`` has no ``send_notification``;
            ``alert_frequency`` is not an int >= 1.
    """

    def __init__(
        self, notificator: Notificator, alert_frequency: int = 1,
        experiment_name: str | None = None,
    ) -> None:
        super().__init__()
        if not callable(getattr(notificator, "send_notification", None)):
            raise ConfigurationError(
                f"NotificationCallback needs a notificator with send_notification(message, *, "
                f"subject=None); got {type(notificator).__name__}."
            )
        if isinstance(alert_frequency, bool) or not isinstance(alert_frequency, int) \
                or alert_frequency < 1:
            raise ConfigurationError(
                f"alert_frequency must be an int >= 1 (epochs); got {alert_frequency!r}."
            )
        self.notificator = notificator
        self.alert_frequency = alert_frequency
        self.experiment_name = experiment_name
        self._suffix = f" for {experiment_name}" if experiment_name is not None else ""

    @staticmethod
    def _format_logs(logs: Mapping[str, Any]) -> str:
        return "".join(f"{key}: {value}\n" for key, value in logs.items())

    def _send(self, message: str, subject: str) -> None:
        self.notificator.send_notification(message, subject=f"{subject}{self._suffix}.")

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self._send("", "Start of the training")

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        if epoch_number % self.alert_frequency == 0:
            self._send(f"Here the epoch metrics: \n{self._format_logs(logs)}",
                       f"Epoch {epoch_number} is done")

    def on_train_end(self, logs: dict[str, Any]) -> None:
        self._send("", "End of the training")

    def on_test_begin(self, logs: dict[str, Any]) -> None:
        self._send("", "Start of the testing")

    def on_test_end(self, logs: dict[str, Any]) -> None:
        self._send(f"Here the test metrics: \n{self._format_logs(logs)}",
                   "End of the testing")
