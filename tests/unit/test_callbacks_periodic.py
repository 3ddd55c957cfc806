"""PeriodicSaveCallback's subclass hooks (save_file/restore, restore_best, text mode, stores),
PeriodicSaveLambda, and runs copied to another directory that must never touch the
original's files."""

from __future__ import annotations

import shutil
import warnings
from typing import IO, Any

import pytest
import torch
from torch import nn

from epochal import Model
from epochal.callbacks.checkpoint import ModelCheckpoint, StateCheckpoint
from epochal.callbacks.periodic import PeriodicSaveCallback, PeriodicSaveLambda
from epochal.exceptions import ConfigurationError
from epochal.testing import MemoryCheckpointStore


def _fit(callbacks: list[Any], values: list[float], *, initial_epoch: int = 1,
         network: nn.Module | None = None) -> Model:
    """Fit a tiny regression; the batch metric ``score`` of epoch e is ``values[e - 1]`` (so
    ``val_score`` follows it)."""
    torch.manual_seed(0)
    network = network or nn.Linear(2, 1)
    epoch = {"n": initial_epoch}

    def score(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return torch.tensor(values[epoch["n"] - 1], dtype=torch.float64)

    from epochal.callbacks.utility import LambdaCallback

    clock = LambdaCallback(on_epoch_begin=lambda n, logs: epoch.__setitem__("n", n))
    model = Model(network, torch.optim.SGD(network.parameters(), lr=0.05), nn.MSELoss(),
                  batch_metrics=[("score", score)])
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 2, generator=g), torch.randn(8, 1, generator=g)
    model.fit_generator([(x[:4], y[:4]), (x[4:], y[4:])], [(x, y)], epochs=len(values),
                        initial_epoch=initial_epoch, verbose=False,
                        callbacks=[clock, *callbacks])
    return model


class _TextSave(PeriodicSaveCallback):
    """A Poutyne-style subclass: writes the epoch and its score as text, restores by
    remembering what it read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.restored: str | None = None

    def save_file(self, fd: IO[Any], epoch_number: int, logs: dict[str, Any]) -> None:
        fd.write(f"{epoch_number} {logs['val_score']}")

    def restore(self, fd: IO[Any]) -> None:
        self.restored = fd.read()


class TestSubclassHooks:
    def test_save_file_in_text_mode_and_restore_best(self, tmp_path):
        """A subclass's save_file gets a text file with open_mode='w'; restore_best hands the
        best epoch's file to restore() when training ends."""
        callback = _TextSave(str(tmp_path / "e{epoch}.txt"), monitor="val_score",
                             save_best_only=True, restore_best=True, open_mode="w",
                             read_mode="r")
        _fit([callback], [3.0, 1.0, 2.0])
        assert (tmp_path / "e2.txt").read_text() == "2 1.0"
        assert callback.restored == "2 1.0"

    def test_periodic_save_lambda_every_period(self, tmp_path):
        """PeriodicSaveLambda calls func(fd, epoch, logs) every `period` epochs."""
        seen: list[int] = []

        def func(fd: IO[Any], epoch: int, logs: dict[str, Any]) -> None:
            seen.append(epoch)
            fd.write(b"x" * epoch)

        _fit([PeriodicSaveLambda(func, str(tmp_path / "p{epoch}.bin"), period=2)],
             [1.0, 1.0, 1.0, 1.0])
        assert seen == [2, 4]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["p2.bin", "p4.bin"]
        assert (tmp_path / "p4.bin").read_bytes() == b"xxxx"

    def test_periodic_save_lambda_restore(self, tmp_path):
        """PeriodicSaveLambda's restore function gets the best file's bytes."""
        restored: list[bytes] = []
        callback = PeriodicSaveLambda(
            lambda fd, epoch, logs: fd.write(str(epoch).encode()), str(tmp_path / "b.bin"),
            restore=lambda fd: restored.append(fd.read()), monitor="val_score",
            save_best_only=True, restore_best=True)
        _fit([callback], [2.0, 1.0, 1.5])
        assert restored == [b"2"]

    def test_a_store_receives_the_files(self):
        """With store=, file names are relative to that store and nothing touches disk."""
        store = MemoryCheckpointStore()
        _fit([ModelCheckpoint("w/{epoch}.ckpt", store=store)], [1.0, 1.0])
        assert store.names() == ["w/1.ckpt", "w/2.ckpt"]

    def test_restore_best_without_save_best_only_is_refused(self, tmp_path):
        """restore_best needs save_best_only (Poutyne raises too)."""
        with pytest.raises(ConfigurationError, match="save_best_only"):
            _TextSave(str(tmp_path / "x"), restore_best=True)


