"""ModelBundle crash safety and fail-fast storage checks, and Poutyne's end-of-training rule."""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epochal import Callback, ModelBundle, ModelCheckpoint
from epochal.exceptions import (
    CheckpointError,
    ConfigurationError,
    EmptyLoaderError,
    MonitorKeyError,
    NetworkInputError,
    ResumeError,
    StorageError,
)
from epochal.testing import MemoryCheckpointStore
from tests.integration.bundle_helpers import digits, loaders, network


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


def _straight(epochs=2, **options):
    """The uninterrupted run of a configuration (cached) and its number of writes and
    deletes."""
    options.setdefault("keep_only_last_best", True)
    key = (epochs, tuple(sorted(options.items())))
    if key not in _STRAIGHT:
        store = MemoryCheckpointStore()
        _train(_bundle(store), epochs, **options)
        counter = _FaultyStore(MemoryCheckpointStore(), fail_at=-1)
        _train(_bundle(counter), epochs, **options)
        _STRAIGHT[key] = {"store": store, "operations": counter.count}
    return _STRAIGHT[key]


def _fault_then_resume(fail_at, epochs=2, store=None, **options):
    options.setdefault("keep_only_last_best", True)
    store = MemoryCheckpointStore() if store is None else store
    with pytest.raises(OSError, match="injected fault"):
        _train(_bundle(_FaultyStore(store, fail_at)), epochs, **options)
    # The same store as before, now without faults (and the same probe: the wrapper has none).
    _train(_bundle(_FaultyStore(store, fail_at=-1)), epochs, **options)
    return store


def _check_same(store, straight, epochs=2):
    assert _weights_equal(torch.load(io.BytesIO(store.read("checkpoint.ckpt"))),
                          torch.load(io.BytesIO(straight.read("checkpoint.ckpt"))))
    rows = [r for r in csv.DictReader(io.StringIO(store.read("log.tsv").decode()),
                                      delimiter="\t")]
    expected = [r for r in csv.DictReader(io.StringIO(straight.read("log.tsv").decode()),
                                          delimiter="\t")]
    assert [r["epoch"] for r in rows] == [str(e) for e in range(1, epochs + 1)]
    assert [{k: v for k, v in r.items() if k != "time"} for r in rows] == [
        {k: v for k, v in r.items() if k != "time"} for r in expected]
    assert [n for n in store.names() if not n.startswith("plots/")] == [
        n for n in straight.names() if not n.startswith("plots/")]


