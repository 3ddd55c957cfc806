"""The training driver (epochal._driver): passes, records on the bus, directives, steps."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from epochal._driver import TrainingDriver
from epochal.bus import RecordBus
from epochal.core.directives import StopTraining
from epochal.core.loop import EpochSetup
from epochal.core.records import (
    BackwardEnd,
    EpochBegin,
    EpochEnd,
    EpochRecord,
    PassPhase,
    PhaseBegin,
    StepBegin,
    StepRecord,
    TrainBegin,
    TrainEnd,
)
from epochal.testing import FakeClock, FakeTrainingContext, RecordingSink

ALL = (TrainBegin, EpochBegin, PhaseBegin, StepBegin, BackwardEnd, StepRecord, EpochRecord,
       EpochEnd, TrainEnd)


def _setup(seed: int = 0) -> EpochSetup:
    torch.manual_seed(seed)
    network = nn.Linear(3, 2)
    return EpochSetup(network=network, loss_function=nn.CrossEntropyLoss(),
                      optimizer=torch.optim.SGD(network.parameters(), lr=0.1))


def _batches(n_batches: int = 3, size: int = 4):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(size, 3, generator=g), torch.randint(0, 2, (size,), generator=g))
            for _ in range(n_batches)]


def _driver(context=None, bus=None):
    return TrainingDriver(bus=bus or RecordBus(), context=context or FakeTrainingContext(
        lrs={"lr": 0.1}), clock=FakeClock(tick_s=0.5))


def _fit(driver, setup, train, valid=None, epochs=2):
    return driver.fit(train_setup=setup, valid_setup=setup, train_generator=train,
                      valid_generator=valid, steps_per_epoch=None, validation_steps=None,
                      epochs=epochs, initial_epoch=1, params={"epochs": epochs},
                      log_keys=("epoch", "time", "loss"), learning_rates=lambda: {"lr": 0.1})


class TestFit:
    def test_records_are_published_in_poutyne_order(self):
        """TrainBegin, then per epoch EpochBegin, the passes' records and EpochEnd, then
        TrainEnd; the history rows equal the EpochEnd logs."""
        driver = _driver()
        sink = RecordingSink(*ALL)
        sink.attach(driver.bus)
        history = _fit(driver, _setup(), _batches(2), _batches(1), epochs=1)
        kinds = [type(r).__name__ for r in sink.records]
        assert kinds == ["TrainBegin", "EpochBegin", "PhaseBegin", "StepBegin", "BackwardEnd",
                         "StepRecord", "StepBegin", "BackwardEnd", "StepRecord", "EpochRecord",
                         "PhaseBegin", "StepBegin", "StepRecord", "EpochRecord", "EpochEnd",
                         "TrainEnd"]
        end = sink.of_type(EpochEnd)[0]
        assert dict(end.logs) == history[0] and dict(end.lrs) == {"lr": 0.1}
        assert sink.of_type(TrainBegin)[0].log_keys == ("epoch", "time", "loss")
        assert list(history[0]) == ["epoch", "time", "loss", "val_loss"]

    def test_stop_directive_ends_the_pass_and_the_training(self):
        """A StopTraining returned on the first step record ends the pass after that step,
        marks the epoch incomplete, skips validation and runs no further epoch."""
        context = FakeTrainingContext()
        driver = _driver(context)
        driver.bus.subscribe(StepRecord, lambda r: StopTraining(reason="test"))
        sink = RecordingSink(EpochRecord, EpochEnd, TrainEnd)
        sink.attach(driver.bus)
        history = _fit(driver, _setup(), _batches(3), _batches(1), epochs=3)
        assert len(history) == 1 and "val_loss" not in history[0]
        assert sink.of_type(EpochRecord)[0].steps == 1
        assert not sink.of_type(EpochEnd)[0].complete and not context.epoch_complete
        assert sink.of_type(TrainEnd)[0].stopped and context.stop_training

    def test_global_step_counts_training_batches_across_epochs(self):
        """global_step grows by the training batches of each epoch, not validation ones."""
        driver = _driver()
        sink = RecordingSink(StepRecord)
        sink.attach(driver.bus)
        _fit(driver, _setup(), _batches(3), _batches(2), epochs=2)
        assert driver.global_step == 6
        train_steps = [r.global_step for r in sink.records if r.phase is PassPhase.TRAIN]
        assert train_steps == [1, 2, 3, 4, 5, 6]

    def test_non_finite_loss_warns_once(self):
        """A nan training loss in two epochs gives one RuntimeWarning naming the first."""
        batches = _batches(3)
        batches[2][0][0, 0] = float("nan")
        driver = _driver()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _fit(driver, _setup(), batches, epochs=2)
        found = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert len(found) == 1 and "epoch 1, first at batch 3" in found[0]


class TestRunPass:
    def test_nobody_listening_builds_no_step_record(self):
        """Without StepRecord subscribers the pass publishes its epoch record only."""
        driver = _driver()
        sink = RecordingSink(EpochRecord)
        sink.attach(driver.bus)
        record = driver.run_pass(_setup(), _batches(2), phase=PassPhase.TEST, epoch=0)
        assert sink.records == [record] and record.steps == 2

    def test_outputs_collects_predictions_and_targets(self):
        """outputs receives (y_pred, y) per batch."""
        outputs: list = []
        batches = _batches(2)
        _driver().run_pass(_setup(), batches, phase=PassPhase.TEST, epoch=0, outputs=outputs)
        assert len(outputs) == 2 and torch.equal(outputs[1][1], batches[1][1])
        assert outputs[0][0].shape == (4, 2)

    def test_context_stop_flag_does_not_cut_evaluation(self):
        """A stop request set by the context cuts training passes only."""
        context = FakeTrainingContext()
        context.stop_training = True
        driver = _driver(context)
        driver.bus.subscribe(StepBegin, lambda r: None)
        record = driver.run_pass(_setup(), _batches(3), phase=PassPhase.VALID, epoch=1)
        assert record.complete and record.steps == 3
        record = driver.run_pass(_setup(), _batches(3), phase=PassPhase.TRAIN, epoch=1)
        assert not record.complete and record.steps == 1


@pytest.mark.parametrize("phase", [PassPhase.TRAIN, PassPhase.TEST])
def test_directive_from_pass_begin_sets_the_context_flag(phase):
    """A StopTraining returned from any record's handler sets context.stop_training."""
    context = FakeTrainingContext()
    driver = _driver(context)
    driver.bus.subscribe(PhaseBegin, lambda r: StopTraining())
    driver.run_pass(_setup(), _batches(1), phase=phase, epoch=1)
    assert context.stop_training


