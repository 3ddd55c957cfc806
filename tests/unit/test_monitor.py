"""Tests of :mod:`epochal.core.monitor`: improvement, best epoch and early stopping, pure."""

from __future__ import annotations

import math

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from epochal.core.monitor import (
    Monitor,
    MonitorState,
    best_epoch,
    early_stopping_epoch,
    should_stop,
)
from epochal.exceptions import ConfigurationError

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
values_lists = st.lists(finite, min_size=1, max_size=30)
modes = st.sampled_from(["min", "max"])


class TestMonitor:
    def test_bad_mode_is_refused(self) -> None:
        """A mode other than 'min'/'max' raises ConfigurationError naming the bad value."""
        with pytest.raises(ConfigurationError, match="'auto'"):
            Monitor(key="val_loss", mode="auto")

    def test_negative_min_delta_is_refused(self) -> None:
        """A negative min_delta raises ConfigurationError."""
        with pytest.raises(ConfigurationError, match="min_delta"):
            Monitor(key="val_loss", min_delta=-0.1)

    @pytest.mark.parametrize("key", ["", None, 3])
    def test_key_must_be_a_non_empty_string(self, key: object) -> None:
        """An empty or non-string key raises ConfigurationError."""
        with pytest.raises(ConfigurationError, match="non-empty log key"):
            Monitor(key=key)  # type: ignore[arg-type]

    def test_is_a_frozen_keyword_only_record(self) -> None:
        """Monitor is immutable and takes keywords only; 'min' and 0.0 are the defaults."""
        monitor = Monitor(key="val_loss")
        assert (monitor.mode, monitor.min_delta) == ("min", 0.0)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            monitor.mode = "max"  # type: ignore[misc]
        with pytest.raises(TypeError):
            Monitor("val_loss")  # type: ignore[misc]

    def test_min_mode_needs_a_drop_larger_than_min_delta(self) -> None:
        """In 'min' mode a value improves only when below best - min_delta (strictly)."""
        monitor = Monitor(key="val_loss", mode="min", min_delta=0.5)
        assert monitor.improves(1.4, 2.0)
        assert not monitor.improves(1.5, 2.0)
        assert not monitor.improves(2.5, 2.0)

    def test_max_mode_needs_a_rise_larger_than_min_delta(self) -> None:
        """In 'max' mode a value improves only when above best + min_delta (strictly)."""
        monitor = Monitor(key="val_acc", mode="max", min_delta=1.0)
        assert monitor.improves(91.5, 90.0)
        assert not monitor.improves(91.0, 90.0)
        assert not monitor.improves(80.0, 90.0)

    @given(mode=modes)
    def test_nan_never_improves(self, mode: str) -> None:
        """NaN improves neither on a best value nor on 'no best yet'."""
        monitor = Monitor(key="k", mode=mode)
        assert not monitor.improves(math.nan, None)
        assert not monitor.improves(math.nan, 1.0)

    @given(mode=modes, value=finite)
    def test_first_value_always_improves(self, mode: str, value: float) -> None:
        """Any finite value improves on 'no best yet', whatever min_delta is."""
        assert Monitor(key="k", mode=mode, min_delta=10.0).improves(value, None)


class TestMonitorState:
    def test_improvement_resets_wait_and_records_epoch(self) -> None:
        """An improving value becomes the best, at its epoch, with wait back to 0."""
        monitor = Monitor(key="val_loss")
        state = MonitorState(best=1.0, best_epoch=2, wait=3)
        assert state.update(monitor, 6, 0.5) == MonitorState(best=0.5, best_epoch=6, wait=0)

    def test_no_improvement_counts_one_more_wait(self) -> None:
        """A value that does not improve keeps the best and its epoch and adds one to wait."""
        monitor = Monitor(key="val_loss")
        state = MonitorState(best=1.0, best_epoch=2, wait=3)
        assert state.update(monitor, 6, 1.0) == MonitorState(best=1.0, best_epoch=2, wait=4)

    def test_update_leaves_the_old_state_alone(self) -> None:
        """update returns a new state; the one it was called on is unchanged."""
        state = MonitorState()
        state.update(Monitor(key="k"), 1, 0.3)
        assert state == MonitorState(best=None, best_epoch=None, wait=0)

    @given(
        best=st.none() | finite,
        epoch=st.none() | st.integers(min_value=1, max_value=10_000),
        wait=st.integers(min_value=0, max_value=10_000),
    )
    def test_dict_round_trip(self, best: float | None, epoch: int | None, wait: int) -> None:
        """from_dict(to_dict(state)) == state, for any state."""
        state = MonitorState(best=best, best_epoch=epoch, wait=wait)
        assert MonitorState.from_dict(state.to_dict()) == state

    def test_from_dict_of_an_empty_dict_is_a_fresh_state(self) -> None:
        """Missing keys read as 'no best yet' and wait 0 (a checkpoint from before tracking)."""
        assert MonitorState.from_dict({}) == MonitorState()