class TestInProcessFaults:
    def test_fault_at_each_early_operation_resumes_to_the_same_result(self):
        """On a memory store, a failing Nth write or delete (probe, identity record, first
        commit) leaves a directory that resumes to the uninterrupted result."""
        straight = _straight()
        for fail_at in range(1, 9):
            _check_same(_fault_then_resume(fail_at), straight["store"])

    def test_fault_at_every_operation_on_fsspec_memory_resumes_to_the_same_result(self):
        """On a memory:// URL store (whose contents die with the process), a failing Nth
        upload or delete, for every operation of a two-epoch training in turn, then a resume
        in the same process, ends with the uninterrupted run's weights, rows and files."""
        import uuid

        from epochal_adapters.storage import FsspecCheckpointStore

        straight = _straight()
        for fail_at in range(1, straight["operations"] + 1):
            store = FsspecCheckpointStore(f"memory://crash-safety-{uuid.uuid4().hex}")
            _check_same(_fault_then_resume(fail_at, store=store), straight["store"])

    # A quarter of the profile's examples: 7 in the test suite (ci), 75 in nox -s props.
    @settings(max_examples=max(4, settings.default.max_examples // 4), deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def test_fault_at_any_operation_resumes_to_the_same_result_property(self, data):
        """For any operation of a one- to three-epoch training (with or without
        keep_only_last_best and save_every_epoch), a fault there and a resume in the same
        process end with the uninterrupted run's weights, one row per epoch with its values,
        and the same files."""
        epochs = data.draw(st.integers(1, 3), label="epochs")
        options = {"keep_only_last_best": data.draw(st.booleans(), label="keep_only_last_best"),
                   "save_every_epoch": data.draw(st.booleans(), label="save_every_epoch")}
        straight = _straight(epochs, **options)
        fail_at = data.draw(st.integers(1, straight["operations"]), label="fail_at")
        _check_same(_fault_then_resume(fail_at, epochs, **options), straight["store"], epochs)


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
        self._no_step(bundle, None, StorageError, "no-such-bucket-epochal", "does not exist",
                      "Expected an existing bucket")

    @pytest.mark.s3
    def test_bucket_that_refuses_writes(self, _moto_s3_server, moto_s3):
        """A bucket whose policy denies uploads fails the probe before the first step, naming
        the URL, the problem and what was expected; the bucket's objects stay unchanged."""
        import json

        import boto3

        bucket = _moto_s3_server.create_bucket()
        client = boto3.client("s3", endpoint_url=_moto_s3_server.endpoint_url,
                              aws_access_key_id="testing", aws_secret_access_key="testing",
                              region_name="us-east-1")
        client.put_object(Bucket=bucket, Key="run/notes.txt", Body=b"the user's notes")
        client.put_bucket_policy(Bucket=bucket, Policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
                           "Resource": f"arn:aws:s3:::{bucket}/*"}]}))
        bundle = _bundle(f"s3://{bucket}/run", storage_options=moto_s3)
        self._no_step(bundle, None, StorageError, f"s3://{bucket}/run", "permission denied",
                      "Expected a writable directory or bucket")
        listed = client.list_objects_v2(Bucket=bucket)["Contents"]
        assert [o["Key"] for o in listed] == ["run/notes.txt"]
        body = client.get_object(Bucket=bucket, Key="run/notes.txt")["Body"].read()
        assert body == b"the user's notes"

    @pytest.mark.s3
    def test_unreachable_endpoint(self, moto_s3):
        """An endpoint nothing listens on is named as unreachable (not as a missing bucket),
        with the settings to check, before the first step."""
        import socket

        with socket.socket() as sock:  # a port nothing listens on once closed
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        options = {**moto_s3, "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}",
                                                "region_name": "us-east-1"},
                   "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}
        bundle = _bundle("s3://some-bucket/run", storage_options=options)
        error = self._no_step(bundle, None, StorageError, "Cannot reach s3://some-bucket/run",
                              "Expected a reachable endpoint", "endpoint_url")
        assert "does not exist" not in str(error)

def _tree(directory):
    """Every file under ``directory`` with its bytes."""
    found = {}
    for root, _dirs, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, directory)] = f.read()
    return found


class _CountSteps(Callback):
    """Counts finished training steps (a batch's end comes after its optimizer step)."""

    def __init__(self):
        super().__init__()
        self.steps = 0

    def on_train_batch_end(self, batch_number, logs):
        self.steps += 1