class TestSampledStepRecords:
    def test_a_sampling_subscriber_gets_records_only_when_due(self):
        """With only a ``due`` subscriber, the driver publishes the step records of the steps
        at whose end ``due()`` was true, with their own step numbers, and the epoch values
        are those of every step."""
        bus = RecordBus()
        seen = []
        calls = []

        def due():
            calls.append(None)
            return len(calls) % 3 == 0

        bus.subscribe(StepRecord, seen.append, due=due)
        sampled = _fit(_driver(bus=bus), _setup(), _batches(7), epochs=1)
        full_bus = RecordBus()
        every = []
        full_bus.subscribe(StepRecord, every.append)
        full = _fit(_driver(bus=full_bus), _setup(), _batches(7), epochs=1)
        assert len(calls) == 7
        assert [r.step for r in seen] == [3, 6]
        assert [r.step for r in every] == list(range(1, 8))
        assert [float(r.loss) for r in seen] == [float(every[2].loss), float(every[5].loss)]
        assert sampled[0]["loss"] == full[0]["loss"]

    def test_an_ordinary_subscriber_gets_every_record(self):
        """A subscriber without ``due`` next to a sampling one makes every step publish."""
        bus = RecordBus()
        sampled, every = [], []
        bus.subscribe(StepRecord, sampled.append, due=lambda: False)
        bus.subscribe(StepRecord, every.append)
        _fit(_driver(bus=bus), _setup(), _batches(4), epochs=1)
        assert [r.step for r in every] == [1, 2, 3, 4]
        assert [r.step for r in sampled] == [1, 2, 3, 4]