class TestStateCheckpoint:
    def test_round_trip_and_key_warnings(self, tmp_path):
        """It saves every named state; restore loads them back and warns about missing and
        unexpected names."""
        network = nn.Linear(2, 1)
        checkpoint = StateCheckpoint({"net": network}, str(tmp_path / "s.ckpt"))
        _fit([checkpoint], [1.0], network=network)
        saved = {k: v.clone() for k, v in network.state_dict().items()}
        other = nn.Linear(2, 1)
        extra = nn.Linear(1, 1)
        loader = StateCheckpoint({"net": other, "extra": extra}, str(tmp_path / "s.ckpt"))
        with warnings.catch_warnings(record=True) as caught, open(tmp_path / "s.ckpt", "rb") as fd:
            warnings.simplefilter("always")
            loader.restore(fd)
        assert torch.equal(other.weight, saved["weight"])
        assert any("Missing key(s): 'extra'" in str(w.message) for w in caught)

    def test_object_without_state_dict_is_refused(self, tmp_path):
        """An object without state_dict/load_state_dict is a ConfigurationError."""
        with pytest.raises(ConfigurationError, match="state_dict"):
            StateCheckpoint({"x": object()}, str(tmp_path / "s.ckpt"))


class TestCopiedRun:
    def _best(self, directory: Any) -> ModelCheckpoint:
        return ModelCheckpoint(str(directory / "mc_best_{epoch}.ckpt"), monitor="val_score",
                               save_best_only=True, keep_only_last_best=True)

    def test_resumed_copy_never_deletes_the_original_files(self, tmp_path):
        """A state restored into a callback of a copied directory resolves its file names
        against the copy: keep_only_last_best deletes the copy's old best, never the
        original's."""
        original, copy = tmp_path / "original", tmp_path / "copy"
        original.mkdir()
        first = self._best(original)
        _fit([first], [2.0, 1.0])
        state = first.state_dict()
        assert state["best_filename"] == "mc_best_2.ckpt"
        assert all("/" not in name for name in state["saved_files"])
        shutil.copytree(original, copy)
        resumed = self._best(copy)
        resumed.load_state_dict(state)
        assert resumed.best_filename == str(copy / "mc_best_2.ckpt")
        _fit([resumed], [2.0, 1.0, 0.5], initial_epoch=3)
        assert sorted(p.name for p in original.iterdir()) == ["mc_best_2.ckpt"]
        assert sorted(p.name for p in copy.iterdir()) == ["mc_best_3.ckpt"]

    def test_a_state_holding_an_absolute_path_is_ignored(self, tmp_path):
        """A state carrying another run's absolute path (older format) is not used: a
        warning, and the other run's file stays."""
        other = tmp_path / "other"
        other.mkdir()
        (other / "mc_best_1.ckpt").write_bytes(b"keep")
        run = tmp_path / "run"
        run.mkdir()
        callback = self._best(run)
        state = {"monitor": "val_score", "mode": "min",
                 "monitor_state": {"best": 5.0, "best_epoch": 1, "wait": 0},
                 "best_filename": str(other / "mc_best_1.ckpt"),
                 "saved_files": [str(other / "mc_best_1.ckpt")]}
        with pytest.warns(RuntimeWarning, match="ignoring the saved file"):
            callback.load_state_dict(state)
        assert callback.best_filename is None and callback.saved_files == []
        _fit([callback], [9.0, 1.0], initial_epoch=2)
        assert (other / "mc_best_1.ckpt").read_bytes() == b"keep"
        assert [p.name for p in run.iterdir()] == ["mc_best_2.ckpt"]


