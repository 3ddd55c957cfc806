"""Background commits: captured on the training thread, written by another, waited for."""

from __future__ import annotations

import os
import threading

import pytest
import torch

from epochal._commit_writer import (
    BackgroundCommits,
    committing,
    open_commits,
    wants_background_commits,
)
from epochal._snapshots import Snapshot, SnapshotStore
from epochal.exceptions import ConfigurationError
from epochal.testing import MemoryCheckpointStore


class _GatedStore(MemoryCheckpointStore):
    """A memory store whose writes wait for ``gate`` and record the writing thread."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gate = threading.Event()
        self.threads: set[str] = set()

    def write(self, name: str, data: bytes) -> None:
        assert self.gate.wait(10), "the test never opened the gate"
        self.threads.add(threading.current_thread().name)
        super().write(name, data)


class _UrlStore(MemoryCheckpointStore):
    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"


def _snapshot(epoch: int, weight: torch.Tensor) -> Snapshot:
    return Snapshot(epoch=epoch, global_step=10 * epoch, network={"w": weight},
                    log_rows=[{"epoch": e, "loss": 1.0 / e} for e in range(1, epoch + 1)])


def _commit(snapshots: SnapshotStore, epoch: int, weight: torch.Tensor) -> None:
    snapshots.commit(_snapshot(epoch, weight), is_best=True, monitor="loss",
                     keep_only_last_best=True, save_every_epoch=False)


class TestWantsBackgroundCommits:
    @pytest.mark.parametrize("base", ["s3://bucket/run", "gs://b/r", "az://c/r"])
    def test_remote_store_defaults_to_background(self, base: str) -> None:
        """A store whose URL names a network protocol commits in the background by default."""
        assert wants_background_commits(_UrlStore(base), None) is True

    @pytest.mark.parametrize("base", ["/tmp/run", "file:///tmp/run", "memory://run"])
    def test_local_and_memory_stores_default_to_synchronous(self, base: str) -> None:
        """Local paths and in-memory stores commit synchronously by default."""
        assert wants_background_commits(_UrlStore(base), None) is False
        assert wants_background_commits(MemoryCheckpointStore(), None) is False

    def test_explicit_choice_wins(self) -> None:
        """True and False are obeyed whatever the store."""
        assert wants_background_commits(MemoryCheckpointStore(), True) is True
        assert wants_background_commits(_UrlStore("s3://b/r"), False) is False

    def test_non_boolean_is_rejected(self) -> None:
        """A value other than True, False or None is a ConfigurationError naming it."""
        with pytest.raises(ConfigurationError, match=r"background_commits.*'yes'"):
            wants_background_commits(MemoryCheckpointStore(), "yes")  # type: ignore[arg-type]


class TestBackgroundCommits:
    def test_commit_returns_before_the_write_and_close_waits(self) -> None:
        """``commit`` hands the write to another thread; ``close`` returns once it is done."""
        store = _GatedStore()
        writer = BackgroundCommits(SnapshotStore(store, describe="mem"))
        _commit(writer, 1, torch.ones(3))
        assert writer.pending and store.blobs == {}
        store.gate.set()
        writer.close()
        assert not writer.pending
        assert "manifests/epoch_0001.json" in store.blobs
        assert store.threads == {"epochal-commit-1"}

    def test_same_files_as_a_synchronous_commit(self) -> None:
        """Two background commits leave exactly the blobs two synchronous ones leave."""
        sync_store, background_store = MemoryCheckpointStore(), MemoryCheckpointStore()
        sync = SnapshotStore(sync_store, describe="a")
        writer = BackgroundCommits(SnapshotStore(background_store, describe="b"))
        for epoch in (1, 2):
            _commit(sync, epoch, torch.full((3,), float(epoch)))
            _commit(writer, epoch, torch.full((3,), float(epoch)))
        writer.close()
        assert background_store.blobs == sync_store.blobs

    def test_snapshot_is_captured_before_commit_returns(self) -> None:
        """Changing the weights in place after ``commit`` does not change what is written."""
        store = _GatedStore()
        snapshots = SnapshotStore(store, describe="mem")
        writer = BackgroundCommits(snapshots)
        weight = torch.zeros(4)
        _commit(writer, 1, weight)
        weight.add_(5.0)  # the next epoch trains on
        store.gate.set()
        writer.close()
        assert torch.equal(snapshots.read_latest().snapshot.network["w"], torch.zeros(4))

    def test_next_commit_waits_for_the_previous_write(self) -> None:
        """At most one write is in flight: the second commit starts after the first ended."""
        store = _GatedStore()
        writer = BackgroundCommits(SnapshotStore(store, describe="mem"))
        _commit(writer, 1, torch.ones(2))
        second = threading.Thread(target=_commit, args=(writer, 2, torch.ones(2)))
        second.start()
        second.join(0.2)
        assert second.is_alive()  # blocked on the first write
        store.gate.set()
        second.join(10)
        writer.close()
        assert writer.writes == 2
        assert store.threads == {"epochal-commit-1", "epochal-commit-2"}

    def test_write_error_is_raised_by_the_next_commit(self) -> None:
        """A failed background write raises its error on the training thread at the next
        commit, and that epoch has no manifest."""
        store = MemoryCheckpointStore(fail_writes={"manifests/epoch_0001.json"})
        writer = BackgroundCommits(SnapshotStore(store, describe="mem"))
        _commit(writer, 1, torch.ones(2))
        with pytest.raises(OSError, match="simulated write failure") as caught:
            _commit(writer, 2, torch.ones(2))
        assert "not committed" in "".join(getattr(caught.value, "__notes__", []))
        assert "manifests/epoch_0001.json" not in store.blobs
        assert "manifests/epoch_0002.json" not in store.blobs

    def test_write_error_is_raised_at_the_end(self) -> None:
        """``close`` re-raises a failed last write; ``raise_error=False`` swallows it."""
        store = MemoryCheckpointStore(fail_writes={"state/epoch_0001.state"})
        writer = BackgroundCommits(SnapshotStore(store, describe="mem"))
        _commit(writer, 1, torch.ones(2))
        with pytest.raises(OSError):
            writer.close()
        _commit(writer, 1, torch.ones(2))
        writer.close(raise_error=False)
        writer.close()  # the error was reported once

    def test_other_methods_are_the_wrapped_stores(self) -> None:
        """Reading through the view sees the wrapped store's files."""
        store = MemoryCheckpointStore()
        snapshots = SnapshotStore(store, describe="mem")
        _commit(snapshots, 1, torch.ones(2))
        writer = BackgroundCommits(snapshots)
        assert writer.describe == "mem"
        assert writer.read_latest().snapshot.epoch == 1