class TestBestEpoch:
    @given(values=values_lists, mode=modes, first=st.integers(min_value=0, max_value=5))
    def test_is_the_first_extreme_without_min_delta(
        self, values: list[float], mode: str, first: int
    ) -> None:
        """With min_delta 0 the best epoch is the first epoch holding the min (or max)."""
        target = min(values) if mode == "min" else max(values)
        expected = first + values.index(target)
        assert best_epoch(values, Monitor(key="k", mode=mode), first_epoch=first) == expected

    def test_min_delta_keeps_the_earlier_epoch_on_small_gains(self) -> None:
        """Gains no larger than min_delta do not move the best epoch."""
        monitor = Monitor(key="val_acc", mode="max", min_delta=0.5)
        assert best_epoch([90.0, 90.4, 90.5, 91.1], monitor) == 4
        assert best_epoch([90.0, 90.4, 90.5], monitor) == 1

    def test_nan_epochs_are_skipped(self) -> None:
        """NaN values never become the best."""
        assert best_epoch([math.nan, 2.0, math.nan, 1.0], Monitor(key="k")) == 4

    def test_no_values_or_only_nan_give_none(self) -> None:
        """Without a value that counts there is no best epoch."""
        assert best_epoch([], Monitor(key="k")) is None
        assert best_epoch([math.nan, math.nan], Monitor(key="k")) is None


class TestEarlyStopping:
    @given(values=values_lists, mode=modes, patience=st.integers(min_value=1, max_value=8))
    def test_stops_patience_epochs_after_the_best_so_far(
        self, values: list[float], mode: str, patience: int
    ) -> None:
        """With patience >= 1 training stops at the first epoch lying `patience` epochs after
        the best epoch seen up to it, or never when the values run out first."""
        monitor = Monitor(key="k", mode=mode)
        expected = None
        for end in range(1, len(values) + 1):
            best = best_epoch(values[:end], monitor)
            assert best is not None
            if end - best >= patience:
                expected = end
                break
        assert early_stopping_epoch(values, monitor, patience) == expected

    def test_patience_zero_stops_at_the_first_non_improving_epoch(self) -> None:
        """With patience 0 the first epoch that does not improve ends training."""
        monitor = Monitor(key="val_loss")
        assert early_stopping_epoch([3.0, 2.0, 2.5, 1.0], monitor, 0) == 3

    def test_first_epoch_offsets_the_answer(self) -> None:
        """first_epoch shifts the epoch numbers (a resumed training)."""
        monitor = Monitor(key="val_loss")
        assert early_stopping_epoch([1.0, 2.0, 3.0], monitor, 2, first_epoch=11) == 13

    def test_negative_patience_is_refused(self) -> None:
        """A negative patience raises ConfigurationError before anything is computed."""
        with pytest.raises(ConfigurationError, match="patience"):
            early_stopping_epoch([1.0], Monitor(key="k"), -1)

    def test_should_stop_needs_a_positive_wait(self) -> None:
        """should_stop is False on a fresh or just improved state, even with patience 0."""
        assert not should_stop(MonitorState(wait=0), 0)
        assert should_stop(MonitorState(wait=1), 0)
        assert not should_stop(MonitorState(wait=2), 3)
        assert should_stop(MonitorState(wait=3), 3)
