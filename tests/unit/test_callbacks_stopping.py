"""Stopping callbacks: EarlyStopping and TerminateOnNaN.

Real fits use a tiny ``nn.Linear`` on synthetic data, with a batch metric ``score`` whose value
in epoch ``e`` is ``values[e - 1]``, so ``val_score`` follows a prescribed sequence.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from epochal import Callback, Model
from epochal.callbacks.stopping import EarlyStopping, TerminateOnNaN
from epochal.core.monitor import Monitor, early_stopping_epoch
from epochal.exceptions import ConfigurationError, MonitorKeyError

# ---------------------------------------------------------------------- helpers


class _EpochClock(Callback):
    """Tells the scripted metric which epoch runs (first in the callback list)."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 1

    def on_epoch_begin(self, epoch_number: int, logs: dict[str, Any]) -> None:
        self.epoch = epoch_number


class _BatchCounter(Callback):
    """Counts the training batches that ran."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        self.batches += 1


class _BadLossAt:
    """MSE whose training call number ``n`` (1-based) returns ``bad`` (NaN or inf)."""

    def __init__(self, network: nn.Module, n: int | None, bad: float) -> None:
        self.network, self.n, self.bad, self.calls = network, n, bad, 0

    def __call__(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.mse_loss(y_pred, y_true)
        if self.network.training:
            self.calls += 1
            if self.calls == self.n:
                return loss * 0 + self.bad
        return loss


def _scripted_fit(
    values: list[float],
    callbacks: list[Callback],
    *,
    epochs: int | None = None,
    bad_loss_at: int | None = None,
    bad: float = math.nan,
    validation: bool = True,
    initial_epoch: int = 1,
    batches: int = 2,
) -> tuple[Model, list[dict[str, Any]], _BatchCounter]:
    """Fit a tiny regression; ``val_score`` of epoch e is ``values[e - 1]``."""
    torch.manual_seed(0)
    network = nn.Linear(2, 1)
    clock = _EpochClock()
    counter = _BatchCounter()

    def score(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return torch.tensor(values[clock.epoch - 1], dtype=torch.float64)

    model = Model(network, torch.optim.SGD(network.parameters(), lr=0.05),
                  _BadLossAt(network, bad_loss_at, bad), batch_metrics=[("score", score)])
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2 * batches, 2, generator=g), torch.randn(2 * batches, 1, generator=g)
    train = [(x[2 * i : 2 * i + 2], y[2 * i : 2 * i + 2]) for i in range(batches)]
    history = model.fit_generator(
        train, [(x, y)] if validation else None, epochs=epochs or len(values),
        initial_epoch=initial_epoch, verbose=False, callbacks=[clock, counter, *callbacks],
    )
    return model, history, counter


class _FakeModel:
    """What EarlyStopping uses: the log keys, the completion flag, the stop flag."""

    def __init__(self) -> None:
        self.epoch_log_keys = ("epoch", "time", "loss", "val_loss")
        self.epoch_complete = True
        self.stop_training = False


def _drive(callback: EarlyStopping, values: list[float], first_epoch: int = 1,
           *, begin: bool = True) -> int | None:
    """Feed ``values`` as val_loss to the hooks; the epoch at which it asked to stop."""
    model = _FakeModel()
    callback.set_model(model)  # type: ignore[arg-type]
    if begin:
        callback.on_train_begin({})
    for i, value in enumerate(values):
        callback.on_epoch_end(first_epoch + i, {"epoch": first_epoch + i, "val_loss": value})
        if model.stop_training:
            return first_epoch + i
    return None


def _direct_stop_epoch(values: list[float], patience: int, mode: str, min_delta: float) -> int | None:
    """Keras's rule written out: epochs since the last improvement, stop when > 0 and >= patience."""
    best = None
    last_improvement = 0  # epoch of the last improvement; 0 = none yet
    for epoch, value in enumerate(values, start=1):
        better = not math.isnan(value) and (
            best is None
            or (value < best - min_delta if mode == "min" else value > best + min_delta)
        )
        if better:
            best, last_improvement = value, epoch
        since = epoch - last_improvement
        if since > 0 and since >= patience:
            return epoch
    return None


_metric_values = st.lists(
    st.one_of(
        st.sampled_from([0.0, 1.0, 2.0, 3.0]),  # ties are frequent
        st.floats(-10, 10, allow_nan=False),
        st.just(math.nan),
    ),
    min_size=1,
    max_size=12,
)


# ---------------------------------------------------------------------- EarlyStopping


