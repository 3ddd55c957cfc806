"""``epochal_adapters.storage`` beyond the port contract: local crash safety, URLs, errors.

The behaviour every ``CheckpointStore`` shares is pinned in
``tests/contract/test_checkpoint_store.py``.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from epochal.testing import MemoryCheckpointStore
from epochal_adapters.storage import FsspecCheckpointStore, open_store, split_url


def _files_under(root: Path) -> list[str]:
    """Every file under ``root``, hidden ones included, as sorted '/'-joined relative paths."""
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


def state_of(store: FsspecCheckpointStore) -> dict[str, bytes]:
    """Everything a store holds, as a dict from name to bytes."""
    return {name: store.read(name) for name in store.names()}


class TestFsspecCheckpointStoreLocal:
    """``FsspecCheckpointStore`` on the local filesystem."""

    def test_write_leaves_no_temp_file(self, tmp_path: Path) -> None:
        """After a write, the directory holds the final file and nothing else."""
        store = FsspecCheckpointStore(str(tmp_path))
        store.write("last.ckpt", b"weights")
        store.write("last.ckpt", b"weights, again")
        assert _files_under(tmp_path) == ["last.ckpt"]
        assert (tmp_path / "last.ckpt").read_bytes() == b"weights, again"

    def test_write_makes_missing_directories(self, tmp_path: Path) -> None:
        """Writing a nested name into a base directory that does not exist creates both."""
        store = FsspecCheckpointStore(str(tmp_path / "saves" / "conv"))
        store.write("checkpoints/epoch_1/weights.ckpt", b"w")
        assert (tmp_path / "saves/conv/checkpoints/epoch_1/weights.ckpt").read_bytes() == b"w"

    def test_crash_at_rename_keeps_old_file_and_removes_temp(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If os.replace fails, the old file is intact, the temp file is gone, and the error has the path."""
        store = FsspecCheckpointStore(str(tmp_path))
        store.write("d/last.ckpt", b"old bytes")

        def crash(source: str, destination: str) -> None:
            raise OSError("simulated crash during rename")

        monkeypatch.setattr(os, "replace", crash)
        with pytest.raises(OSError, match="simulated crash") as raised:
            store.write("d/last.ckpt", b"new bytes")
        assert store.url("d/last.ckpt") in str(raised.value)
        monkeypatch.undo()
        assert _files_under(tmp_path) == ["d/last.ckpt"]
        assert (tmp_path / "d/last.ckpt").read_bytes() == b"old bytes"

    def test_crash_at_fsync_keeps_old_file_and_removes_temp(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If flushing to disk fails (disk full), the old file is intact and no temp file remains."""
        store = FsspecCheckpointStore(str(tmp_path))
        store.write("last.ckpt", b"old bytes")

        def disk_full(fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", disk_full)
        with pytest.raises(OSError, match="No space left") as raised:
            store.write("last.ckpt", b"new bytes")
        assert raised.value.errno == 28
        monkeypatch.undo()
        assert _files_under(tmp_path) == ["last.ckpt"]
        assert store.read("last.ckpt") == b"old bytes"

    def test_permission_error_keeps_its_type_and_names_the_url(self, tmp_path: Path) -> None:
        """A write into a read-only directory raises PermissionError whose message has the URL."""
        if os.name == "nt" or os.geteuid() == 0:
            pytest.skip("root (or Windows) ignores directory write permission")
        readonly = tmp_path / "readonly"
        readonly.mkdir()
        readonly.chmod(stat.S_IRUSR | stat.S_IXUSR)
        store = FsspecCheckpointStore(str(readonly))
        try:
            with pytest.raises(PermissionError) as raised:
                store.write("x.ckpt", b"x")
        finally:
            readonly.chmod(stat.S_IRWXU)
        assert store.url("x.ckpt") in str(raised.value)

    def test_name_below_a_file_raises_os_error_with_the_url(self, tmp_path: Path) -> None:
        """Writing 'a/b.ckpt' where 'a' is a file raises an OSError naming the URL; 'a' stays."""
        store = FsspecCheckpointStore(str(tmp_path))
        store.write("a", b"a file")
        with pytest.raises(OSError) as raised:
            store.write("a/b.ckpt", b"x")
        assert isinstance(raised.value, (FileExistsError, NotADirectoryError))
        assert store.url("a/b.ckpt") in str(raised.value)
        assert state_of(store) == {"a": b"a file"}

    def test_written_file_permissions_follow_the_umask(self, tmp_path: Path) -> None:
        """A written file gets the usual permissions (0o666 less the umask), not a temp file's 0o600."""
        if os.name == "nt":
            pytest.skip("no POSIX permissions")
        umask = os.umask(0o022)
        try:
            FsspecCheckpointStore(str(tmp_path)).write("x.ckpt", b"x")
        finally:
            os.umask(umask)
        assert stat.S_IMODE((tmp_path / "x.ckpt").stat().st_mode) == 0o644

    def test_names_skips_stale_temp_files(self, tmp_path: Path) -> None:
        """A temp file left by a crashed process is never listed."""
        store = FsspecCheckpointStore(str(tmp_path))
        store.write("ckpt/last.ckpt", b"x")
        (tmp_path / "ckpt" / ".last.ckpt.0123abcd.tmp").write_bytes(b"partial")
        assert store.names() == ["ckpt/last.ckpt"]

    def test_temp_file_names_are_refused(self, tmp_path: Path) -> None:
        """A name shaped like a temp file ('.*.tmp') is refused with ValueError."""
        store = FsspecCheckpointStore(str(tmp_path))
        with pytest.raises(ValueError, match="temporary"):
            store.write("ckpt/.last.ckpt.tmp", b"x")

    def test_url_of_plain_path_is_absolute(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A store made from a relative path reports absolute paths, without a protocol."""
        monkeypatch.chdir(tmp_path)
        store = FsspecCheckpointStore("saves/conv")
        assert store.url("last.ckpt") == f"{tmp_path.as_posix()}/saves/conv/last.ckpt"

    def test_url_of_file_url_keeps_the_protocol(self, tmp_path: Path) -> None:
        """A store made from a file:// URL reports file:// URLs."""
        store = FsspecCheckpointStore(tmp_path.as_uri() + "/")
        assert store.url("a/b.ckpt") == f"{tmp_path.as_uri()}/a/b.ckpt"

    def test_plain_path_and_file_url_share_files(self, tmp_path: Path) -> None:
        """A plain path and the file:// URL of the same directory see the same objects."""
        FsspecCheckpointStore(str(tmp_path)).write("a/b.ckpt", b"shared")
        assert FsspecCheckpointStore(tmp_path.as_uri()).read("a/b.ckpt") == b"shared"


class TestStagedWrites:
    """``open_staged`` on the local filesystem: the bytes wait in the temporary file."""

    def test_staged_bytes_are_on_disk_before_publish(self, tmp_path: Path) -> None:
        """After a staged write the bytes are in the hidden temporary file beside the name
        (on disk, not held in memory) and the name still holds its old bytes; ``publish``
        renames the temporary file onto the name and leaves nothing else."""
        store = FsspecCheckpointStore(str(tmp_path))
        store.write("d/last.ckpt", b"old")
        staged = store.open_staged("d/last.ckpt")
        assert staged is not None
        staged.write(b"new bytes")
        staged.flush()
        temp = Path(staged.temp_path)
        assert temp.parent == tmp_path / "d" and temp.name.startswith(".last.ckpt.")
        assert temp.read_bytes() == b"new bytes"
        assert (tmp_path / "d/last.ckpt").read_bytes() == b"old"
        staged.publish()
        assert _files_under(tmp_path) == ["d/last.ckpt"]
        assert (tmp_path / "d/last.ckpt").read_bytes() == b"new bytes"

    def test_fsync_happens_at_publish(self, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
        """Staging writes without ``fsync``; ``publish`` fsyncs the file, then the directory
        after the rename (durability is the publisher's work, off the training thread)."""
        store = FsspecCheckpointStore(str(tmp_path))
        events: list[str] = []
        real_fsync, real_replace = os.fsync, os.replace
        monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd)))
        monkeypatch.setattr(os, "replace",
                            lambda a, b: (events.append("rename"), real_replace(a, b)))
        staged = store.open_staged("last.ckpt")
        assert staged is not None
        staged.write(b"w" * 100_000)
        assert events == []
        staged.publish()
        assert events == ["fsync", "rename", "fsync"]

    def test_disk_error_while_staging_names_the_url(self, tmp_path: Path) -> None:
        """A disk error raised by a staged write (a full disk) is an OSError naming the URL,
        with its errno."""
        store = FsspecCheckpointStore(str(tmp_path))
        staged = store.open_staged("last.ckpt")
        assert staged is not None

        class _FullDisk:
            closed = False

            def write(self, data: object) -> int:
                raise OSError(28, "No space left on device")

            def close(self) -> None:
                pass

        real_file, staged.file = staged.file, _FullDisk()  # type: ignore[assignment]
        with pytest.raises(OSError) as caught:
            staged.write(b"x")
        assert caught.value.errno == 28 and store.url("last.ckpt") in str(caught.value)
        staged.file = real_file
        staged.discard()
        assert _files_under(tmp_path) == []

    def test_remote_store_spools_to_an_anonymous_local_file(self) -> None:
        """A remote store (``memory://`` here) stages into an anonymous local spool file: the
        object does not exist before ``publish``, which uploads the bytes once and closes
        (and so removes) the spool file."""
        store = FsspecCheckpointStore("memory://staging-remote")
        staged = store.open_staged("d/last.ckpt")
        staged.write(b"spooled bytes")
        assert not hasattr(staged, "temp_path")  # no name: nothing to sweep after a crash
        assert store.names() == []
        uploads: list[bytes] = []
        real = store._write_remote

        def counted(path: str, data: bytes) -> None:
            uploads.append(data)
            real(path, data)

        store._write_remote = counted  # type: ignore[method-assign]
        staged.publish()
        assert uploads == [b"spooled bytes"]
        assert store.read("d/last.ckpt") == b"spooled bytes"
        assert staged.file.closed

    def test_remote_upload_failure_names_the_url(self) -> None:
        """An upload that fails with a non-OSError (botocore's connection errors) is an
        OSError naming the URL; the object keeps its old bytes and the spool file is
        closed."""
        store = FsspecCheckpointStore("memory://staging-remote-fail")
        store.write("last.ckpt", b"old")
        staged = store.open_staged("last.ckpt")
        staged.write(b"new")

        def unreachable(*args: object, **kwargs: object) -> None:
            raise RuntimeError("endpoint unreachable")

        store.fs.pipe_file, real = unreachable, store.fs.pipe_file
        try:
            with pytest.raises(OSError, match=r"memory://staging-remote-fail/last\.ckpt"):
                staged.publish()
        finally:
            store.fs.pipe_file = real
        assert store.read("last.ckpt") == b"old"
        assert staged.file.closed and staged.state == "discarded"


