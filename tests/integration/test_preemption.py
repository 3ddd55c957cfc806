"""SIGTERM/SIGINT during ModelBundle.train: a mid-epoch commit, a one-line exit, and a resume
bit-identical to an uninterrupted training (one process)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from epochal import Callback, ModelBundle
from epochal.callbacks.lr_scheduler import OneCycleLR, StepLR

STEPS = 8  # batches per epoch: 64 examples in batches of 8


def _bundle(directory: Path) -> ModelBundle:
    torch.manual_seed(0)
    network = torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(16, 3)
    )
    return ModelBundle.from_network(str(directory), network, task="classif", optimizer="adam")


def _loaders() -> tuple[DataLoader[Any], DataLoader[Any]]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(96, 6, generator=generator)
    y = torch.randint(0, 3, (96,), generator=generator)
    train = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=8, shuffle=True)
    valid = DataLoader(TensorDataset(x[64:], y[64:]), batch_size=8)
    return train, valid


class _Signal(Callback):
    """Sends a signal to this process after training batch ``at`` (counted over epochs), or
    at the first validation batch of epoch ``valid_epoch``."""

    def __init__(self, signum: int, at: int | None = None, valid_epoch: int | None = None):
        super().__init__()
        self.signum, self.at, self.valid_epoch = signum, at, valid_epoch
        self.count = 0
        self.epoch = 0

    def on_epoch_begin(self, epoch_number: int, logs: dict[str, Any]) -> None:
        self.epoch = epoch_number

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        self.count += 1
        if self.count == self.at:
            os.kill(os.getpid(), self.signum)

    def on_valid_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        if self.epoch == self.valid_epoch and batch_number == 1:
            os.kill(os.getpid(), self.signum)


def _train(directory: Path, extra: list[Any] | None = None, *, batches_per_step: int = 1,
           one_cycle: bool = False) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    bundle = _bundle(directory)
    train, valid = _loaders()
    scheduler = (OneCycleLR(max_lr=0.01, total_steps=3) if one_cycle
                 else StepLR(step_size=1, gamma=0.5))
    rows = bundle.train(train, valid, epochs=3, verbose=False, lr_schedulers=[scheduler],
                        callbacks=list(extra or []), batches_per_step=batches_per_step)
    rows = bundle._stats_rows()  # every committed epoch (train returns this call's)
    return rows, bundle.model.get_weight_copies()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _train(tmp_path_factory.mktemp("whole"))


@pytest.mark.parametrize(
    ("signum", "at"),
    [(signal.SIGTERM, 1), (signal.SIGTERM, STEPS + 3), (signal.SIGINT, STEPS),
     (signal.SIGTERM, 2 * STEPS + 5)],
)
def test_a_signal_mid_epoch_commits_and_the_resume_is_bit_identical(
    tmp_path: Path, uninterrupted: Any, signum: int, at: int
) -> None:
    """After a signal at training step ``at`` the process exits with a one-line resume hint;
    the log keeps finished epochs only; running again ends bit-identical to no signal."""
    with pytest.raises(SystemExit) as stopped:
        _train(tmp_path, [_Signal(signum, at=at)])
    message = str(stopped.value.code)
    epoch = (at - 1) // STEPS + 1
    assert message.startswith(f"Stopped by {signal.Signals(signum).name} at epoch {epoch}, "
                              f"step {at - (epoch - 1) * STEPS}")
    assert "Run the same command again" in message and "\n" not in message
    log = (tmp_path / "log.tsv").read_text().splitlines()
    assert len(log) == epoch  # header and the finished epochs
    rows, weights = _train(tmp_path)
    expected_rows, expected_weights = uninterrupted
    assert [{k: v for k, v in r.items() if k != "time"} for r in rows] == [
        {k: v for k, v in r.items() if k != "time"} for r in expected_rows
    ]
    for key, value in expected_weights.items():
        assert torch.equal(weights[key], value), key


@pytest.mark.parametrize("at", [3, STEPS + 5])
def test_a_one_cycle_schedule_resumes_bit_identical_mid_epoch(tmp_path: Path, at: int) -> None:
    """OneCycleLR (stepped once per epoch, as in Poutyne; it also cycles Adam's betas) over a
    signal mid-epoch: the commit holds the schedule as of the epoch's start and the resumed
    training ends bit-identical to an uninterrupted one, rates in the log included."""
    expected_rows, expected_weights = _train(tmp_path / "whole", one_cycle=True)
    assert len({row["lr"] for row in expected_rows}) == 3  # the rate changes every epoch
    with pytest.raises(SystemExit):
        _train(tmp_path / "cut", [_Signal(signal.SIGTERM, at=at)], one_cycle=True)
    rows, weights = _train(tmp_path / "cut", one_cycle=True)
    assert [{k: v for k, v in r.items() if k != "time"} for r in rows] == [
        {k: v for k, v in r.items() if k != "time"} for r in expected_rows
    ]
    for key, value in expected_weights.items():
        assert torch.equal(weights[key], value), key


GROUP = 3  # batches per optimizer step: groups of batches 1-3, 4-6 and 7-8 in each epoch


@pytest.fixture(scope="module")
def uninterrupted_accumulating(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _train(tmp_path_factory.mktemp("whole_accumulating"), batches_per_step=GROUP)


@pytest.mark.parametrize(
    ("at", "committed_step"),
    [(4, 6), (STEPS + 2, 3), (STEPS + 6, 6), (2 * STEPS + 7, None)],
)
def test_a_signal_inside_an_accumulation_group_finishes_the_group_first(
    tmp_path: Path, uninterrupted_accumulating: Any, at: int, committed_step: int | None
) -> None:
    """With batches_per_step=3, a signal at batch ``at`` lets its group of batches run to its
    optimizer step before the mid-epoch commit (the epoch's last group ends the epoch, which
    is committed whole); the resume ends bit-identical to no signal."""
    with pytest.raises(SystemExit) as stopped:
        _train(tmp_path, [_Signal(signal.SIGTERM, at=at)], batches_per_step=GROUP)
    epoch = (at - 1) // STEPS + 1
    message = str(stopped.value.code)
    if committed_step is None:
        assert message.startswith(f"Stopped by SIGTERM after epoch {epoch}")
    else:
        assert message.startswith(f"Stopped by SIGTERM at epoch {epoch}, step {committed_step};")
    rows, weights = _train(tmp_path, batches_per_step=GROUP)
    expected_rows, expected_weights = uninterrupted_accumulating
    assert [{k: v for k, v in r.items() if k != "time"} for r in rows] == [
        {k: v for k, v in r.items() if k != "time"} for r in expected_rows
    ]
    for key, value in expected_weights.items():
        assert torch.equal(weights[key], value), key


def test_a_signal_during_validation_commits_the_epoch(tmp_path: Path, uninterrupted: Any) -> None:
    """A signal in a validation pass lets the epoch finish and commit (not as an early stop);
    the resume continues to the same result."""
    with pytest.raises(SystemExit) as stopped:
        _train(tmp_path, [_Signal(signal.SIGTERM, valid_epoch=2)])
    assert str(stopped.value.code).startswith("Stopped by SIGTERM after epoch 2")
    rows, weights = _train(tmp_path)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for key, value in uninterrupted[1].items():
        assert torch.equal(weights[key], value), key


def test_outside_training_the_signal_handlers_are_restored(tmp_path: Path) -> None:
    """ModelBundle.train leaves SIGTERM and SIGINT handlers as it found them."""
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    _bundle(tmp_path).train(*_loaders(), epochs=1, verbose=False)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


class _Boom(Callback):
    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        if batch_number == 3:
            raise ValueError("boom")


def test_a_failed_training_leaves_no_watcher_on_the_bus(tmp_path: Path) -> None:
    """When training raises, the bundle stops watching the model's epoch records (a later
    call's preemption is not committed twice)."""
    bundle = _bundle(tmp_path)
    with pytest.raises(ValueError, match="boom"):
        bundle.train(*_loaders(), epochs=1, verbose=False, callbacks=[_Boom()])
    from epochal.core.records import EpochRecord

    assert not bundle.model.bus.has_subscribers(EpochRecord)


def _train_data(directory: Path, extra: list[Any] | None = None) -> tuple[
        list[dict[str, Any]], dict[str, torch.Tensor]]:
    """As :func:`_train`, through ``train_data``: its loader shuffles from the global RNG."""
    bundle = _bundle(directory)
    train, valid = _loaders()
    x, y = train.dataset.tensors  # type: ignore[attr-defined]
    x_val, y_val = valid.dataset.tensors  # type: ignore[attr-defined]
    bundle.train_data(x, y, (x_val, y_val), batch_size=8, epochs=3, verbose=False,
                      callbacks=list(extra or []))
    return bundle._stats_rows(), bundle.model.get_weight_copies()


def test_train_data_resumes_mid_epoch_bit_identical(tmp_path: Path) -> None:
    """train_data shuffles from the global RNG (as Poutyne's); a signal mid-epoch 2 and a
    second call end with the same rows and weights as one uninterrupted call, and with the
    same as train() on a DataLoader(shuffle=True) of the same data."""
    whole_rows, whole_weights = _train_data(tmp_path / "whole")
    with pytest.raises(SystemExit):
        _train_data(tmp_path / "cut", [_Signal(signal.SIGTERM, at=STEPS + 3)])
    rows, weights = _train_data(tmp_path / "cut")

    def untimed(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "time"} for r in table]

    assert untimed(rows) == untimed(whole_rows)
    for key, value in whole_weights.items():
        assert torch.equal(weights[key], value), key
    bundle = _bundle(tmp_path / "loader")
    bundle.train(*_loaders(), epochs=3, verbose=False)
    assert untimed(bundle._stats_rows()) == untimed(whole_rows)
