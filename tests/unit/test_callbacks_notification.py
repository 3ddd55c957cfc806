"""NotificationCallback and the Notificator protocol."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from epochal import Model
from epochal.callbacks.notification import NotificationCallback, Notificator
from epochal.exceptions import ConfigurationError


class _Inbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str | None]] = []

    def send_notification(self, message: str, *, subject: str | None = None) -> None:
        self.sent.append((message, subject))


def _data():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 2, generator=g), torch.randn(8, 1, generator=g)
    return [(x[:4], y[:4]), (x[4:], y[4:])]


def test_training_and_testing_notifications():
    """Start/end of training, every alert_frequency-th epoch with its logs, and
    start/end of testing with the test logs, each subject naming the experiment."""
    inbox = _Inbox()
    assert isinstance(inbox, Notificator)
    callback = NotificationCallback(inbox, alert_frequency=2, experiment_name="exp")
    model = Model(nn.Linear(2, 1), "sgd", nn.MSELoss())
    history = model.fit_generator(_data(), epochs=4, verbose=False, callbacks=[callback])
    model.evaluate_generator(_data(), verbose=False, callbacks=[callback])
    subjects = [s for _, s in inbox.sent]
    assert subjects == ["Start of the training for exp.", "Epoch 2 is done for exp.",
                        "Epoch 4 is done for exp.", "End of the training for exp.",
                        "Start of the testing for exp.", "End of the testing for exp."]
    assert f"loss: {history[3]['loss']}\n" in inbox.sent[2][0]
    assert "test_loss: " in inbox.sent[5][0]


def test_without_experiment_name():
    """Without a name, subjects end right after the event."""
    inbox = _Inbox()
    Model(nn.Linear(2, 1), "sgd", nn.MSELoss()).fit_generator(
        _data(), epochs=1, verbose=False, callbacks=[NotificationCallback(inbox)])
    assert inbox.sent[0] == ("", "Start of the training.")


def test_bad_arguments_are_refused():
    """A notificator without send_notification, or alert_frequency < 1, is refused."""
    with pytest.raises(ConfigurationError, match="send_notification"):
        NotificationCallback(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="alert_frequency"):
        NotificationCallback(_Inbox(), alert_frequency=0)
