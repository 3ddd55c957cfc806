"""stopped_at_first_nonfinite: whether the non-finite loss warning would be wrong."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from epochal import Model, TerminateOnNaN
from epochal._nonfinite import stopped_at_first_nonfinite
from epochal.core.records import EpochRecord, PassPhase


def _record(steps: int, first: int | None, complete: bool = True) -> EpochRecord:
    return EpochRecord(phase=PassPhase.TRAIN, epoch=1, steps=steps, samples=steps * 4,
                       loss=0.0, duration_s=0.0, complete=complete,
                       first_nonfinite_step=first)


class TestStoppedAtFirstNonfinite:
    def test_stop_at_that_step_is_true(self):
        """A stop requested with the first non-finite step (mid-epoch or last batch) is true."""
        assert stopped_at_first_nonfinite(_record(3, 3, complete=False), True)
        assert stopped_at_first_nonfinite(_record(6, 6), True)

    def test_later_steps_or_no_stop_is_false(self):
        """Steps after the non-finite one, or no stop at all, are false."""
        assert not stopped_at_first_nonfinite(_record(6, 2), True)
        assert not stopped_at_first_nonfinite(_record(6, 6), False)
        assert not stopped_at_first_nonfinite(_record(6, None), True)


def _fit_with_nan_at(batch: int, callbacks: list) -> list[str]:
    torch.manual_seed(0)
    x, y = torch.randn(24, 3), torch.randn(24, 1)
    x[(batch - 1) * 4, 0] = float("nan")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = [(x[i : i + 4], y[i : i + 4]) for i in range(0, 24, 4)]
        Model(nn.Linear(3, 1), "sgd", "mse").fit_generator(
            batches, epochs=2, callbacks=callbacks, verbose=False)
    return [str(w.message) for w in caught if "non-finite" in str(w.message)]


class TestModelWarning:
    def test_terminate_on_nan_at_the_last_batch_gives_no_warning(self):
        """TerminateOnNaN stopping on the epoch's last batch: nothing trained on the
        non-finite gradients, so no warning."""
        assert _fit_with_nan_at(6, [TerminateOnNaN()]) == []

    def test_without_terminate_on_nan_it_still_warns(self):
        """Without a stop the same run warns once, naming the batch."""
        found = _fit_with_nan_at(6, [])
        assert len(found) == 1 and "first at batch 6" in found[0]