class TestFailFastOnATrainedDirectory:
    """Each mistake, made when resuming a directory trained for one epoch that also holds a
    file of the user's: the error type, a message naming the cause and the expected input,
    no training step, and every file of the directory byte-identical afterwards."""

    @pytest.fixture
    def trained(self, tmp_path):
        directory = tmp_path / "run"
        _train(_bundle(str(directory)), 1)
        (directory / "notes.txt").write_bytes(b"the user's notes")
        return directory

    def _refused(self, directory, error, call, *messages, **bundle_kwargs):
        before = _tree(directory)
        bundle = _bundle(str(directory), **bundle_kwargs)
        counting = _CountSteps()
        with pytest.raises(error) as info:
            call(bundle, counting)
        for message in messages:
            assert message in str(info.value), (message, str(info.value))
        assert counting.steps == 0
        assert _tree(directory) == before
        return bundle

    def test_empty_validation_loader(self, trained):
        """An empty validation loader is an EmptyLoaderError before the first step."""
        train, _valid = loaders(True)
        self._refused(trained, EmptyLoaderError,
                      lambda b, c: b.train(train, [], epochs=2, callbacks=[c], verbose=False),
                      "validation loader yielded no batch", "before training")

    def test_validation_data_without_targets(self, trained):
        """train_data(..., validation_data=x_val) names validation_data and the expected
        (x_val, y_val) pair, before any step (it used to unpack x_val's rows as parts)."""
        x, y = digits()
        self._refused(
            trained, ConfigurationError,
            lambda b, c: b.train_data(x[:300], y[:300], x[300:], epochs=2, callbacks=[c],
                                      verbose=False),
            "validation_data must be an (x_val, y_val) pair", "got a Tensor")

    def test_python_lists(self, trained):
        """Python lists of numbers are a TypeError saying what to pass, before any step."""
        self._refused(
            trained, TypeError,
            lambda b, c: b.train_data([[0.0] * 784] * 8, [0] * 8, epochs=2, callbacks=[c],
                                      verbose=False),
            "x is a Python list of numbers", "np.asarray(x, dtype=np.float32)")

    def test_network_rejecting_the_batch(self, trained):
        """Inputs of the wrong width are a NetworkInputError naming the train pass, the
        batch, the input's shape and dtype and the first layer's expected width, raised by
        the first forward pass (before any optimizer step)."""
        x, y = digits()
        narrow = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(x[:64].flatten(1)[:, :700], y[:64]), batch_size=32)
        bundle = self._refused(
            trained, NetworkInputError,
            lambda b, c: b.train(narrow, narrow, epochs=2, callbacks=[c], verbose=False),
            "train pass (epoch 2, batch 1)", "(32, 700) float32", "last dimension is 784")
        assert _weights_equal(bundle.model.network.state_dict(),
                              torch.load(trained / "checkpoint.ckpt", weights_only=True))

    def test_monitored_key_never_logged(self, trained):
        """A monitored key the epoch logs will not hold is a MonitorKeyError naming it and
        the logged keys, before the first step."""
        train, valid = loaders(True)
        self._refused(
            trained, MonitorKeyError,
            lambda b, c: b.train(train, valid, epochs=2, callbacks=[c], verbose=False),
            "val_accuracy", "val_acc", monitor_metric="val_accuracy", monitor_mode="max")

    def test_test_in_a_read_only_directory_fails_before_evaluating(self, trained,
                                                                     monkeypatch):
        """test() in a directory that refuses new files is a StorageError before any test
        batch (its result file would be written after the evaluation); files unchanged."""
        import epochal_adapters.storage as storage

        real_open = storage.os.open

        def read_only_open(path, flags, *args):
            if str(path).startswith(str(trained)) and flags & os.O_CREAT:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, flags, *args)

        monkeypatch.setattr(storage.os, "open", read_only_open)
        batches = []
        counter = Callback()
        counter.on_test_batch_end = lambda n, logs: batches.append(n)
        before = _tree(trained)
        _unused, valid = loaders(True)
        with pytest.raises(StorageError, match=r"permission denied \(read-only\?\)"):
            _bundle(str(trained)).test(valid, callbacks=[counter], verbose=False)
        assert batches == [] and _tree(trained) == before

    def test_float64_arrays_train(self, trained):
        """NumPy float64 arrays (NumPy's default) are cast to the network's float32 and
        train, through train_data, test_data and infer_data."""
        x, y = digits()
        bundle = _bundle(str(trained))
        rows = bundle.train_data(x[:300].double().numpy(), y[:300].numpy(),
                                 (x[300:].double().numpy(), y[300:].numpy()), epochs=2,
                                 verbose=False)
        assert [r["epoch"] for r in rows] == [2]  # epoch 1 was trained before (the fixture)
        assert math.isfinite(bundle.test_data(x[300:].double().numpy(), y[300:].numpy(),
                                              verbose=False)["test_loss"])
        assert bundle.infer_data(x[300:].double().numpy()).shape == (100, 10)


_WATCHED: dict = {}