class TestCommitting:
    def test_synchronous_store_is_returned_as_is(self) -> None:
        """Without background commits the training commits to the store itself."""
        snapshots = SnapshotStore(MemoryCheckpointStore(), describe="mem")
        assert open_commits(snapshots, background=False) is snapshots
        with committing(snapshots):
            pass

    def test_exit_waits_and_raises_the_write_error(self) -> None:
        """Leaving the block waits for the write and raises its error."""
        store = MemoryCheckpointStore(fail_writes={"log.tsv"})
        writer = open_commits(SnapshotStore(store, describe="mem"), background=True)
        with pytest.raises(OSError, match=r"log\.tsv"), committing(writer):
            _commit(writer, 1, torch.ones(2))

    def test_training_error_wins_over_the_write_error(self) -> None:
        """When the training itself raised, that exception propagates (after the wait)."""
        store = MemoryCheckpointStore(fail_writes={"log.tsv"})
        writer = open_commits(SnapshotStore(store, describe="mem"), background=True)
        with pytest.raises(KeyError, match="training"), committing(writer):
            _commit(writer, 1, torch.ones(2))
            raise KeyError("training")
        assert isinstance(writer, BackgroundCommits) and not writer.pending


def _files(root) -> dict[str, bytes]:
    """Every file under ``root`` (hidden temporary files included), name to bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


class TestStagedCommits:
    """Background commits to a local directory: staged into the store's temporary files on the
    training thread (no copy of the snapshot in memory), published by the writer thread."""

    def test_local_store_stages_and_writes_the_synchronous_bytes(
        self, tmp_path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Two background commits to a local directory stage (they never capture), survive
        the weights changing in place right after ``commit``, and leave exactly the files a
        synchronous run leaves, byte for byte."""
        import epochal._commit_writer as commit_writer
        from epochal_adapters.storage import FsspecCheckpointStore

        def no_capture(snapshot: Snapshot) -> Snapshot:
            raise AssertionError("a local store's background commit captured the snapshot")

        monkeypatch.setattr(commit_writer, "capture", no_capture)
        sync = SnapshotStore(FsspecCheckpointStore(str(tmp_path / "sync")), describe="sync")
        writer = BackgroundCommits(
            SnapshotStore(FsspecCheckpointStore(str(tmp_path / "bg")), describe="bg"))
        for epoch in (1, 2):
            _commit(sync, epoch, torch.full((5,), float(epoch)))
            weight = torch.full((5,), float(epoch))
            _commit(writer, epoch, weight)
            weight.add_(100.0)  # the next epoch trains on while the write is in flight
        writer.close()
        assert writer.staged == writer.writes == 2
        assert _files(tmp_path / "bg") == _files(tmp_path / "sync")

    def test_staged_commit_is_invisible_until_published(self, tmp_path) -> None:
        """After ``stage`` the trusted commit is still the previous one and no new name is
        listed; ``publish`` makes the staged epoch the trusted commit, with the values the
        tensors had when it was staged."""
        from epochal_adapters.storage import FsspecCheckpointStore

        snapshots = SnapshotStore(FsspecCheckpointStore(str(tmp_path)), describe="local")
        _commit(snapshots, 1, torch.ones(3))
        names = snapshots.store.names()
        weight = torch.full((3,), 2.0)
        staged = snapshots.stage(_snapshot(2, weight), is_best=True, monitor="loss",
                                 keep_only_last_best=True, save_every_epoch=False)
        assert staged is not None
        weight.zero_()
        assert snapshots.store.names() == names
        assert snapshots.read_latest().snapshot.epoch == 1
        staged.publish()
        latest = snapshots.read_latest().snapshot
        assert latest.epoch == 2 and torch.equal(latest.network["w"], torch.full((3,), 2.0))
        assert not any(name.endswith(".tmp") for name in _files(tmp_path))

    def test_failed_publish_keeps_the_previous_commit(
        self, tmp_path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A publish that fails at the state file's rename raises OSError naming it, writes
        no manifest, removes every staged file, and the previous commit stays trusted."""
        from epochal_adapters.storage import FsspecCheckpointStore

        snapshots = SnapshotStore(FsspecCheckpointStore(str(tmp_path)), describe="local")
        _commit(snapshots, 1, torch.ones(3))
        staged = snapshots.stage(_snapshot(2, torch.zeros(3)), is_best=True, monitor="loss",
                                 keep_only_last_best=True, save_every_epoch=False)
        assert staged is not None
        real_replace = os.replace

        def replace(source, destination):
            if "epoch_0002.state" in str(destination):
                raise OSError("simulated rename failure")
            real_replace(source, destination)

        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises(OSError, match=r"epoch_0002\.state"):
            staged.publish()
        monkeypatch.undo()
        files = _files(tmp_path)
        assert "manifests/epoch_0002.json" not in files
        assert not any(name.endswith(".tmp") for name in files)
        assert snapshots.read_latest().snapshot.epoch == 1

    def test_failed_staging_leaves_nothing(self, tmp_path) -> None:
        """A snapshot that ``torch.save`` cannot serialize raises from ``stage`` and leaves
        no temporary file (the best checkpoint, staged first, is removed too)."""
        from epochal_adapters.storage import FsspecCheckpointStore

        snapshots = SnapshotStore(FsspecCheckpointStore(str(tmp_path)), describe="local")
        _commit(snapshots, 1, torch.ones(3))
        before = _files(tmp_path)
        bad = Snapshot(epoch=2, global_step=20, network={"w": torch.ones(3)},
                       log_rows=[{"epoch": 1, "loss": 1.0}],
                       callbacks={"cb": lambda: None})  # not picklable
        with pytest.raises(Exception, match=r"(?i)pickle|lambda"):
            snapshots.stage(bad, is_best=True, monitor="loss", keep_only_last_best=True,
                            save_every_epoch=False)
        assert _files(tmp_path) == before

    def test_memory_store_captures(self) -> None:
        """A store without ``open_staged`` (the in-memory fake) is committed from a capture."""
        writer = BackgroundCommits(SnapshotStore(MemoryCheckpointStore(), describe="mem"))
        _commit(writer, 1, torch.ones(2))
        writer.close()
        assert (writer.writes, writer.staged) == (1, 0)

    def test_staging_without_room_falls_back_to_a_capture_with_one_warning(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A remote store whose spool files cannot be made (no room in TMPDIR) still gets its
        commits, from a capture, with one RuntimeWarning that names the temporary
        directory; the files are the synchronous commits'."""
        import tempfile

        from epochal_adapters.storage import FsspecCheckpointStore

        def full(*args: object, **kwargs: object) -> None:
            raise OSError(28, "No space left on device")

        sync = SnapshotStore(FsspecCheckpointStore("memory://fallback-sync"), describe="s")
        for epoch in (1, 2):
            _commit(sync, epoch, torch.full((3,), float(epoch)))
        store = FsspecCheckpointStore("memory://fallback-bg")
        writer = BackgroundCommits(SnapshotStore(store, describe="bg"))
        monkeypatch.setattr(tempfile, "TemporaryFile", full)
        with pytest.warns(RuntimeWarning, match="TMPDIR") as caught:
            for epoch in (1, 2):
                _commit(writer, epoch, torch.full((3,), float(epoch)))
            writer.close()
        assert len([w for w in caught if "Could not stage" in str(w.message)]) == 1
        assert (writer.writes, writer.staged) == (2, 0)
        assert {n: store.read(n) for n in store.names()} == {
            n: sync.store.read(n) for n in sync.store.names()}

    def test_spool_error_names_the_url_and_the_local_directory(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A spool file that cannot be made raises an OSError naming the object's URL and
        the local temporary directory, with the errno."""
        import tempfile

        from epochal_adapters.storage import FsspecCheckpointStore

        def full(*args: object, **kwargs: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(tempfile, "TemporaryFile", full)
        store = FsspecCheckpointStore("memory://spool-error")
        with pytest.raises(OSError) as caught:
            store.open_staged("last.ckpt")
        message = str(caught.value)
        assert caught.value.errno == 28
        assert "memory://spool-error/last.ckpt" in message
        assert tempfile.gettempdir() in message and "TMPDIR" in message

    @pytest.mark.parametrize(("failing", "committed"),
                             [("state/epoch_0002.state", False), ("log.tsv", True)])
    def test_the_error_note_says_whether_the_epoch_was_committed(
        self, tmp_path, monkeypatch: pytest.MonkeyPatch, failing: str, committed: bool
    ) -> None:
        """A background write that fails before the manifest leaves the epoch uncommitted,
        one that fails after it (``log.tsv``) leaves it committed: the re-raised error's note
        says which, and a resume starts where the note says."""
        from epochal_adapters.storage import FsspecCheckpointStore

        store = FsspecCheckpointStore(str(tmp_path))
        _commit(SnapshotStore(store, describe="local"), 1, torch.ones(3))
        writer = BackgroundCommits(SnapshotStore(store, describe="local"))
        real_replace = os.replace

        def replace(source, destination):
            if str(destination).endswith(failing):
                raise OSError("simulated failure")
            real_replace(source, destination)

        monkeypatch.setattr(os, "replace", replace)
        _commit(writer, 2, torch.zeros(3))
        with pytest.raises(OSError, match="simulated failure") as caught:
            writer.close()
        monkeypatch.undo()
        note = "".join(getattr(caught.value, "__notes__", []))
        latest = SnapshotStore(store, describe="local").open_for_training().manifest
        if committed:
            assert "epoch 2 is committed" in note and latest.epoch == 2
        else:
            assert "not committed" in note and latest.epoch == 1

    def test_a_writer_thread_that_cannot_start_leaves_nothing(
        self, tmp_path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If the writer thread cannot start, ``commit`` raises that error, the staged files
        are removed, and ``close`` has nothing to wait for."""
        from epochal_adapters.storage import FsspecCheckpointStore

        writer = BackgroundCommits(
            SnapshotStore(FsspecCheckpointStore(str(tmp_path)), describe="local"))

        def cannot_start(self: threading.Thread) -> None:
            raise RuntimeError("can't start new thread")

        monkeypatch.setattr(threading.Thread, "start", cannot_start)
        with pytest.raises(RuntimeError, match="can't start"):
            _commit(writer, 1, torch.ones(3))
        monkeypatch.undo()
        writer.close()
        assert _files(tmp_path) == {}
