"""A training pass cut short and finished later equals one uninterrupted pass."""

from __future__ import annotations

import itertools

import pytest
import torch

from epochal.core.loop import EpochSetup, run_epoch
from epochal.core.metrics import (
    DecomposableMetric,
    FBeta,
    resolve_batch_metrics,
    resolve_epoch_metrics,
)
from epochal.core.pass_state import (
    PassStart,
    load_metric_statistics,
    metric_statistics,
    statistic_fields,
)
from epochal.core.records import EpochRecord, PassPhase


class _Stop:
    """PassHooks that stop the pass after batch ``at``."""

    announces_steps = False
    announces_backward = False

    def __init__(self, at: int) -> None:
        self.at = at
        self.seen = 0

    def step_begins(self, step: int) -> None:  # pragma: no cover - not announced
        pass

    def gradients_ready(self, step: int) -> None:  # pragma: no cover - not announced
        pass

    def stop_requested(self) -> bool:
        self.seen += 1
        return self.seen == self.at


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(3)
    return [(torch.randn(7, 5, generator=generator), torch.randint(0, 3, (7,), generator=generator))
            for _ in range(9)]


def _setup() -> EpochSetup:
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 3))
    return EpochSetup(
        network=network, loss_function=torch.nn.CrossEntropyLoss(),
        batch_metrics=resolve_batch_metrics(["accuracy"]),
        epoch_metrics=resolve_epoch_metrics([FBeta(average="macro")]),
        optimizer=torch.optim.Adam(network.parameters(), lr=0.01),
    )


def _last(records: object) -> EpochRecord:
    *_, record = records  # type: ignore[misc]
    assert isinstance(record, EpochRecord)
    return record


class TestResumedPass:
    @pytest.mark.parametrize("at", [1, 4, 8])
    def test_a_pass_cut_after_a_batch_and_finished_equals_the_whole_pass(self, at: int) -> None:
        """Loss, metrics, F1 and weights of a pass stopped after batch ``at`` and finished
        from its PassStart (through to_dict/from_dict) are bit-identical to one pass."""
        whole_setup = _setup()
        whole = _last(run_epoch(whole_setup, _batches(), phase=PassPhase.TRAIN, epoch=1,
                                clock=lambda: 0.0))
        setup = _setup()
        cut = _last(run_epoch(setup, _batches(), phase=PassPhase.TRAIN, epoch=1,
                              clock=lambda: 0.0, hooks=_Stop(at)))
        assert not cut.complete and cut.partial is not None and cut.partial.steps == at
        start = PassStart.from_dict(cut.partial.to_dict())
        rest = itertools.islice(_batches(), at, None)
        finished = _last(run_epoch(setup, rest, phase=PassPhase.TRAIN, epoch=1,
                                   clock=lambda: 0.0, global_step=0, start=start))
        assert finished.complete and finished.partial is None
        assert (finished.steps, finished.samples) == (whole.steps, whole.samples)
        assert finished.loss == whole.loss
        assert dict(finished.metrics) == dict(whole.metrics)
        for mine, theirs in zip(setup.network.parameters(), whole_setup.network.parameters()):
            assert torch.equal(mine, theirs)

    def test_a_complete_pass_has_no_partial(self) -> None:
        """Only a training pass a stop cut short carries what finishing it needs."""
        record = _last(run_epoch(_setup(), _batches(), phase=PassPhase.TRAIN, epoch=1,
                                 clock=lambda: 0.0))
        assert record.partial is None


class TestMetricStatistics:
    def test_fbeta_statistics_are_its_counts(self) -> None:
        """FBeta's statistics are the attributes reset() clears, not its configuration."""
        metric = FBeta(average="macro")
        assert set(statistic_fields(metric)) == {"_counts", "_invalid"}

    def test_decomposable_statistics_include_the_sample_count(self) -> None:
        """A DecomposableMetric's weighted sums and its int sample count are both kept."""
        metric = DecomposableMetric(lambda p, t: (p.argmax(1) == t).double().mean(), "hits")
        metric.update(torch.eye(3), torch.tensor([0, 1, 1]))
        saved = metric_statistics(metric)
        assert saved is not None and saved["_size"] == 3
        metric.reset()
        load_metric_statistics(metric, saved)
        assert metric.compute().tolist() == pytest.approx([2 / 3])

    def test_an_object_without_reset_has_none(self) -> None:
        """Objects that cannot say what their statistics are give None."""
        assert metric_statistics(object()) is None