class TestEarlyStopping:
    def test_patience_is_exactly_honoured(self):
        """With patience 3 and the best at epoch 3, training ends after epoch 6."""
        values = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 2.0, 1.0]
        callback = EarlyStopping(monitor="val_score", patience=3)
        _, history, _ = _scripted_fit(values, [callback])
        assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6]
        assert callback.stopped_epoch == 6 and callback.best_epoch == 3

    def test_patience_zero_stops_after_the_first_non_improving_epoch(self):
        """patience=0 stops at the first epoch that does not improve (a tie does not)."""
        _, history, _ = _scripted_fit([3.0, 2.0, 2.0, 1.0],
                                      [EarlyStopping(monitor="val_score")])
        assert len(history) == 3

    def test_min_delta_counts_small_gains_as_no_improvement(self):
        """Gains no larger than min_delta do not reset the wait."""
        values = [3.0, 2.9, 2.85, 2.8, 1.0]
        _, history, _ = _scripted_fit(
            values, [EarlyStopping(monitor="val_score", min_delta=0.5, patience=3)])
        assert len(history) == 4

    def test_mode_max(self):
        """In max mode, falling values count as no improvement."""
        _, history, _ = _scripted_fit(
            [1.0, 2.0, 1.5, 1.9, 3.0], [EarlyStopping(monitor="val_score", mode="max",
                                                      patience=2)])
        assert len(history) == 4

    def test_last_epoch_counts_and_no_stop_before_max_epochs(self):
        """Patience not run out at the last epoch: training simply reaches max epochs."""
        callback = EarlyStopping(monitor="val_score", patience=2)
        _, history, _ = _scripted_fit([3.0, 2.0, 2.5], [callback])
        assert len(history) == 3 and callback.stopped_epoch == 0 and callback.wait == 1

    def test_verbose_prints_the_stopped_epoch(self, capsys):
        """verbose prints 'Epoch N: early stopping' when the stopping epoch ends."""
        _scripted_fit([1.0, 2.0, 2.0],
                      [EarlyStopping(monitor="val_score", patience=1, verbose=True)])
        assert "Epoch 2: early stopping" in capsys.readouterr().out

    def test_unknown_monitor_fails_before_the_first_batch(self):
        """A monitor that will never be logged is a MonitorKeyError before any batch runs."""
        counter = _BatchCounter()
        with pytest.raises(MonitorKeyError) as info:
            _scripted_fit([1.0], [counter, EarlyStopping(monitor="val_scores")])
        message = str(info.value)
        assert "EarlyStopping monitors 'val_scores', which this training will never log" in message
        assert "Logged keys: epoch, time, loss, score, val_loss, val_score." in message
        assert "Did you mean 'val_score'?" in message
        assert counter.batches == 0

    def test_val_monitor_without_validation_says_validation_is_missing(self):
        """Monitoring val_loss without validation data says the validation data is missing."""
        with pytest.raises(MonitorKeyError, match="no validation data"):
            _scripted_fit([1.0], [EarlyStopping()], validation=False)

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"patience": -1}, "patience"),
            ({"patience": 1.5}, "patience"),
            ({"mode": "auto"}, "mode must be"),
            ({"min_delta": -0.1}, "min_delta"),
            ({"monitor": "runs/val_loss"}, "path separator"),
        ],
    )
    def test_bad_configuration_fails_at_construction(self, kwargs, match):
        """Negative or non-int patience, unknown mode, negative min_delta, a path as monitor."""
        with pytest.raises(ConfigurationError, match=match):
            EarlyStopping(**kwargs)

    def test_cut_short_epoch_is_not_counted(self):
        """An epoch a stop request cut short does not advance the wait counter."""
        callback = EarlyStopping(patience=1)
        model = _FakeModel()
        callback.set_model(model)  # type: ignore[arg-type]
        callback.on_train_begin({})
        callback.on_epoch_end(1, {"epoch": 1, "val_loss": 1.0})
        model.epoch_complete = False
        callback.on_epoch_end(2, {"epoch": 2, "loss": 5.0})
        assert callback.wait == 0 and not model.stop_training

    def test_a_new_fit_starts_afresh(self):
        """Reusing the callback for a second fit resets best and wait (as Poutyne)."""
        callback = EarlyStopping(patience=2)
        assert _drive(callback, [1.0, 2.0, 2.0]) == 3
        assert _drive(callback, [5.0, 6.0, 4.0]) is None

    def test_state_round_trip_resumes_the_count(self):
        """A callback loaded with the state after epoch 3 stops where an uninterrupted one does."""
        values = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 2.0]
        first = EarlyStopping(monitor="val_score", patience=3)
        _scripted_fit(values, [first], epochs=4)
        assert first.state_dict()["monitor_state"] == {"best": 3.0, "best_epoch": 3, "wait": 1}
        second = EarlyStopping(monitor="val_score", patience=3)
        second.load_state_dict(first.state_dict())
        _, history, _ = _scripted_fit(values, [second], initial_epoch=5)
        assert [h["epoch"] for h in history] == [5, 6] and second.stopped_epoch == 6

    def test_load_state_of_another_monitor_is_refused(self):
        """A state saved for another monitor is refused with a ConfigurationError."""
        with pytest.raises(ConfigurationError, match="monitoring 'val_acc'"):
            EarlyStopping().load_state_dict(
                EarlyStopping(monitor="val_acc", mode="max").state_dict())

    @given(values=_metric_values, patience=st.integers(0, 4),
           mode=st.sampled_from(["min", "max"]), min_delta=st.sampled_from([0.0, 0.5]))
    def test_property_stops_where_the_rule_says(self, values, patience, mode, min_delta):
        """Driven through its hooks, it stops at early_stopping_epoch's and the direct answer."""
        callback = EarlyStopping(patience=patience, mode=mode, min_delta=min_delta)
        stopped = _drive(callback, values)
        monitor = Monitor(key="val_loss", mode=mode, min_delta=min_delta)
        assert stopped == early_stopping_epoch(values, monitor, patience)
        assert stopped == _direct_stop_epoch(values, patience, mode, min_delta)

    @settings(max_examples=10, deadline=None)
    @given(values=_metric_values, patience=st.integers(0, 3))
    def test_property_real_fit_stops_where_the_rule_says(self, values, patience):
        """In a real fit, the number of epochs run is the predicted stop epoch (or all)."""
        _, history, _ = _scripted_fit(values, [EarlyStopping(monitor="val_score",
                                                             patience=patience)], batches=1)
        expected = _direct_stop_epoch(values, patience, "min", 0.0)
        assert len(history) == (expected if expected is not None else len(values))

    @given(values=_metric_values, patience=st.integers(0, 4), data=st.data())
    def test_property_state_round_trip_mid_sequence_gives_identical_decisions(
        self, values, patience, data
    ):
        """Loading the state after any epoch into a fresh callback gives the same stop epoch."""
        whole = _drive(EarlyStopping(patience=patience), values)
        stop = whole if whole is not None else len(values)
        split = data.draw(st.integers(0, stop - 1)) if stop > 0 else 0
        first = EarlyStopping(patience=patience)
        assert _drive(first, values[:split]) is None
        second = EarlyStopping(patience=patience)
        second.load_state_dict(first.state_dict())
        assert _drive(second, values[split:], first_epoch=split + 1) == whole