class TestFsspecCheckpointStoreMemory:
    """``FsspecCheckpointStore`` on ``memory://``."""

    def test_url_keeps_the_given_url(self) -> None:
        """url(name) joins the given memory:// URL and the name with '/'."""
        assert FsspecCheckpointStore("memory://run-1/").url("a.ckpt") == "memory://run-1/a.ckpt"


class TestSplitUrl:
    """``split_url``: a file URL or path into (parent URL, file name)."""

    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("saves/conv/last_epoch.ckpt", ("saves/conv", "last_epoch.ckpt")),
            ("/abs/dir/last.ckpt", ("/abs/dir", "last.ckpt")),
            ("last.ckpt", (".", "last.ckpt")),
            ("file:///tmp/run/last.ckpt", ("file:///tmp/run", "last.ckpt")),
            ("file:///last.ckpt", ("file:///", "last.ckpt")),
            ("s3://b/a/b.ckpt", ("s3://b/a", "b.ckpt")),
            ("s3://bucket/best_epoch_{epoch}.ckpt", ("s3://bucket", "best_epoch_{epoch}.ckpt")),
            ("memory://root/x/log.tsv", ("memory://root/x", "log.tsv")),
        ],
    )
    def test_splits_parent_and_name(self, path: str, expected: tuple[str, str]) -> None:
        """The parent is everything before the last separator, the name everything after."""
        assert split_url(path) == expected

    @pytest.mark.parametrize("path", ["", "saves/conv/", "s3://bucket", "s3://bucket/x/"])
    def test_refuses_paths_without_file_name(self, path: str) -> None:
        """A path with no file name after its last '/' is refused with ValueError."""
        with pytest.raises(ValueError, match="file"):
            split_url(path)

    def test_parent_and_name_make_a_store_for_the_file(self, tmp_path: Path) -> None:
        """A store for the parent, written under the name, produces the file at the path."""
        parent, name = split_url(f"{tmp_path.as_uri()}/saves/last.ckpt")
        FsspecCheckpointStore(parent).write(name, b"x")
        assert (tmp_path / "saves/last.ckpt").read_bytes() == b"x"


