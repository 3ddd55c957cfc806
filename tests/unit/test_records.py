"""The immutable records (epochal.core.records)."""

from __future__ import annotations

import attrs
import pytest
import torch

from epochal.core.records import (
    EpochEnd,
    EpochRecord,
    PassPhase,
    StepRecord,
    TrainBegin,
    frozen_mapping,
    to_float,
)


class TestStepRecord:
    def test_loss_with_a_graph_is_detached(self):
        """A loss that still requires grad is stored detached (no graph kept alive)."""
        w = torch.ones(1, requires_grad=True)
        record = StepRecord(phase=PassPhase.TRAIN, epoch=1, step=1, global_step=1, batch_size=2,
                            loss=(w * 2).sum(), metrics={"acc": (w * 3).sum()}, duration_s=0.1)
        assert not record.loss.requires_grad
        assert not record.metrics["acc"].requires_grad

    def test_batch_logs_have_int_batch_and_size(self):
        """Training batch logs are batch, size (ints), time, loss and metrics (floats)."""
        record = StepRecord(phase=PassPhase.TRAIN, epoch=1, step=4, global_step=9, batch_size=8,
                            loss=torch.tensor(0.5), metrics={"acc": torch.tensor(75.0)},
                            duration_s=0.25)
        logs = record.logs()
        assert logs == {"batch": 4, "size": 8, "time": 0.25, "loss": 0.5, "acc": 75.0}
        assert type(logs["batch"]) is int and type(logs["size"]) is int

    @pytest.mark.parametrize(("phase", "prefix"), [(PassPhase.VALID, "val_"),
                                                   (PassPhase.TEST, "test_")])
    def test_evaluation_batch_logs_carry_the_phase_prefix(self, phase, prefix):
        """Validation and test batch logs use Poutyne's val_/test_ prefixes on loss and metrics."""
        record = StepRecord(phase=phase, epoch=1, step=1, global_step=1, batch_size=2,
                            loss=0.5, metrics={"acc": 50.0}, duration_s=0.0)
        assert record.logs() == {"batch": 1, "size": 2, "time": 0.0, f"{prefix}loss": 0.5,
                                 f"{prefix}acc": 50.0}

    def test_records_are_frozen(self):
        """Assigning a field raises; attrs.evolve makes a changed copy."""
        record = EpochRecord(phase=PassPhase.TRAIN, epoch=1, steps=1, samples=1, loss=1.0,
                             duration_s=0.0)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            record.loss = 2.0  # type: ignore[misc]
        assert attrs.evolve(record, loss=2.0).loss == 2.0


class TestEpochRecord:
    def test_logs_prefix_by_phase(self):
        """Validation logs are val_loss and val_<metric>."""
        record = EpochRecord(phase=PassPhase.VALID, epoch=1, steps=1, samples=1, loss=1.0,
                             metrics={"acc": 2.0}, duration_s=0.0)
        assert record.logs() == {"val_loss": 1.0, "val_acc": 2.0}

    def test_metrics_are_read_only(self):
        """The metrics mapping cannot be changed in place."""
        record = EpochRecord(phase=PassPhase.TRAIN, epoch=1, steps=1, samples=1, loss=1.0,
                             metrics={"acc": 2.0}, duration_s=0.0)
        with pytest.raises(TypeError):
            record.metrics["acc"] = 3.0  # type: ignore[index]


class TestSinkFields:
    def test_train_begin_carries_log_keys_and_end_carries_lrs(self):
        """TrainBegin.log_keys is a tuple; EpochEnd.lrs a read-only copy of the given rates."""
        begin = TrainBegin(params={"epochs": 1}, log_keys=["epoch", "loss"])
        assert begin.log_keys == ("epoch", "loss")
        lrs = {"lr": 0.1}
        end = EpochEnd(epoch=1, logs={"epoch": 1}, lrs=lrs)
        lrs["lr"] = 5.0
        assert dict(end.lrs) == {"lr": 0.1}


class TestHelpers:
    def test_frozen_mapping_copies(self):
        """frozen_mapping copies its input: later changes to the source do not show."""
        source = {"a": 1}
        frozen = frozen_mapping(source)
        source["a"] = 2
        assert frozen["a"] == 1

    def test_to_float_of_tensor_and_float(self):
        """to_float takes a 0-dim tensor or a float."""
        assert to_float(torch.tensor(1.5)) == 1.5 and to_float(2) == 2.0
