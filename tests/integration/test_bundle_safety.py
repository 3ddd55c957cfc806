"""ModelBundle crash safety and fail-fast storage checks, and Poutyne's end-of-training rule."""

from __future__ import annotations

import csv
import io
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epochal import ModelBundle
from epochal.exceptions import CheckpointError, ResumeError, StorageError
from epochal.testing import MemoryCheckpointStore
from tests.integration.bundle_helpers import loaders, network


def _bundle(directory, **kwargs):
    kwargs.setdefault("optimizer", {"optim": "sgd", "lr": 0.1})
    kwargs.setdefault("monitor_metric", "val_loss")
    kwargs.setdefault("monitor_mode", "min")
    return ModelBundle.from_network(directory, network(), task="classif", **kwargs)


def _train(bundle, epochs, **kwargs):
    train, valid = loaders(True)
    kwargs.setdefault("verbose", False)
    return bundle.train(train, valid, epochs=epochs, **kwargs)


def _weights_equal(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


class _FaultyStore:
    """A store whose Nth write or delete raises OSError (then works again)."""

    def __init__(self, inner, fail_at):
        self.inner, self.fail_at, self.count = inner, fail_at, 0

    def _tick(self, what):
        self.count += 1
        if self.count == self.fail_at:
            raise OSError(f"injected fault at operation {self.count} ({what})")

    def write(self, name, data):
        self._tick(f"write {name}")
        self.inner.write(name, data)

    def delete(self, name):
        self._tick(f"delete {name}")
        self.inner.delete(name)

    def read(self, name):
        return self.inner.read(name)

    def exists(self, name):
        return self.inner.exists(name)

    def names(self, prefix=""):
        return self.inner.names(prefix)

    def url(self, name):
        return self.inner.url(name)


_STRAIGHT: dict = {}


def _straight():
    if not _STRAIGHT:
        store = MemoryCheckpointStore()
        _train(_bundle(store), 2, keep_only_last_best=True)
        counter = _FaultyStore(MemoryCheckpointStore(), fail_at=-1)
        _train(_bundle(counter), 2, keep_only_last_best=True)
        _STRAIGHT.update(store=store, operations=counter.count)
    return _STRAIGHT


def _fault_then_resume(fail_at):
    store = MemoryCheckpointStore()
    with pytest.raises(OSError, match="injected fault"):
        _train(_bundle(_FaultyStore(store, fail_at)), 2, keep_only_last_best=True)
    _train(_bundle(store), 2, keep_only_last_best=True)
    return store


def _check_same(store, straight):
    assert _weights_equal(torch.load(io.BytesIO(store.read("checkpoint.ckpt"))),
                          torch.load(io.BytesIO(straight.read("checkpoint.ckpt"))))
    rows = [r for r in csv.DictReader(io.StringIO(store.read("log.tsv").decode()),
                                      delimiter="\t")]
    expected = [r for r in csv.DictReader(io.StringIO(straight.read("log.tsv").decode()),
                                          delimiter="\t")]
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert [{k: v for k, v in r.items() if k != "time"} for r in rows] == [
        {k: v for k, v in r.items() if k != "time"} for r in expected]
    assert sorted(n for n in store.blobs if not n.startswith("plots/")) == sorted(
        n for n in straight.blobs if not n.startswith("plots/"))


class TestInProcessFaults:
    def test_fault_at_each_early_operation_resumes_to_the_same_result(self):
        """On a memory store, a failing Nth write or delete (probe, identity record, first
        commit) leaves a directory that resumes to the uninterrupted result."""
        straight = _straight()
        for fail_at in range(1, 9):
            _check_same(_fault_then_resume(fail_at), straight["store"])

    @settings(max_examples=8, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def test_fault_at_any_operation_resumes_to_the_same_result_property(self, data):
        """For any operation of a two-epoch training, a fault there and a resume in the same
        process end with the uninterrupted run's weights, rows and files."""
        straight = _straight()
        fail_at = data.draw(st.integers(1, straight["operations"]), label="fail_at")
        _check_same(_fault_then_resume(fail_at), straight["store"])


class TestOwnLeftovers:
    def test_kill_during_first_commit_starts_fresh_and_keeps_user_files(self, tmp_path):
        """A state file and best checkpoint of epoch 1 without a manifest, in a directory with
        the identity record, are this bundle's unfinished commit: train starts fresh, removes
        them, and leaves the user's own files alone."""
        directory = tmp_path / "run"
        _train(_bundle(str(directory)), 1)
        reference = torch.load(directory / "checkpoint.ckpt", weights_only=True)
        for name in ("manifests/epoch_0001.json", "log.tsv", "checkpoint.ckpt"):
            os.remove(directory / name)
        (directory / "notes.txt").write_text("mine")
        (directory / "state" / ".epoch_0002.state.ab12.tmp").write_bytes(b"partial")
        _train(_bundle(str(directory)), 1)
        assert (directory / "notes.txt").read_text() == "mine"
        assert not (directory / "state" / ".epoch_0002.state.ab12.tmp").exists()
        assert _weights_equal(torch.load(directory / "checkpoint.ckpt", weights_only=True),
                              reference)

    def test_foreign_files_without_identity_are_refused(self):
        """Training files with no identity record and no manifest are someone else's: a
        ResumeError names them and nothing changes."""
        store = MemoryCheckpointStore()
        store.write("state/epoch_0001.state", b"x")
        before = dict(store.blobs)
        with pytest.raises(ResumeError, match=r"state/epoch_0001\.state"):
            _train(_bundle(store), 1)
        assert store.blobs == before


class TestFailFast:
    def _no_step(self, bundle, directory, error, *messages):
        before = bundle.model.network.state_dict()
        before = {k: v.clone() for k, v in before.items()}
        with pytest.raises(error) as info:
            _train(bundle, 1)
        for message in messages:
            assert message in str(info.value)
        assert _weights_equal(bundle.model.network.state_dict(), before)
        return info.value

    def test_bundle_path_that_is_a_regular_file(self, tmp_path):
        """A directory path that is an existing file fails before the first step, naming the
        path and what was expected; the file is unchanged."""
        path = tmp_path / "run"
        path.write_bytes(b"user data")
        self._no_step(_bundle(str(path)), path, StorageError, str(path), "regular file",
                      "Expected a directory")
        assert path.read_bytes() == b"user data"

    def test_read_only_directory(self, tmp_path, monkeypatch):
        """A directory that refuses writes fails before the first step with a StorageError
        naming it; its files stay byte-identical."""
        import epochal_adapters.storage as storage

        directory = tmp_path / "ro"
        directory.mkdir()
        (directory / "keep.txt").write_bytes(b"same")
        real_open = storage.os.open

        def read_only_open(path, flags, *args):
            if str(path).startswith(str(directory)) and flags & os.O_CREAT:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, flags, *args)

        monkeypatch.setattr(storage.os, "open", read_only_open)
        self._no_step(_bundle(str(directory)), directory, StorageError, str(directory),
                      "read-only", "writable")
        assert sorted(os.listdir(directory)) == ["keep.txt"]
        assert (directory / "keep.txt").read_bytes() == b"same"

    @pytest.mark.s3
    def test_missing_bucket(self, moto_s3):
        """An S3 URL whose bucket does not exist fails before the first step, naming the
        bucket."""
        bundle = _bundle("s3://no-such-bucket-epochal/run", storage_options=moto_s3)
        self._no_step(bundle, None, StorageError, "no-such-bucket-epochal", "does not exist")


class TestPoutyneBehaviour:
    def test_network_holds_the_best_epoch_weights_after_train(self):
        """After train, the network holds the best epoch's weights (val_loss min), also after
        a resumed call and after a call with nothing to train."""
        store = MemoryCheckpointStore()
        bundle = _bundle(store, monitor_metric="val_acc", monitor_mode="max")
        rows = _train(bundle, 3)
        best = bundle.get_best_epoch_stats()["epoch"].item()
        assert best < rows[-1]["epoch"]  # val_acc reaches 100 at once: the best is old
        best_weights = torch.load(io.BytesIO(store.read(f"checkpoint_epoch_{best}.ckpt")))
        assert _weights_equal(bundle.model.network.state_dict(), best_weights)
        resumed = _bundle(store, monitor_metric="val_acc", monitor_mode="max")
        _train(resumed, 4)
        assert _weights_equal(resumed.model.network.state_dict(), best_weights)
        again = _bundle(store, monitor_metric="val_acc", monitor_mode="max")
        _train(again, 4)
        assert _weights_equal(again.model.network.state_dict(), best_weights)

    def test_without_logging_best_weights_come_from_memory(self):
        """logging=False keeps the best epoch's weights in memory and restores them."""
        bundle = _bundle("memory://unused-no-logging", logging=False,
                         monitor_metric="val_acc", monitor_mode="max")
        _train(bundle, 3)
        logged = _bundle(MemoryCheckpointStore(), monitor_metric="val_acc", monitor_mode="max")
        _train(logged, 3)
        assert _weights_equal(bundle.model.network.state_dict(),
                              logged.model.network.state_dict())

    def test_resumed_train_says_where_it_resumes(self, capsys):
        """A resumed, verbose train prints the epoch it resumes at and the manifest it
        trusts; a quiet one prints nothing of it."""
        store = MemoryCheckpointStore()
        _train(_bundle(store), 1)
        _train(_bundle(store), 2)
        assert "resuming" not in capsys.readouterr().out
        _train(_bundle(store), 3, verbose=True)
        out = capsys.readouterr().out
        assert "resuming at epoch 3 from the commit of epoch 2" in out
        assert "manifests/epoch_0002.json" in out

    def test_log_columns_in_poutyne_order(self):
        """log.tsv columns: epoch, time, lr, loss, metrics, val_loss, val_metrics."""
        store = MemoryCheckpointStore()
        _train(_bundle(store), 1)
        header = store.read("log.tsv").decode().splitlines()[0].split("\t")
        assert header[:4] == ["epoch", "time", "lr", "loss"]
        assert header.index("val_loss") > header.index("acc")

    @pytest.mark.parametrize("task", ["reg", "regr", "regression"])
    def test_regression_task_spellings(self, task):
        """Any task name starting with 'reg' means MSE and val_loss min (Poutyne's rule)."""
        bundle = ModelBundle.from_network(MemoryCheckpointStore(), torch.nn.Linear(2, 1),
                                          task=task)
        assert (bundle.monitor_metric, bundle.monitor_mode) == ("val_loss", "min")

    def test_other_optimizer_message_uses_the_right_article(self):
        """The changed-optimizer message says 'an Adam optimizer'."""
        store = MemoryCheckpointStore()
        _train(_bundle(store, optimizer="adam"), 1)
        with pytest.raises(CheckpointError, match="Resume with an Adam optimizer"):
            _train(_bundle(store, optimizer="sgd"), 2)
