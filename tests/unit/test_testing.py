"""The fakes users and tests share (epochal.testing)."""

from __future__ import annotations

import doctest

import pytest

import epochal.testing
from epochal.ports import CheckpointStore, TrainingContext
from epochal.testing import FakeClock, FakeTrainingContext, MemoryCheckpointStore


class TestFakes:
    def test_fake_training_context_implements_the_port(self):
        """FakeTrainingContext is a TrainingContext; learning_rates returns a copy."""
        context = FakeTrainingContext(metrics_names=["acc"], lrs={"lr": 0.5})
        assert isinstance(context, TrainingContext)
        rates = context.learning_rates()
        rates["lr"] = 9.0
        assert context.learning_rates() == {"lr": 0.5}
        assert context.epoch_log_keys[-1] == "val_acc" and context.global_step == 0

    def test_memory_store_keeps_old_bytes_on_a_failed_write(self):
        """A simulated failed write raises and leaves the previous bytes."""
        store = MemoryCheckpointStore(fail_writes={"a"})
        assert isinstance(store, CheckpointStore)
        with pytest.raises(OSError):
            store.write("a", b"new")
        assert not store.exists("a")

    def test_fake_clock_advances_per_read(self):
        """Each read returns the previous value plus tick_s."""
        clock = FakeClock(start_s=1.0, tick_s=0.25)
        assert [clock(), clock(), clock()] == [1.0, 1.25, 1.5]

    def test_docstring_examples_run(self):
        """The module's examples give the results they show."""
        assert doctest.testmod(epochal.testing).failed == 0
