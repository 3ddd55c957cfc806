"""The pure epoch log row and log keys (epochal.core.logs)."""

from __future__ import annotations

import doctest

from hypothesis import given
from hypothesis import strategies as st

import epochal.core.logs
from epochal.core.logs import epoch_log_keys, epoch_log_row
from epochal.core.records import EpochRecord, PassPhase


def _record(phase: PassPhase, loss: float, metrics: dict[str, float]) -> EpochRecord:
    return EpochRecord(phase=phase, epoch=3, steps=2, samples=10, loss=loss, metrics=metrics,
                       duration_s=1.0)


class TestEpochLogRow:
    def test_row_has_poutyne_keys_in_order(self):
        """The row is epoch, time, loss, metrics, val_loss, val_<metric>: nothing else."""
        row = epoch_log_row(epoch=3, train=_record(PassPhase.TRAIN, 0.5, {"acc": 1.0, "f1": 2.0}),
                            valid=_record(PassPhase.VALID, 0.25, {"acc": 3.0, "f1": 4.0}),
                            duration_s=7.5)
        assert row == {"epoch": 3, "time": 7.5, "loss": 0.5, "acc": 1.0, "f1": 2.0,
                       "val_loss": 0.25, "val_acc": 3.0, "val_f1": 4.0}
        assert list(row) == list(epoch_log_keys(["acc", "f1"], with_validation=True))

    def test_row_without_validation_has_no_val_keys(self):
        """Without a validation record the row stops after the training metrics."""
        row = epoch_log_row(epoch=1, train=_record(PassPhase.TRAIN, 0.5, {"acc": 1.0}),
                            valid=None, duration_s=2.0)
        assert list(row) == ["epoch", "time", "loss", "acc"]

    @given(st.lists(st.from_regex(r"[a-z]{1,6}", fullmatch=True), unique=True, max_size=5),
           st.booleans())
    def test_property_keys_match_the_row_for_any_metric_names(self, names, with_validation):
        """For any metric names, the keys announced equal the keys of the row built."""
        names = [n for n in names if n not in ("loss", "epoch", "time")]
        metrics = {n: float(i) for i, n in enumerate(names)}
        valid = _record(PassPhase.VALID, 1.0, metrics) if with_validation else None
        row = epoch_log_row(epoch=1, train=_record(PassPhase.TRAIN, 1.0, metrics), valid=valid,
                            duration_s=0.0)
        assert tuple(row) == epoch_log_keys(names, with_validation=with_validation)

    def test_docstring_examples_run(self):
        """The module's examples give the results they show."""
        assert doctest.testmod(epochal.core.logs).failed == 0
