"""Tests of :mod:`epochal.core.directives`: the records a bus handler returns to steer."""

from __future__ import annotations

import attrs
import pytest
import torch

from epochal._driver import TrainingDriver
from epochal.bus import RecordBus
from epochal.core.directives import StopTraining
from epochal.core.loop import EpochSetup
from epochal.core.records import EpochBegin, StepRecord


class _Context:
    """The least a driver needs of a training: a stop flag and epoch completion."""

    stop_training = False
    epoch_complete = True


def _setup() -> EpochSetup:
    torch.manual_seed(0)
    network = torch.nn.Linear(3, 2)
    return EpochSetup(
        network=network,
        loss_function=torch.nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
        device=torch.device("cpu"),
    )


def _batches(count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 3, generator=generator), torch.tensor([0, 1, 0, 1]))
            for _ in range(count)]


def test_stop_training_is_a_frozen_keyword_only_record() -> None:
    """StopTraining takes its reason by keyword, defaults it to '' and cannot be changed."""
    assert StopTraining().reason == ""
    directive = StopTraining(reason="loss is nan")
    assert directive == StopTraining(reason="loss is nan")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        directive.reason = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        StopTraining("loss is nan")  # type: ignore[misc]


def test_a_returned_directive_comes_back_from_publish() -> None:
    """The bus hands a handler's StopTraining back to the publisher, and drops None returns."""
    bus = RecordBus()
    bus.subscribe(EpochBegin, lambda record: None)
    bus.subscribe(EpochBegin, lambda record: StopTraining(reason=f"epoch {record.epoch}"))
    assert bus.publish(EpochBegin(epoch=3)) == [StopTraining(reason="epoch 3")]


def test_driver_honours_it_at_the_end_of_the_step() -> None:
    """Returned on step 2's record, StopTraining ends the training pass after step 2 and the
    training after that epoch: no third step, no second epoch."""
    bus = RecordBus()
    steps: list[tuple[int, int]] = []

    def on_step(record: StepRecord) -> StopTraining | None:
        steps.append((record.epoch, record.step))
        return StopTraining(reason="enough") if record.step == 2 else None

    bus.subscribe(StepRecord, on_step)
    context = _Context()
    driver = TrainingDriver(bus=bus, context=context, clock=lambda: 0.0)  # type: ignore[arg-type]
    setup = _setup()
    history = driver.fit(
        train_setup=setup, valid_setup=setup, train_generator=_batches(5), valid_generator=None,
        steps_per_epoch=None, validation_steps=None, epochs=3, initial_epoch=1,
        params={}, log_keys=(), learning_rates=dict,
    )
    assert steps == [(1, 1), (1, 2)]
    assert [row["epoch"] for row in history] == [1]
    assert context.stop_training is True
