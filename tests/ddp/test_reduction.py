"""Global epoch values from one reduction per pass."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from epochal.core.loop import EpochSetup, run_epoch
from epochal.core.metrics import (
    DecomposableMetric,
    FBeta,
    resolve_batch_metrics,
    resolve_epoch_metrics,
)
from epochal.core.records import EpochRecord, PassPhase
from epochal.distributed import check_reducible, reduce_pass, shard_loader
from epochal.exceptions import ConfigurationError
from tests.ddp.ranks import run_ranks, values

pytestmark = pytest.mark.ddp

N = 1001


def _data() -> TensorDataset:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(N, 6, generator=generator)
    y = torch.randint(0, 3, (N,), generator=generator)
    return TensorDataset(x, y)


def _setup() -> EpochSetup:
    torch.manual_seed(0)
    return EpochSetup(
        network=torch.nn.Linear(6, 3),
        loss_function=torch.nn.CrossEntropyLoss(),
        batch_metrics=resolve_batch_metrics(["accuracy"]),
        epoch_metrics=resolve_epoch_metrics([
            FBeta(average="macro"),
            # a weighted sum and an int count: the generic statistics gathering
            DecomposableMetric(lambda p, t: (p.argmax(1) == t).double().mean(), "hits"),
        ]),
    )


def _evaluate(loader: Any) -> tuple[EpochSetup, EpochRecord]:
    setup = _setup()
    records = list(run_epoch(setup, loader, phase=PassPhase.VALID, epoch=1, clock=lambda: 0.0,
                             emit_steps=False))
    record = records[-1]
    assert isinstance(record, EpochRecord)
    return setup, record


def _plain(record: EpochRecord) -> dict[str, Any]:
    return {"samples": record.samples, "loss": record.loss, "metrics": dict(record.metrics)}


def _rank_pass(rank: int, world: int, n: int) -> tuple[int, dict[str, Any]]:
    dataset = torch.utils.data.Subset(_data(), range(n))
    shard = shard_loader(DataLoader(dataset, batch_size=64), rank=rank, world_size=world,
                         seed=0, training=False)
    setup, record = _evaluate(shard)
    reduced = reduce_pass(record, batch_metric_names=setup.metric_names,
                          epoch_metrics=setup.epoch_metrics)
    return record.samples, _plain(reduced)


class TestReducePass:
    def test_1001_samples_count_1001_and_match_one_process(self) -> None:
        """Two exact shards of 1,001 examples reduce to one process's loss, accuracy and F1."""
        results = values(run_ranks(_rank_pass, N))
        _, whole = _evaluate(DataLoader(_data(), batch_size=64))
        assert sorted(local for local, _ in results) == [500, 501]
        for _, reduced in results:
            assert reduced["samples"] == 1001
            assert reduced["loss"] == pytest.approx(whole.loss, abs=1e-6)
            assert reduced["metrics"].keys() == whole.metrics.keys()
            for key, value in whole.metrics.items():
                assert reduced["metrics"][key] == pytest.approx(value, abs=1e-6), key
        assert results[0][1] == results[1][1]  # every rank holds the same values

    def test_a_rank_without_examples_still_takes_part(self) -> None:
        """With one example for two ranks, the empty rank joins and both get the one value."""
        results = values(run_ranks(_rank_pass, 1))
        _, whole = _evaluate(DataLoader(torch.utils.data.Subset(_data(), [0]), batch_size=64))
        assert sorted(local for local, _ in results) == [0, 1]
        for _, reduced in results:
            assert reduced["samples"] == 1
            assert reduced["loss"] == pytest.approx(whole.loss, abs=1e-6)
            assert reduced["metrics"]["fscore_macro"] == pytest.approx(
                whole.metrics["fscore_macro"], abs=1e-9)


class TestOneProcess:
    def test_without_a_process_group_the_record_is_the_jobs(self) -> None:
        """A single process gets its own record back, untouched."""
        setup, record = _evaluate(DataLoader(_data(), batch_size=64))
        reduced = reduce_pass(record, batch_metric_names=setup.metric_names,
                              epoch_metrics=setup.epoch_metrics)
        assert reduced is record


class _Mean:
    """An epoch metric with no summable state declared."""

    def update(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
        pass

    def compute(self) -> float:
        return 0.0

    def reset(self) -> None:
        pass


class _Count:
    """A user epoch metric declaring its summable state."""

    def __init__(self) -> None:
        self.count = torch.zeros(())

    def update(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
        self.count += y_true.numel()

    def compute(self) -> float:
        return float(self.count)

    def reset(self) -> None:
        self.count = torch.zeros(())

    def state_tensors(self) -> list[torch.Tensor]:
        return [self.count]

    def load_state_tensors(self, tensors: list[torch.Tensor]) -> None:
        (self.count,) = tensors


def _count_pass(rank: int, world: int) -> float:
    setup = EpochSetup(network=torch.nn.Linear(6, 3), loss_function=torch.nn.CrossEntropyLoss(),
                       epoch_metrics=resolve_epoch_metrics([("count", _Count())]))
    shard = shard_loader(DataLoader(_data(), batch_size=100), rank=rank, world_size=world,
                         seed=0, training=False)
    *_, record = run_epoch(setup, shard, phase=PassPhase.TEST, epoch=0, clock=lambda: 0.0)
    assert isinstance(record, EpochRecord)
    reduced = reduce_pass(record, batch_metric_names=(), epoch_metrics=setup.epoch_metrics)
    return reduced.metrics["count"]


class TestEpochMetricState:
    def test_a_user_metric_with_summable_state_is_global(self) -> None:
        """A metric exposing state_tensors() computes over both ranks' batches."""
        assert values(run_ranks(_count_pass)) == [1001.0, 1001.0]

    def test_a_metric_without_state_is_refused_before_any_work(self) -> None:
        """An epoch metric that cannot be reduced is named, with what to add."""
        with pytest.raises(ConfigurationError, match="state_tensors"):
            check_reducible(resolve_epoch_metrics([("mean", _Mean())]))

    def test_unreduced_epoch_metrics_are_not_passed_off_as_global(self) -> None:
        """A record with epoch metrics but no epoch_metrics argument is an error, not a
        silently local value."""
        record = EpochRecord(phase=PassPhase.VALID, epoch=1, steps=1, samples=2, loss=0.5,
                             metrics={"f1": 0.3}, duration_s=0.0)
        with pytest.raises(ConfigurationError, match="f1"):
            _reduce_alone(record)


def _reduce_alone(record: EpochRecord) -> EpochRecord:
    import os

    import torch.distributed as dist

    from tests.ddp.ranks import free_port

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        return reduce_pass(record, batch_metric_names=())
    finally:
        dist.destroy_process_group()