class TestDirectoryFilename:
    def test_an_existing_directory_is_refused_at_construction(self, tmp_path):
        """ModelCheckpoint('outdir') on a directory says a file name is expected, before any
        training."""
        with pytest.raises(ConfigurationError, match=r"is a directory; a file name is expected"):
            ModelCheckpoint(str(tmp_path))

    def test_a_trailing_separator_is_refused(self, tmp_path):
        """A filename ending with '/' is a directory too, even when it does not exist."""
        with pytest.raises(ConfigurationError, match="is a directory"):
            ModelCheckpoint(str(tmp_path / "new") + "/")


class TestStorageProbe:
    def _steps(self) -> Any:
        from epochal.callbacks.utility import LambdaCallback

        steps: list[int] = []
        return steps, LambdaCallback(on_train_batch_end=lambda n, logs: steps.append(n))

    def test_a_regular_file_on_the_path_fails_before_the_first_step(self, tmp_path):
        """A ModelCheckpoint whose directory is an existing regular file is a StorageError at
        train begin naming the callback, the filename, the file and what was expected (not
        a FileExistsError after the first epoch); the file is unchanged."""
        from epochal.exceptions import StorageError

        (tmp_path / "run").write_bytes(b"user data")
        steps, counter = self._steps()
        callback = ModelCheckpoint(str(tmp_path / "run" / "w_{epoch}.ckpt"))
        with pytest.raises(StorageError) as info:
            _fit([counter, callback], [1.0, 0.5])
        message = str(info.value)
        assert "ModelCheckpoint's filename" in message and "w_{epoch}.ckpt" in message
        assert f"{tmp_path / 'run'} is an existing regular file" in message
        assert "Expected a directory path" in message
        assert steps == []
        assert (tmp_path / "run").read_bytes() == b"user data"

    def test_a_read_only_directory_fails_before_the_first_step(self, tmp_path, monkeypatch):
        """A directory that refuses new files is a StorageError at train begin naming it;
        its files stay as they were."""
        import os

        import epochal_adapters.storage as storage
        from epochal.exceptions import StorageError

        directory = tmp_path / "ro"
        directory.mkdir()
        (directory / "keep.ckpt").write_bytes(b"same")
        real_open = storage.os.open

        def read_only_open(path: Any, flags: int, *args: Any) -> int:
            if str(path).startswith(str(directory)) and flags & os.O_CREAT:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, flags, *args)

        monkeypatch.setattr(storage.os, "open", read_only_open)
        steps, counter = self._steps()
        with pytest.raises(StorageError, match=r"permission denied \(read-only\?\)"):
            _fit([counter, ModelCheckpoint(str(directory / "w.ckpt"))], [1.0])
        assert steps == []
        assert sorted(p.name for p in directory.iterdir()) == ["keep.ckpt"]

    def test_a_usable_directory_is_made_and_left_clean(self, tmp_path):
        """The probe makes a missing directory and leaves no file behind but the saves."""
        _fit([ModelCheckpoint(str(tmp_path / "new" / "w_{epoch}.ckpt"))], [1.0, 0.5])
        assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["w_1.ckpt", "w_2.ckpt"]

    def test_a_store_without_probe_is_trusted(self):
        """A ready-made store without a probe method is used as is."""
        store = MemoryCheckpointStore()
        _fit([ModelCheckpoint("w.ckpt", store=store)], [1.0])
        assert store.names() == ["w.ckpt"]

    @pytest.mark.s3
    def test_a_missing_bucket_fails_before_the_first_step(self, moto_s3):
        """A ModelCheckpoint on a bucket that does not exist is a StorageError at train begin
        naming the bucket and what was expected."""
        from epochal.exceptions import StorageError

        steps, counter = self._steps()
        callback = ModelCheckpoint("s3://no-such-bucket-epochal/run/w.ckpt",
                                   storage_options=moto_s3)
        with pytest.raises(StorageError, match=r"'no-such-bucket-epochal' does not exist\. "
                                               r"Expected an existing bucket"):
            _fit([counter, callback], [1.0])
        assert steps == []