# ---------------------------------------------------------------------- TerminateOnNaN


class TestTerminateOnNaN:
    @pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
    def test_stops_at_the_end_of_the_very_step(self, bad, capsys):
        """A NaN or ±inf loss at training batch 5 (epoch 3, batch 1) ends training there."""
        callback = TerminateOnNaN()
        model, history, counter = _scripted_fit(
            [1.0] * 5, [callback], bad_loss_at=5, bad=bad)
        assert counter.batches == 5
        assert len(history) == 3 and "val_loss" not in history[-1]
        assert model.stop_training and not model.epoch_complete
        assert callback.stopped_batch == (3, 1)
        assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out

    def test_finite_losses_do_not_stop(self):
        """With finite losses every epoch runs."""
        _, history, counter = _scripted_fit([1.0] * 3, [TerminateOnNaN()])
        assert len(history) == 3 and counter.batches == 6

    def test_state_dict_is_empty_and_loads(self):
        """Its state is an empty dict that loads back."""
        callback = TerminateOnNaN()
        callback.load_state_dict(callback.state_dict())
        assert callback.state_dict() == {}


class TestTerminateOnNaNLossForms:
    class _Model:
        stop_training = False

    @pytest.mark.parametrize("loss", [
        np.array([math.nan]), np.array([[math.inf]]), torch.tensor([math.nan]),
        torch.tensor(math.nan), np.float32("nan")])
    def test_one_element_arrays_and_tensors_are_read(self, loss, capsys):
        """A loss that is a one-element array or tensor (any shape) is checked like a
        number, without a NumPy deprecation warning."""
        callback = TerminateOnNaN()
        callback.set_model(self._Model())  # type: ignore[arg-type]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = callback.on_train_batch_end(2, {"loss": loss})
        assert result is not None and callback.model.stop_training
        assert callback.stopped_batch == (0, 2)

    def test_finite_one_element_array_does_not_stop(self):
        """A finite one-element array does not stop training."""
        callback = TerminateOnNaN()
        callback.set_model(self._Model())  # type: ignore[arg-type]
        assert callback.on_train_batch_end(1, {"loss": np.array([0.5])}) is None

    def test_a_multi_element_loss_is_a_clear_error(self):
        """A loss with several elements is a ConfigurationError saying to reduce it."""
        callback = TerminateOnNaN()
        callback.set_model(self._Model())  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="one-element"):
            callback.on_train_batch_end(1, {"loss": torch.tensor([1.0, 2.0])})