class TestOpenStore:
    """``open_store``: a store from a URL, or the store itself."""

    def test_passes_a_store_through(self) -> None:
        """An object that implements CheckpointStore is returned as is."""
        store = MemoryCheckpointStore()
        assert open_store(store) is store

    def test_builds_an_fsspec_store_from_a_url_or_path(self, tmp_path: Path) -> None:
        """A str URL or an os.PathLike becomes an FsspecCheckpointStore at that location."""
        from_str = open_store(str(tmp_path))
        from_path = open_store(tmp_path)
        assert isinstance(from_str, FsspecCheckpointStore)
        assert isinstance(from_path, FsspecCheckpointStore)
        from_str.write("a.ckpt", b"x")
        assert from_path.read("a.ckpt") == b"x"

    def test_refuses_storage_options_with_a_store(self) -> None:
        """storage_options given with a ready-made store are refused, not silently ignored."""
        with pytest.raises(ValueError, match="storage_options"):
            open_store(MemoryCheckpointStore(), {"key": "k"})

    def test_refuses_other_objects(self) -> None:
        """Something that is neither a URL nor a store raises TypeError."""
        with pytest.raises(TypeError, match="CheckpointStore"):
            open_store(42)  # type: ignore[arg-type]


class TestUnreachableS3:
    """``FsspecCheckpointStore`` on S3 when the endpoint does not answer."""

    @pytest.fixture
    def dead_store(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FsspecCheckpointStore:
        """A store whose S3 endpoint is a closed port on 127.0.0.1, with 1-attempt timeouts."""
        pytest.importorskip("s3fs")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        monkeypatch.chdir(tmp_path)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        # The port is closed once the probe socket is; connections to it are refused.
        options: dict[str, Any] = {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {
                "endpoint_url": f"http://127.0.0.1:{port}",
                "region_name": "us-east-1",
            },
            "config_kwargs": {
                "connect_timeout": 1,
                "read_timeout": 1,
                "retries": {"max_attempts": 1},
            },
            "skip_instance_cache": True,
        }
        return FsspecCheckpointStore("s3://unreachable-bucket/run", options)

    def test_every_operation_raises_os_error_with_the_url(
        self, dead_store: FsspecCheckpointStore, tmp_path: Path
    ) -> None:
        """write, read, exists, names and delete raise OSError naming the URL, and leave nothing."""
        url = dead_store.url("last.ckpt")
        operations = {
            "write": lambda: dead_store.write("last.ckpt", b"x"),
            "read": lambda: dead_store.read("last.ckpt"),
            "exists": lambda: dead_store.exists("last.ckpt"),
            "delete": lambda: dead_store.delete("last.ckpt"),
        }
        for operation, call in operations.items():
            with pytest.raises(OSError) as raised:
                call()
            assert url in str(raised.value), operation
        with pytest.raises(OSError, match="s3://unreachable-bucket/run"):
            dead_store.names()
        assert _files_under(tmp_path) == []


class TestTemporaryFilesAndProbe:
    def test_remove_temp_files_removes_only_temporary_files(self, tmp_path: Path) -> None:
        """Temporary files of killed writes (.name.XXXX.tmp), at any depth, are removed and
        named; every other file stays."""
        store = FsspecCheckpointStore(str(tmp_path))
        store.write("state/epoch_0001.state", b"kept")
        (tmp_path / "state" / ".epoch_0002.state.ab12.tmp").write_bytes(b"partial")
        (tmp_path / ".log.tsv.cd34.tmp").write_bytes(b"partial")
        (tmp_path / "notes.tmp").write_bytes(b"user file, not a temp name")
        removed = store.remove_temp_files()
        assert sorted(removed) == [".log.tsv.cd34.tmp", "state/.epoch_0002.state.ab12.tmp"]
        assert sorted(_files_under(tmp_path)) == ["notes.tmp", "state/epoch_0001.state"]

    def test_remove_temp_files_of_a_missing_directory_is_empty(self, tmp_path: Path) -> None:
        """A directory that does not exist yet has no temporary files."""
        assert FsspecCheckpointStore(str(tmp_path / "absent")).remove_temp_files() == []

    def test_probe_accepts_a_new_directory_and_leaves_nothing(self, tmp_path: Path) -> None:
        """A path that does not exist yet is made; the probe file is removed again."""
        FsspecCheckpointStore(str(tmp_path / "new" / "run")).probe()
        assert (tmp_path / "new" / "run").is_dir()
        assert _files_under(tmp_path) == []

    def test_probe_names_a_regular_file_on_the_path(self, tmp_path: Path) -> None:
        """A regular file where a directory should be is named, with what was expected."""
        from epochal.exceptions import StorageError

        (tmp_path / "file").write_bytes(b"data")
        with pytest.raises(StorageError, match="regular file") as raised:
            FsspecCheckpointStore(str(tmp_path / "file" / "run")).probe()
        assert str(tmp_path / "file") in str(raised.value)
        assert (tmp_path / "file").read_bytes() == b"data"

    @pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0,
                        reason="root writes into read-only directories")
    def test_probe_names_a_read_only_directory(self, tmp_path: Path) -> None:
        """A directory without write permission fails the probe with a StorageError."""
        from epochal.exceptions import StorageError

        directory = tmp_path / "ro"
        directory.mkdir()
        directory.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            with pytest.raises(StorageError, match="read-only"):
                FsspecCheckpointStore(str(directory)).probe()
        finally:
            directory.chmod(stat.S_IRWXU)