def _audit(event, args):
    """Record every file-system audit event whose arguments name a path under the watched
    directory (open, listdir, scandir, remove, rename, replace, mkdir, rmdir, ...)."""
    tops = _WATCHED.get("tops")
    if not tops:
        return
    for arg in args:
        if isinstance(arg, (str, bytes, os.PathLike)):
            path = os.fsdecode(os.fspath(arg))
            if any(path == top or path.startswith(top + os.sep) for top in tops):
                _WATCHED["hits"].append((event, path))
                return


class _Interrupt(Callback):
    """Raises in the middle of an epoch, as a crash would stop a run there."""

    def __init__(self, epoch, step):
        super().__init__()
        self.at, self.epoch = (epoch, step), 0

    def on_epoch_begin(self, epoch_number, logs):
        self.epoch = epoch_number

    def on_train_batch_end(self, batch_number, logs):
        if (self.epoch, batch_number) == self.at:
            raise KeyboardInterrupt("stopped mid-run")


class TestCopiedRun:
    def _user_best(self, directory):
        return ModelCheckpoint(str(directory / "mc_best_{epoch}.ckpt"), monitor="val_loss",
                               mode="min", save_best_only=True, keep_only_last_best=True)

    @pytest.mark.parametrize("inside", [False, True], ids=["beside", "inside"])
    def test_resumed_copy_never_touches_the_original_directory(self, tmp_path, inside):
        """A bundle directory copied in the middle of a run (stopped during epoch 3 of 4) and
        resumed there, with a user ModelCheckpoint(keep_only_last_best=True) writing beside
        or inside it, never opens, lists, writes or deletes a file of the original: the
        original stays byte-identical (its mc_best_2.ckpt included) while the copy's old best
        is deleted; the copy ends with the weights of an uninterrupted run."""
        original, copy = tmp_path / "original", tmp_path / "copy"
        user_dir = (lambda run: run) if inside else (lambda run: tmp_path / f"{run.name}-mc")
        for directory in (original, copy):
            user_dir(directory).mkdir(parents=True, exist_ok=True)
        with pytest.raises(KeyboardInterrupt):
            _train(_bundle(str(original)), 4, keep_only_last_best=True,
                   callbacks=[self._user_best(user_dir(original)), _Interrupt(3, 4)])
        assert sorted(p.name for p in user_dir(original).glob("mc_best_*")) == ["mc_best_2.ckpt"]
        shutil.copytree(original, copy, dirs_exist_ok=True)
        if not inside:
            shutil.copytree(user_dir(original), user_dir(copy), dirs_exist_ok=True)
        before = {**_tree(original), **{f"mc/{k}": v for k, v in _tree(user_dir(original)).items()}}

        if not _WATCHED:
            sys.addaudithook(_audit)
        hits = []
        _WATCHED.update(tops=(str(original), str(user_dir(original))), hits=hits)
        try:
            resumed = _bundle(str(copy))
            _train(resumed, 4, keep_only_last_best=True,
                   callbacks=[self._user_best(user_dir(copy))])
            resumed.load_checkpoint("best")
            resumed.get_stats()
        finally:
            _WATCHED["tops"] = ()
        assert hits == []
        after = {**_tree(original), **{f"mc/{k}": v for k, v in _tree(user_dir(original)).items()}}
        assert after == before
        assert sorted(p.name for p in user_dir(copy).glob("mc_best_*")) == ["mc_best_4.ckpt"]

        straight = tmp_path / "straight"
        _train(_bundle(str(straight)), 4, keep_only_last_best=True)
        assert _weights_equal(torch.load(copy / "checkpoint.ckpt", weights_only=True),
                              torch.load(straight / "checkpoint.ckpt", weights_only=True))


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
        quiet = capsys.readouterr().out
        assert "resuming" not in quiet
        # Poutyne's lines, whatever verbose says, naming the state file of epoch 1's commit
        assert "Loading weights from fake-memory://state/epoch_0001" in quiet
        assert "Loading optimizer state from " in quiet and "and starting at epoch 2." in quiet
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
