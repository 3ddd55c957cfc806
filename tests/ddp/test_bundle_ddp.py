"""ModelBundle on 2 gloo ranks: rank 0 commits, every rank resumes from the same commit, and
snapshots move between 2 ranks and one process."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from epochal import Callback, ModelBundle
from epochal._snapshots import Snapshot
from epochal.distributed import check_world_size
from epochal.exceptions import DistributedError
from tests.ddp.ranks import run_ranks, values

pytestmark = pytest.mark.ddp


def _loaders() -> tuple[DataLoader[Any], DataLoader[Any]]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(96, 6, generator=generator)
    y = torch.randint(0, 3, (96,), generator=generator)
    train = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=4, shuffle=True)
    valid = DataLoader(TensorDataset(x[64:], y[64:]), batch_size=8)
    return train, valid


def _train(directory: str, epochs: int, batches_per_step: int = 1
           ) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    bundle = ModelBundle.from_network(directory, network, task="classif")
    train, valid = _loaders()
    rows = bundle.train(train, valid, epochs=epochs, verbose=False,
                        batches_per_step=batches_per_step)
    rows = bundle._stats_rows()  # every committed epoch (train returns this call's)
    return bundle.model.get_weight_copies(), rows


def _rank_train(rank: int, world: int, directory: str, epochs: int,
                batches_per_step: int = 1) -> Any:
    return _train(directory, epochs, batches_per_step)


class TestBundleOnTwoRanks:
    def test_a_resumed_two_rank_run_equals_an_uninterrupted_one(self) -> None:
        """2 epochs, then a resume to 4 on 2 ranks equals 4 epochs in one go, bit for bit, with
        one log row per epoch written by rank 0."""
        with tempfile.TemporaryDirectory() as whole, tempfile.TemporaryDirectory() as parts:
            uninterrupted = values(run_ranks(_rank_train, whole, 4))
            values(run_ranks(_rank_train, parts, 2))
            resumed = values(run_ranks(_rank_train, parts, 4))
            for (weights, rows), (expected, expected_rows) in zip(resumed, uninterrupted):
                for key, value in expected.items():
                    assert torch.equal(weights[key], value), key
                assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
                assert [r["loss"] for r in rows] == [r["loss"] for r in expected_rows]
            log = (Path(parts) / "log.tsv").read_text().splitlines()
            assert len(log) == 5  # header and 4 epochs, never a row per rank
            rows0, rows1 = ([{k: v for k, v in r.items() if k != "time"} for r in rows]
                            for _, rows in uninterrupted)
            assert rows0 == rows1  # the same values on both ranks (but each rank's time)

    def test_a_two_rank_snapshot_resumes_in_one_process_and_back(self) -> None:
        """Snapshots hold the unwrapped network: 2 ranks -> 1 process -> 2 ranks continues,
        and the snapshot records the world size that wrote it."""
        with tempfile.TemporaryDirectory() as directory:
            values(run_ranks(_rank_train, directory, 1))
            state = _state(directory)
            assert state.world_size == 2 and state.data_seed is not None
            _, rows = _train(directory, 2)  # this process: one rank
            assert [r["epoch"] for r in rows] == [1, 2]
            assert _state(directory).world_size == 1
            resumed = values(run_ranks(_rank_train, directory, 3))
            assert [r["epoch"] for r in resumed[0][1]] == [1, 2, 3]
            assert not any(key.startswith("module.") for key in resumed[0][0])


def _state(directory: str) -> Snapshot:
    """The newest committed state file of a bundle directory."""
    path = max(Path(directory, "state").glob("epoch_*.state"),
               key=lambda p: int(p.stem.removeprefix("epoch_")))
    return Snapshot.from_payload(torch.load(path, weights_only=False), source=str(path))


class TestWorldSizeCheck:
    def test_a_mid_epoch_snapshot_refuses_another_world_size(self) -> None:
        """A partial snapshot replays its shards, so another world size is a clear error;
        an epoch-boundary snapshot is accepted."""
        with pytest.raises(DistributedError, match="written by 2 rank"):
            check_world_size(2, 1, allow_change=False)
        check_world_size(2, 1, allow_change=True)


class _SignalAt(Callback):
    """Sends SIGTERM to this process after training batch ``at`` (counted over epochs)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at
        self.count = 0

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        self.count += 1
        if self.count == self.at:
            os.kill(os.getpid(), signal.SIGTERM)


def _rank_preempted(rank: int, world: int, directory: str, signalled: int, at: int,
                    batches_per_step: int = 1) -> Any:
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    bundle = ModelBundle.from_network(directory, network, task="classif")
    train, valid = _loaders()
    extra = [_SignalAt(at)] if rank == signalled else []
    try:
        bundle.train(train, valid, epochs=4, verbose=False, callbacks=extra,
                     batches_per_step=batches_per_step)
    except SystemExit as exc:
        return exc.code
    return None


class TestPreemptionOnTwoRanks:
    @pytest.mark.parametrize(("signalled", "at"), [(0, 11), (1, 5), (1, 24)])
    def test_sigterm_on_one_rank_commits_mid_epoch_and_the_resume_is_bit_identical(
        self, signalled: int, at: int
    ) -> None:
        """A SIGTERM to one rank stops both at the same step; rank 0 commits (the partial epoch
        mid-epoch) and prints the hint; a 2-rank relaunch ends bit-identical to an uninterrupted run."""
        with tempfile.TemporaryDirectory() as whole, tempfile.TemporaryDirectory() as parts:
            uninterrupted = values(run_ranks(_rank_train, whole, 4))
            codes = values(run_ranks(_rank_preempted, parts, signalled, at))
            assert isinstance(codes[0], str) and "Run the same command again" in codes[0]
            assert codes[1] == 1
            state = _state(parts)
            # the flag reaches the other rank a step later: a signal at an epoch's last step
            # lets the epoch finish and commits it whole
            assert (state.partial_step is not None) == (at % 8 != 0)
            assert state.world_size == 2
            resumed = values(run_ranks(_rank_train, parts, 4))
            for (weights, rows), (expected, expected_rows) in zip(resumed, uninterrupted):
                for key, value in expected.items():
                    assert torch.equal(weights[key], value), key
                assert [{k: v for k, v in r.items() if k != "time"} for r in rows] == [
                    {k: v for k, v in r.items() if k != "time"} for r in expected_rows
                ]
            assert len((Path(parts) / "log.tsv").read_text().splitlines()) == 5

    def test_a_mid_epoch_snapshot_does_not_resume_on_another_world_size(self) -> None:
        """A partial 2-rank snapshot refuses a 1-process resume with a DistributedError naming
        both sizes, before any step."""
        with tempfile.TemporaryDirectory() as directory:
            values(run_ranks(_rank_preempted, directory, 0, 11))
            with pytest.raises(DistributedError, match="written by 2 rank"):
                _train(directory, 4)
