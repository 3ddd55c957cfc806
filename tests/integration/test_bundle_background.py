"""ModelBundle with background commits: the same directory as synchronous commits, errors
re-raised by ``train``, and the default chosen by the store's location."""

from __future__ import annotations

import csv
import io
import threading

import pytest
import torch

from epochal import ModelBundle
from epochal.exceptions import ConfigurationError
from epochal.testing import MemoryCheckpointStore
from epochal_adapters.storage import FsspecCheckpointStore
from tests.integration.bundle_helpers import loaders, network


class _ThreadRecordingStore(MemoryCheckpointStore):
    """Records which thread wrote each blob."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.writers: dict[str, str] = {}

    def write(self, name: str, data: bytes) -> None:
        super().write(name, data)
        self.writers[name] = threading.current_thread().name


def _train(store, epochs, *, background, **kwargs):
    bundle = ModelBundle.from_network(store, network(), task="classif",
                                      optimizer={"optim": "sgd", "lr": 0.1},
                                      background_commits=background, **kwargs)
    train, valid = loaders()
    return bundle, bundle.train(train, valid, epochs=epochs, verbose=False)


def _rows(store):
    text = store.read("log.tsv").decode("utf-8")
    return [{k: v for k, v in r.items() if k != "time"}
            for r in csv.DictReader(io.StringIO(text), delimiter="\t")]


class TestBackgroundCommits:
    def test_same_results_and_files_as_synchronous_commits(self) -> None:
        """Three epochs with background commits leave the synchronous run's files, log rows
        and final weights (bit-identical), and the commits were written off the main thread."""
        sync_store, background_store = MemoryCheckpointStore(), _ThreadRecordingStore()
        sync_bundle, _ = _train(sync_store, 3, background=False)
        background_bundle, _ = _train(background_store, 3, background=True)
        assert sorted(background_store.blobs) == sorted(sync_store.blobs)
        assert _rows(background_store) == _rows(sync_store)
        for key, value in sync_bundle.model.network.state_dict().items():
            assert torch.equal(background_bundle.model.network.state_dict()[key], value)
        assert background_store.writers["manifests/epoch_0003.json"].startswith(
            "epochal-commit-")
        assert background_store.writers["bundle.json"] == threading.main_thread().name

    def test_local_directory_stages_and_resumes(self, tmp_path, monkeypatch) -> None:
        """On a local directory the background commits are staged (never captured: no copy of
        the snapshot in memory), the files and rows are the synchronous run's, the weights
        files are identical byte for byte, and a resume from epoch 2 ends bit-identical."""
        import epochal._commit_writer as commit_writer

        def no_capture(snapshot):
            raise AssertionError("a local directory's background commit captured a snapshot")

        monkeypatch.setattr(commit_writer, "capture", no_capture)
        sync = str(tmp_path / "sync")
        background = str(tmp_path / "background")
        resumed = str(tmp_path / "resumed")
        sync_bundle, _ = _train(sync, 3, background=False)
        _train(background, 3, background=True)
        _train(resumed, 2, background=True)
        resumed_bundle, _ = _train(resumed, 3, background=True)
        stores = [FsspecCheckpointStore(d) for d in (sync, background, resumed)]
        training = [sorted(n for n in s.names() if not n.startswith(("plots/", "tensorboard/"))) for s in stores]
        assert training[1] == training[0] == training[2]
        assert _rows(stores[1]) == _rows(stores[0]) == _rows(stores[2])
        for name in training[0]:  # the weights files, byte for byte (state files hold times)
            if name.endswith(".ckpt"):
                assert stores[1].read(name) == stores[0].read(name) == stores[2].read(name)
        for key, value in sync_bundle.model.network.state_dict().items():
            assert torch.equal(resumed_bundle.model.network.state_dict()[key], value)

    def test_resume_after_background_commits(self) -> None:
        """A directory trained to epoch 2 with background commits resumes to epoch 3 and ends
        with the uninterrupted run's weights."""
        straight, resumed = MemoryCheckpointStore(), MemoryCheckpointStore()
        reference, _ = _train(straight, 3, background=True)
        _train(resumed, 2, background=True)
        bundle, _ = _train(resumed, 3, background=True)
        assert _rows(resumed) == _rows(straight)
        for key, value in reference.model.network.state_dict().items():
            assert torch.equal(bundle.model.network.state_dict()[key], value)

    def test_failed_background_write_is_raised_by_train(self) -> None:
        """A write that fails in the background thread makes ``train`` raise that error, and
        the failed epoch is not committed."""
        store = MemoryCheckpointStore(fail_writes={"manifests/epoch_0002.json"})
        with pytest.raises(OSError, match="simulated write failure"):
            _train(store, 3, background=True)
        assert "manifests/epoch_0001.json" in store.blobs
        assert "manifests/epoch_0002.json" not in store.blobs
        assert "manifests/epoch_0003.json" not in store.blobs

    def test_default_is_synchronous_for_local_and_memory_stores(self, tmp_path) -> None:
        """Without the argument a local directory and a memory store commit synchronously."""
        for directory in (str(tmp_path), MemoryCheckpointStore()):
            bundle = ModelBundle.from_network(directory, network(), task="classif")
            assert bundle.background_commits is False

    def test_default_is_background_for_s3(self) -> None:
        """Without the argument a bundle on an ``s3://`` URL commits in the background (the
        store is only built here; nothing is sent)."""
        bundle = ModelBundle.from_network("s3://bucket/run", network(), task="classif",
                                          storage_options={"anon": True})
        assert bundle.background_commits is True
        explicit = ModelBundle.from_network("s3://bucket/run", network(), task="classif",
                                            storage_options={"anon": True},
                                            background_commits=False)
        assert explicit.background_commits is False

    def test_bad_value_is_rejected_before_training(self) -> None:
        """A non-boolean ``background_commits`` raises a ConfigurationError at construction."""
        with pytest.raises(ConfigurationError, match="background_commits"):
            ModelBundle.from_network(MemoryCheckpointStore(), network(), task="classif",
                                     background_commits="sometimes")


@pytest.mark.s3
def test_default_background_commits_on_s3_match_synchronous_ones(moto_s3, s3_bucket_url):
    """On an s3:// prefix (moto over HTTP) the default background commits train, resume and
    end with the log rows and weights of synchronous commits to memory."""
    reference_store = MemoryCheckpointStore()
    reference, _ = _train(reference_store, 3, background=False)
    bundle = ModelBundle.from_network(s3_bucket_url, network(), task="classif",
                                      optimizer={"optim": "sgd", "lr": 0.1},
                                      storage_options=moto_s3)
    assert bundle.background_commits is True
    train, valid = loaders()
    bundle.train(train, valid, epochs=2, verbose=False)
    resumed = ModelBundle.from_network(s3_bucket_url, network(), task="classif",
                                       optimizer={"optim": "sgd", "lr": 0.1},
                                       storage_options=moto_s3)
    train, valid = loaders()
    resumed.train(train, valid, epochs=3, verbose=False)
    assert _rows(resumed.store) == _rows(reference_store)
    for key, value in reference.model.network.state_dict().items():
        assert torch.equal(resumed.model.network.state_dict()[key], value)