class TestKilledProbe:
    """A probe killed between its write and its delete leaves a file the next sweep removes."""

    def _killed_probe(self, store: FsspecCheckpointStore, monkeypatch: Any) -> None:
        """Run a probe whose delete never happens (as after a SIGKILL right after its write)."""
        import epochal_adapters.storage as storage

        class Killed(BaseException):
            pass

        def killed(*args: Any) -> None:
            raise Killed

        with monkeypatch.context() as patch:
            patch.setattr(storage.os, "remove", killed)
            patch.setattr(FsspecCheckpointStore, "_rm_remote", killed)
            with pytest.raises(Killed):
                store.probe()

    def test_local_probe_file_is_hidden_and_swept(self, tmp_path: Path,
                                                  monkeypatch: Any) -> None:
        """Locally the leftover is a hidden ``._probe-*.tmp`` file: names() skips it, and
        remove_temp_files deletes it and nothing else."""
        store = FsspecCheckpointStore(str(tmp_path))
        store.write("notes.txt", b"mine")
        self._killed_probe(store, monkeypatch)
        leftovers = [n for n in _files_under(tmp_path) if n != "notes.txt"]
        assert len(leftovers) == 1 and leftovers[0].startswith("._probe-")
        assert store.names() == ["notes.txt"]
        assert store.remove_temp_files() == leftovers
        assert _files_under(tmp_path) == ["notes.txt"]

    def test_remote_probe_file_is_swept(self, monkeypatch: Any) -> None:
        """On a remote store (memory://) the leftover probe object at the top is removed by
        remove_temp_files; other objects stay."""
        import uuid

        store = FsspecCheckpointStore(f"memory://killed-probe-{uuid.uuid4().hex}")
        store.write("notes.txt", b"mine")
        store.write("sub/._probe-0.tmp.keep", b"not a probe file")
        self._killed_probe(store, monkeypatch)
        assert store.names() == ["notes.txt", "sub/._probe-0.tmp.keep"]
        removed = store.remove_temp_files()
        assert len(removed) == 1 and removed[0].startswith("._probe-")
        assert store.remove_temp_files() == []
        everything = store.fs.find(store._root)
        assert sorted(p.rsplit("/", 1)[-1] for p in everything) == [
            "._probe-0.tmp.keep", "notes.txt"]

    @pytest.mark.s3
    def test_s3_probe_file_is_swept(self, s3_bucket_url: str, moto_s3: dict[str, Any],
                                    monkeypatch: Any) -> None:
        """On S3 the leftover probe object is removed by remove_temp_files."""
        store = FsspecCheckpointStore(s3_bucket_url, moto_s3)
        store.write("notes.txt", b"mine")
        self._killed_probe(store, monkeypatch)
        removed = store.remove_temp_files()
        assert len(removed) == 1 and removed[0].startswith("._probe-")
        store.fs.invalidate_cache()
        assert [p.rsplit("/", 1)[-1] for p in store.fs.find(store._root)] == ["notes.txt"]
