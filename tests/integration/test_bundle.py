"""ModelBundle: training in a working directory, exact resume, stats, test, inference."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from epochal import EarlyStopping, ModelBundle
from epochal.exceptions import CheckpointError, MonitorKeyError
from epochal.testing import MemoryCheckpointStore
from tests.integration.bundle_helpers import loaders, network


def _bundle(directory, **kwargs):
    net = network()
    kwargs.setdefault("optimizer", {"optim": "sgd", "lr": 0.1})
    return ModelBundle.from_network(directory, net, task="classif", **kwargs)


def _train(bundle, epochs, *, seeded_generator=True, callbacks=None, **kwargs):
    train, valid = loaders(seeded_generator)
    return bundle.train(train, valid, epochs=epochs, verbose=False, callbacks=callbacks,
                        **kwargs)


def _log_rows(store, name="log.tsv"):
    text = store.read(name).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text), delimiter="\t"))


def _without_time(rows):
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


class TestTrainAndResume:
    def test_second_call_runs_only_the_new_epochs(self):
        """train(epochs=3) then train(epochs=5) runs exactly epochs 4 and 5; log.tsv has each
        epoch once."""
        store = MemoryCheckpointStore()
        bundle = _bundle(store)
        first = _train(bundle, 3)
        assert [r["epoch"] for r in first] == [1, 2, 3]
        again = _bundle(store)
        seen = []

        from epochal import Callback

        class Epochs(Callback):
            def on_epoch_begin(self, epoch_number, logs):
                seen.append(epoch_number)

        rows = _train(again, 5, callbacks=[Epochs()])
        assert seen == [4, 5]
        assert [r["epoch"] for r in rows] == [4, 5]  # this call's epochs, as Poutyne's train returns
        assert [int(r["epoch"]) for r in _log_rows(store)] == [1, 2, 3, 4, 5]

    def test_calling_again_after_completion_does_nothing(self, capsys):
        """train(epochs=3) twice: the second call trains nothing and says so."""
        store = MemoryCheckpointStore()
        _train(_bundle(store), 3)
        before = dict(store.blobs)
        rows = _train(_bundle(store), 3)
        assert "nothing to train" in capsys.readouterr().out
        assert rows == []  # nothing trained, as Poutyne
        assert store.blobs == before

    @pytest.mark.parametrize("seeded_generator", [True, False])
    @pytest.mark.parametrize(
        "backend", ["fake", "local", "memory-url", pytest.param("s3", marks=pytest.mark.s3)]
    )
    def test_resume_equals_uninterrupted_run(self, seeded_generator, backend, request,
                                             tmp_path):
        """Training 6 epochs in one call equals 2, then resuming to 6: bit-identical weights,
        the same log values (but time) and the same best epoch (dropout, shuffling, StepLR,
        EarlyStopping state all restored), with the loader's own generator or the global RNG,
        on every storage backend (the fake, a local directory, memory://, s3:// on moto)."""
        from epochal.callbacks.lr_scheduler import StepLR

        if backend == "s3":
            options = request.getfixturevalue("moto_s3")
            base = request.getfixturevalue("s3_bucket_url")
        else:
            options = None
            base = None

        def directory(tag):
            if backend == "fake":
                return MemoryCheckpointStore()
            if backend == "local":
                return str(tmp_path / tag)
            if backend == "memory-url":
                return f"memory://resume-{tag}-{seeded_generator}-{id(request)}"
            return f"{base}/{tag}"

        def run(where, epochs):
            bundle = _bundle(where, storage_options=options)
            _train(bundle, epochs, seeded_generator=seeded_generator,
                   callbacks=[EarlyStopping(monitor="val_loss", patience=50)],
                   lr_schedulers=[StepLR(step_size=2, gamma=0.5)])
            return bundle

        a = run(directory("straight"), 6)
        resumed_dir = directory("resumed")
        run(resumed_dir, 2)
        b = run(resumed_dir, 6)

        for name, tensor in a.model.network.state_dict().items():
            assert torch.equal(tensor, b.model.network.state_dict()[name]), name
        assert _without_time(_log_rows(a.store)) == _without_time(_log_rows(b.store))
        assert a.get_best_epoch_stats()["epoch"].item() == b.get_best_epoch_stats()["epoch"].item()
        assert a.store.read("checkpoint.ckpt") == b.store.read("checkpoint.ckpt")

    @settings(max_examples=4, deadline=None)
    @given(kill_epoch=st.integers(1, 4))
    def test_property_resume_from_any_epoch_equals_straight_run(self, kill_epoch):
        """For any stop epoch k in [1, 5), train-to-k then resume-to-5 equals training to 5."""
        straight = MemoryCheckpointStore()
        a = _bundle(straight)
        _train(a, 5)
        resumed = MemoryCheckpointStore()
        _train(_bundle(resumed), kill_epoch)
        b = _bundle(resumed)
        _train(b, 5)
        for name, tensor in a.model.network.state_dict().items():
            assert torch.equal(tensor, b.model.network.state_dict()[name]), name
        assert _without_time(_log_rows(straight)) == _without_time(_log_rows(resumed))
        assert a.get_best_epoch_stats()["epoch"].item() == b.get_best_epoch_stats()["epoch"].item()

    def test_files_of_the_working_directory(self, tmp_path):
        """A local directory gets log.tsv, best and last checkpoints, states, manifests and
        plots."""
        bundle = _bundle(str(tmp_path / "run"))
        _train(bundle, 3, keep_only_last_best=True)
        names = bundle.store.names()
        assert "log.tsv" in names and "checkpoint.ckpt" in names
        assert len([n for n in names if n.startswith("checkpoint_epoch_")]) == 1
        assert len([n for n in names if n.startswith("manifests/")]) == 2
        assert len([n for n in names if n.startswith("state/")]) == 2
        for metric in ("loss", "acc", "time", "lr"):  # Poutyne's plots: PNG and PDF
            for extension, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF")):
                path = tmp_path / "run" / "plots" / f"{metric}.{extension}"
                assert path.read_bytes()[:4] == magic, path
        manifest = json.loads(bundle.store.read("manifests/epoch_0003.json"))
        assert manifest["epoch"] == 3 and manifest["state"] == "state/epoch_0003.state"


class TestBadInput:
    def test_unknown_monitor_fails_before_first_epoch(self):
        """A monitor key the training will not log fails at train begin, naming the key."""
        store = MemoryCheckpointStore()
        bundle = _bundle(store, monitor_metric="val_accuracy", monitor_mode="max")
        with pytest.raises(MonitorKeyError, match=r"val_accuracy.*val_acc"):
            _train(bundle, 2)
        assert not any(n.startswith("manifests/") for n in store.blobs)

    def test_different_network_is_named(self):
        """A directory trained with another network: CheckpointError listing the keys."""
        store = MemoryCheckpointStore()
        _train(_bundle(store), 1)
        other = ModelBundle.from_network(store, torch.nn.Sequential(torch.nn.Flatten(),
                                         torch.nn.Linear(784, 10)), task="classif")
        with pytest.raises(CheckpointError, match=r"different network.*missing keys"):
            _train(other, 2)

    def test_corrupt_newest_state_falls_back_to_previous(self):
        """A state file that no longer matches its manifest's checksum is skipped with a warning
        and training resumes from the previous committed epoch."""
        store = MemoryCheckpointStore()
        _train(_bundle(store), 3)
        store.blobs["state/epoch_0003.state"] = store.blobs["state/epoch_0003.state"][:100]
        bundle = _bundle(store)
        with pytest.warns(RuntimeWarning, match="epoch_0003.state"):
            rows = _train(bundle, 3)
        assert [r["epoch"] for r in rows] == [3]  # resumed from the previous commit (epoch 2)

    def test_all_manifests_corrupt_is_a_clear_error(self):
        """When no manifest is usable the error names each file and what was expected."""
        store = MemoryCheckpointStore()
        _train(_bundle(store), 2)
        for name in [n for n in store.blobs if n.startswith("manifests/")]:
            store.blobs[name] = b"{not json"
        with pytest.raises(CheckpointError, match=r"manifests/epoch_0002\.json"):
            _train(_bundle(store), 3)

    def test_state_holding_code_is_refused(self):
        """A state file with a pickled object that would run code is refused."""
        import hashlib

        store = MemoryCheckpointStore()
        _train(_bundle(store), 1)
        evil = io.BytesIO()
        torch.save({"payload": _Exploit()}, evil)
        data = evil.getvalue()
        store.blobs["state/epoch_0001.state"] = data
        manifest = json.loads(store.blobs["manifests/epoch_0001.json"])
        manifest.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        store.blobs["manifests/epoch_0001.json"] = json.dumps(manifest).encode()
        with pytest.raises(CheckpointError, match="Refused"):
            _train(_bundle(store), 2)


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


class TestStatsTestInfer:
    def test_stats_best_epoch_and_test(self):
        """get_stats, get_best_epoch_stats, load_checkpoint and test agree with the logs."""
        store = MemoryCheckpointStore()
        bundle = _bundle(store)
        _train(bundle, 3)
        stats = bundle.get_stats().to_dict("records")
        best = bundle.get_best_epoch_stats().to_dict("records")[0]
        assert best["val_acc"] == max(r["val_acc"] for r in stats)
        assert bundle.get_saved_epochs()["epoch"].tolist()[-1] == best["epoch"]
        _, valid = loaders()
        result = bundle.test(valid, verbose=False)
        assert "epoch" not in result  # Poutyne's keys; the epoch is in test_log.tsv
        assert result["test_acc"] == pytest.approx(best["val_acc"], abs=1e-9)
        assert _log_rows(store, "test_log.tsv")[0]["epoch"] == str(best["epoch"])
        pred = bundle.infer(valid, has_ground_truth=True, verbose=False)
        assert pred.shape == (100, 10)

    @pytest.mark.parametrize("options", [{"keep_only_last_best": True},
                                         {"save_every_epoch": True}, {}])
    def test_saved_epochs_are_the_files_that_exist(self, options):
        """get_saved_epochs lists exactly the epochs with a checkpoint_epoch file (one with
        keep_only_last_best, every epoch with save_every_epoch) and each one loads."""
        store = MemoryCheckpointStore()
        bundle = _bundle(store, monitor_metric="val_loss", monitor_mode="min")
        _train(bundle, 3, **options)
        saved = bundle.get_saved_epochs()["epoch"].tolist()
        files = sorted(int(n[len("checkpoint_epoch_"):-len(".ckpt")]) for n in store.names()
                       if n.startswith("checkpoint_epoch_"))
        assert saved == files
        assert len(saved) == {"keep_only_last_best": 1, "save_every_epoch": 3}.get(
            next(iter(options), ""), len(saved))
        for epoch in saved:
            assert bundle.load_checkpoint(epoch)["epoch"].item() == epoch

    def test_test_keeps_poutynes_keys_and_returns_predictions(self):
        """test(name='valid') returns test_* keys (the name is the file's) and writes
        valid_log.tsv; return_pred adds the predictions after the logs; return_dict_format=
        False is refused before evaluating."""
        store = MemoryCheckpointStore()
        bundle = _bundle(store)
        _train(bundle, 1)
        _, valid = loaders()
        logs = bundle.test(valid, name="valid", verbose=False)
        assert "test_loss" in logs and "valid_loss" not in logs
        assert "test_loss" in _log_rows(store, "valid_log.tsv")[0]
        logs, pred = bundle.test(valid, return_pred=True, verbose=False)
        assert pred.shape == (100, 10) and "test_acc" in logs
        with pytest.raises(ValueError, match="return_dict_format"):
            bundle.test(valid, return_dict_format=False, verbose=False)

    def test_is_better_than_compares_best_values(self):
        """is_better_than compares the best monitored values of two bundles."""
        good, bad = MemoryCheckpointStore(), MemoryCheckpointStore()
        a = _bundle(good)
        _train(a, 3)
        b = _bundle(bad, optimizer={"optim": "sgd", "lr": 1e-5})
        _train(b, 1)
        assert a.is_better_than(b) and not b.is_better_than(a)

    def test_memory_url_directory(self):
        """A memory:// URL works as a working directory."""
        bundle = _bundle("memory://bundle-test-run")
        _train(bundle, 2)
        assert "log.tsv" in bundle.store.names()


@pytest.mark.s3
class TestBundleOnS3:
    def test_train_resume_and_test_on_s3(self, moto_s3, s3_bucket_url):
        """A bundle whose directory is an s3:// prefix (moto over HTTP) trains, resumes and
        tests like a local one."""
        bundle = _bundle(s3_bucket_url, storage_options=moto_s3)
        _train(bundle, 2)
        again = _bundle(s3_bucket_url, storage_options=moto_s3)
        rows = _train(again, 3)
        assert [r["epoch"] for r in rows] == [3]
        names = again.store.names()
        assert "log.tsv" in names and "manifests/epoch_0003.json" in names
        _, valid = loaders()
        assert "test_acc" in again.test(valid, verbose=False)

    def test_unreachable_endpoint_names_the_url(self, tmp_path):
        """An S3 endpoint nobody listens on fails with the URL in the message."""
        import socket

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        options = {"key": "k", "secret": "s", "client_kwargs": {
            "endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1"},
            "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}}}
        bundle = _bundle("s3://nowhere-bucket/run", storage_options=options)
        with pytest.raises(OSError, match="s3://nowhere-bucket/run"):
            _train(bundle, 1)


class TestDivergence:
    def test_non_finite_weights_never_replace_the_committed_state(self):
        """An epoch that ends with NaN weights commits nothing and stops training: the
        directory keeps the last finite epoch's state, checkpoints and log rows."""
        from epochal import Callback

        class Poison(Callback):
            def on_epoch_end(self, epoch_number, logs):
                if epoch_number == 2:
                    with torch.no_grad():
                        next(self.model.network.parameters()).fill_(float("nan"))

        store = MemoryCheckpointStore()
        bundle = _bundle(store)
        with pytest.warns(RuntimeWarning, match="NaN or infinite"):
            rows = _train(bundle, 4, callbacks=[Poison()])
        assert [r["epoch"] for r in rows] == [1, 2]  # epoch 2 ran; its NaN weights were not committed
        assert [int(r["epoch"]) for r in _log_rows(store)] == [1]
        weights = torch.load(io.BytesIO(store.read("checkpoint.ckpt")), weights_only=True)
        assert all(torch.isfinite(t).all() for t in weights.values())
        assert max(int(n[len("manifests/epoch_"):-5]) for n in store.blobs
                   if n.startswith("manifests/")) == 1


class TestDirectoryRobustness:
    def test_missing_manifests_with_leftover_files_is_refused_and_changes_nothing(self):
        """A directory with training files but no manifests is not silently restarted."""
        from epochal.exceptions import ResumeError

        store = MemoryCheckpointStore()
        _train(_bundle(store), 2)
        for name in [n for n in store.blobs if n.startswith("manifests/")]:
            del store.blobs[name]
        before = dict(store.blobs)
        with pytest.raises(ResumeError, match="no manifests"):
            _train(_bundle(store), 3)
        assert store.blobs == before

    @pytest.mark.parametrize("content", [b"[1, 2]", b'{"format": "epochal.bundle/1"}'])
    def test_manifest_with_wrong_fields_names_the_file(self, content):
        """A manifest that parses but lacks fields is skipped, naming the file."""
        store = MemoryCheckpointStore()
        _train(_bundle(store), 2)
        store.blobs["manifests/epoch_0002.json"] = content
        with pytest.warns(RuntimeWarning, match=r"manifests/epoch_0002\.json"):
            rows = _train(_bundle(store), 2)
        assert [r["epoch"] for r in rows] == [2]

    def test_other_optimizer_is_named(self):
        """Resuming with another optimizer class says which one trained the directory."""
        store = MemoryCheckpointStore()
        _train(_bundle(store), 1)
        with pytest.raises(CheckpointError, match=r"SGD.*Adam"):
            _train(_bundle(store, optimizer="adam"), 2)

    def test_bad_checkpoint_names(self):
        """load_checkpoint suggests 'best' for a typo and accepts '2' and NumPy integers."""
        import numpy as np

        store = MemoryCheckpointStore()
        bundle = _bundle(store)
        _train(bundle, 2, save_every_epoch=True)
        with pytest.raises(CheckpointError, match="Did you mean 'best'"):
            bundle.load_checkpoint("bestt")
        assert bundle.load_checkpoint("2")["epoch"].item() == 2
        assert bundle.load_checkpoint(np.int64(1))["epoch"].item() == 1
        assert bundle.load_checkpoint("checkpoint_epoch_2.ckpt") is None  # bundle-relative
        with pytest.raises(TypeError, match="ModelBundle"):
            bundle.is_better_than("memory://x")  # type: ignore[arg-type]

    def test_no_validation_error_names_the_bundle_options(self):
        """Monitoring val_acc without validation data names ModelBundle and the way out."""
        bundle = _bundle(MemoryCheckpointStore())
        train, _ = loaders()
        with pytest.raises(MonitorKeyError, match=r"ModelBundle monitors 'val_acc'.*valid_loader"):
            bundle.train(train, epochs=1, verbose=False)

    def test_log_is_repaired_when_nothing_to_train(self):
        """A damaged log.tsv is rewritten from the committed state even when no epoch runs."""
        store = MemoryCheckpointStore()
        _train(_bundle(store), 2)
        good = store.blobs["log.tsv"]
        store.blobs["log.tsv"] = b"garbage"
        _train(_bundle(store), 2)
        assert store.blobs["log.tsv"] == good


class TestReviewRegressionsBundle:
    def test_stop_directive_from_on_epoch_end_survives_a_resume(self):
        """A callback that returns StopTraining at epoch 2 ends the training for good: a second
        train() with the same epochs does not run epochs 3..5."""
        from epochal import Callback, StopTraining

        class StopAt2(Callback):
            def on_epoch_end(self, epoch_number, logs):
                return StopTraining(reason="test") if epoch_number == 2 else None

        store = MemoryCheckpointStore()
        first = _train(_bundle(store), 5, callbacks=[StopAt2()])
        assert [r["epoch"] for r in first] == [1, 2]
        again = _train(_bundle(store), 5, callbacks=[StopAt2()])
        assert again == []  # the stop stays made: nothing trained

    def test_store_objects_and_paths_as_directories(self, tmp_path):
        """A ready FsspecCheckpointStore and a pathlib.Path both work as the directory."""
        from epochal_adapters.storage import FsspecCheckpointStore

        bundle = _bundle(FsspecCheckpointStore(str(tmp_path / "a")))
        _train(bundle, 1)
        assert str(tmp_path / "a") in bundle.directory
        bundle = _bundle(tmp_path / "b")
        _train(bundle, 1)
        assert (tmp_path / "b" / "log.tsv").is_file()
