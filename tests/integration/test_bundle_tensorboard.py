"""The bundle's tensorboard/ logs: written as Poutyne's, derived (a resume purges re-run
epochs), and skipped with a warning where they cannot be written."""

from __future__ import annotations

import builtins
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from epochal import ModelBundle
from epochal.testing import MemoryCheckpointStore

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="the bundle's TensorBoard logs need the tensorboard extra",
)


def _bundle(directory: Any) -> ModelBundle:
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return ModelBundle.from_network(directory, network, task="classif", optimizer="sgd")


def _loaders() -> tuple[DataLoader[Any], DataLoader[Any]]:
    generator = torch.Generator().manual_seed(2)
    x, y = torch.randn(40, 4, generator=generator), torch.randint(0, 3, (40,), generator=generator)
    return (DataLoader(TensorDataset(x[:32], y[:32]), batch_size=8),
            DataLoader(TensorDataset(x[32:], y[32:]), batch_size=8))


def _points(run: Path, tag: str) -> list[tuple[int, float]]:
    accumulator = event_accumulator.EventAccumulator(str(run))
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def test_a_resume_purges_the_epochs_after_the_commit(tmp_path: Path) -> None:
    """Epoch 3's scalars written before a crash that lost its commit are hidden once the
    resumed run writes epoch 3 again: one point per epoch, the committed run's values."""
    directory = tmp_path / "run"
    _bundle(str(directory)).train(*_loaders(), epochs=3, verbose=False)
    (directory / "manifests" / "epoch_0003.json").unlink()  # as if killed before the commit
    rows = _bundle(str(directory)).train(*_loaders(), epochs=3, verbose=False)
    assert [r["epoch"] for r in rows] == [3]
    points = _points(directory / "tensorboard" / "loss_loss", "loss")
    assert [step for step, _ in points] == [1, 2, 3]
    assert points[-1][1] == pytest.approx(rows[-1]["loss"], rel=1e-6)
    # Every graph shows each epoch once. The epoch's time differs from one run to the next,
    # so time_time shows that epoch 3's point is the resumed run's.
    folders = sorted(p.parent for p in (directory / "tensorboard").rglob("events.out.*"))
    assert len(set(folders)) >= 8
    for folder in set(folders) - {directory / "tensorboard"}:
        accumulator = event_accumulator.EventAccumulator(str(folder))
        accumulator.Reload()
        (main_tag,) = accumulator.Tags()["scalars"]  # a per-tag folder holds one graph
        steps = [event.step for event in accumulator.Scalars(main_tag)]
        assert steps == [1, 2, 3], (folder.name, steps)
    times = _points(directory / "tensorboard" / "time_time", "time")
    assert times[-1][1] == pytest.approx(rows[-1]["time"], rel=1e-6)


def test_the_bundle_writes_its_logs_without_writer_threads(tmp_path: Path) -> None:
    """The bundle's writer writes on the training thread: no thread is started for the six
    event files of this run (SummaryWriter would start one per file), and every epoch's
    scalars are in them."""
    import threading

    started: list[str] = []
    real_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        started.append(self.name)
        real_start(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(threading.Thread, "start", start)
        rows = _bundle(str(tmp_path)).train(*_loaders(), epochs=2, verbose=False)
    assert started == []
    folders = {p.parent.name for p in (tmp_path / "tensorboard").rglob("events.out.tfevents.*")}
    assert {"loss_loss", "loss_val_loss", "acc_acc", "acc_val_acc"} <= folders
    assert [v for _, v in _points(tmp_path / "tensorboard" / "acc_val_acc", "acc")] == (
        pytest.approx([r["val_acc"] for r in rows], rel=1e-6))


def test_disable_tensorboard_writes_nothing(tmp_path: Path) -> None:
    """disable_tensorboard=True: no tensorboard/ directory."""
    _bundle(str(tmp_path)).train(*_loaders(), epochs=1, verbose=False, disable_tensorboard=True)
    assert not (tmp_path / "tensorboard").exists()
    assert (tmp_path / "log.tsv").exists()


def test_a_remote_url_warns_and_trains(tmp_path: Path) -> None:
    """A memory:// bundle trains, writes no event files and says so in a UserWarning."""
    url = f"memory://tensorboard-{uuid.uuid4().hex}"
    with pytest.warns(UserWarning, match="not a local directory.*disable_tensorboard=True"):
        rows = _bundle(url).train(*_loaders(), epochs=1, verbose=False)
    assert [r["epoch"] for r in rows] == [1]


def test_a_store_object_is_silent() -> None:
    """A store object without fsspec (the testing fake) trains without a TensorBoard
    warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        rows = _bundle(MemoryCheckpointStore()).train(*_loaders(), epochs=1, verbose=False)
    assert len(rows) == 1


def test_without_tensorboard_installed_it_warns(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """When the tensorboard package cannot be imported (nor torch.utils.tensorboard) the
    bundle warns as Poutyne's does (naming disable_tensorboard) and trains without event
    files."""
    real_import = builtins.__import__

    def no_tensorboard(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith(("torch.utils.tensorboard", "tensorboard")):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.warns(UserWarning, match="tensorboard does not seem to be installed"):
        _bundle(str(tmp_path)).train(*_loaders(), epochs=1, verbose=False)
    assert not (tmp_path / "tensorboard").exists()
