"""Contract suite for the ``CheckpointStore`` port, run against every implementation.

Implementations: the ``MemoryCheckpointStore`` fake, and ``FsspecCheckpointStore`` on a local
directory (plain path and ``file://`` URL), on ``memory://`` and on S3 (a moto server on
127.0.0.1, marked ``s3``). To check a new adapter, add a parameter to ``store_factory``.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem
from hypothesis import given, settings
from hypothesis import strategies as st

from epochal.ports import CheckpointStore
from epochal.testing import MemoryCheckpointStore
from epochal_adapters.storage import FsspecCheckpointStore

#: A small alphabet of names: flat and nested, none a directory of another (a local
#: filesystem cannot hold both ``d`` and ``d/a``).
NAMES = ("a", "b.ckpt", "d/a", "d/b", "d/e/f.ckpt")

INVALID_NAMES = (
    "",
    "/abs.ckpt",
    "../up.ckpt",
    "a/../b.ckpt",
    "a//b.ckpt",
    "a/",
    "./a.ckpt",
    "a\\b.ckpt",
)


@dataclass(frozen=True)
class StoreFactory:
    """Makes fresh, empty stores of one kind; ``max_examples`` caps Hypothesis for slow kinds."""

    kind: str
    make: Callable[[], CheckpointStore]
    max_examples: int | None = None


@pytest.fixture(
    params=[
        "memory-fake",
        "local-path",
        "file-url",
        "memory-url",
        pytest.param("s3", marks=pytest.mark.s3),
    ]
)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory of fresh, empty stores of each implementation."""
    kind: str = request.param
    if kind == "memory-fake":
        yield StoreFactory(kind=kind, make=MemoryCheckpointStore)
    elif kind == "local-path":
        yield StoreFactory(
            kind=kind,
            make=lambda: FsspecCheckpointStore(str(tmp_path / uuid.uuid4().hex / "store")),
        )
    elif kind == "file-url":
        yield StoreFactory(
            kind=kind, make=lambda: FsspecCheckpointStore((tmp_path / uuid.uuid4().hex).as_uri())
        )
    elif kind == "memory-url":
        roots: list[str] = []

        def make_memory() -> CheckpointStore:
            roots.append(f"epochal-contract-{uuid.uuid4().hex}")
            return FsspecCheckpointStore(f"memory://{roots[-1]}")

        yield StoreFactory(kind=kind, make=make_memory)
        memory_fs = fsspec.filesystem("memory")
        for root in roots:
            if memory_fs.exists(f"/{root}"):
                memory_fs.rm(f"/{root}", recursive=True)
    elif kind == "s3":
        bucket_url: str = request.getfixturevalue("s3_bucket_url")
        options: dict[str, Any] = request.getfixturevalue("moto_s3")
        yield StoreFactory(
            kind=kind,
            make=lambda: FsspecCheckpointStore(f"{bucket_url}/{uuid.uuid4().hex}", options),
            max_examples=5,
        )
    else:  # pragma: no cover - a new parameter without a branch
        raise AssertionError(f"unknown store kind {kind!r}")


@pytest.fixture
def store(store_factory: StoreFactory) -> CheckpointStore:
    """A fresh, empty store of the parametrized implementation."""
    return store_factory.make()


@contextmanager
def failing_writes(
    store: CheckpointStore, name: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Make writes of ``name`` fail inside the block, the way each implementation really fails.

    The fake fails through ``fail_writes``; a local fsspec store fails at the rename
    (``os.replace``), after the new bytes are in the temporary file; a remote fsspec store fails
    in its single upload (``pipe_file``).
    """

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(f"simulated failure while writing {name!r}")

    if isinstance(store, MemoryCheckpointStore):
        store.fail_writes.add(name)
        try:
            yield
        finally:
            store.fail_writes.discard(name)
    elif isinstance(store, FsspecCheckpointStore):
        with monkeypatch.context() as patch:
            if isinstance(store.fs, LocalFileSystem):
                patch.setattr(os, "replace", refuse)
            else:
                patch.setattr(store.fs, "pipe_file", refuse)
            yield
    else:  # pragma: no cover - a new implementation needs a way to fail
        raise AssertionError(f"no failure injection for {type(store).__name__}")


def state(store: CheckpointStore) -> dict[str, bytes]:
    """Everything a store holds, as a dict from name to bytes."""
    return {name: store.read(name) for name in store.names()}


class TestCheckpointStoreContract:
    """The ``CheckpointStore`` contract, for every implementation."""

    def test_implements_the_port(self, store: CheckpointStore) -> None:
        """The store is recognised as a ``CheckpointStore``."""
        assert isinstance(store, CheckpointStore)

    def test_read_returns_written_bytes(self, store: CheckpointStore) -> None:
        """Bytes written under a name are read back unchanged, for flat and nested names."""
        payload = bytes(range(256)) * 4
        store.write("weights.ckpt", payload)
        store.write("checkpoints/epoch_1/weights.ckpt", b"")
        assert store.read("weights.ckpt") == payload
        assert store.read("checkpoints/epoch_1/weights.ckpt") == b""

    def test_write_accepts_bytes_like_data(self, store: CheckpointStore) -> None:
        """A bytearray or memoryview is stored as the bytes it holds."""
        store.write("a", bytearray(b"from bytearray"))
        store.write("b", memoryview(b"from memoryview"))  # type: ignore[arg-type]
        assert state(store) == {"a": b"from bytearray", "b": b"from memoryview"}

    def test_overwrite_replaces_bytes(self, store: CheckpointStore) -> None:
        """A second write of a name replaces its bytes entirely (a shorter payload leaves no tail)."""
        store.write("last.ckpt", b"first, longer payload")
        store.write("last.ckpt", b"second")
        assert store.read("last.ckpt") == b"second"
        assert store.names() == ["last.ckpt"]

    def test_read_missing_raises_file_not_found_naming_it(self, store: CheckpointStore) -> None:
        """Reading a name never written raises FileNotFoundError whose message has the name."""
        store.write("present.ckpt", b"x")
        with pytest.raises(FileNotFoundError, match=re.escape("missing/epoch_9.ckpt")):
            store.read("missing/epoch_9.ckpt")

    def test_names_of_empty_store_is_empty(self, store: CheckpointStore) -> None:
        """A fresh store lists no names, with or without a prefix."""
        assert store.names() == []
        assert store.names("checkpoints/") == []

    def test_names_are_sorted_recursive_and_relative(self, store: CheckpointStore) -> None:
        """names() lists every written name, nested ones included, relative and sorted."""
        for name in ["z.ckpt", "b/c/d.ckpt", "a.ckpt", "b/a.ckpt"]:
            store.write(name, name.encode())
        assert store.names() == ["a.ckpt", "b/a.ckpt", "b/c/d.ckpt", "z.ckpt"]

    def test_names_filters_by_string_prefix(self, store: CheckpointStore) -> None:
        """names(prefix) lists exactly the names that start with prefix, directory or not."""
        for name in ["ckpt/epoch_1.ckpt", "ckpt/epoch_2.ckpt", "ckpt/best.ckpt", "log.tsv"]:
            store.write(name, b"x")
        store.write("ckpt/deep/epoch_3.ckpt", b"x")
        assert store.names("ckpt/") == [
            "ckpt/best.ckpt",
            "ckpt/deep/epoch_3.ckpt",
            "ckpt/epoch_1.ckpt",
            "ckpt/epoch_2.ckpt",
        ]
        assert store.names("ckpt/epoch_") == ["ckpt/epoch_1.ckpt", "ckpt/epoch_2.ckpt"]
        assert store.names("log") == ["log.tsv"]
        assert store.names("nothing/") == []

    def test_delete_removes_name(self, store: CheckpointStore) -> None:
        """After delete, the name is not listed, does not exist and cannot be read."""
        store.write("keep.ckpt", b"k")
        store.write("old/epoch_1.ckpt", b"o")
        store.delete("old/epoch_1.ckpt")
        assert store.names() == ["keep.ckpt"]
        assert not store.exists("old/epoch_1.ckpt")
        with pytest.raises(FileNotFoundError):
            store.read("old/epoch_1.ckpt")

    def test_delete_missing_is_not_an_error(self, store: CheckpointStore) -> None:
        """Deleting a name that was never written (or already deleted) does nothing."""
        store.delete("never/written.ckpt")
        store.write("once.ckpt", b"x")
        store.delete("once.ckpt")
        store.delete("once.ckpt")
        assert store.names() == []

    def test_exists_is_true_only_for_written_names(self, store: CheckpointStore) -> None:
        """exists() is true for written names, false for missing ones and for directories."""
        store.write("d/e/f.ckpt", b"x")
        assert store.exists("d/e/f.ckpt")
        assert not store.exists("d/e/g.ckpt")
        assert not store.exists("d/e")
        assert not store.exists("d")

    def test_url_names_the_object(self, store: CheckpointStore) -> None:
        """url(name) is a string that ends with the name."""
        assert store.url("ckpt/epoch_1.ckpt").endswith("ckpt/epoch_1.ckpt")

    def test_failed_overwrite_keeps_old_bytes(
        self, store: CheckpointStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A write that fails raises OSError and leaves the previous bytes and no temp file."""
        store.write("last.ckpt", b"old bytes")
        store.write("other.ckpt", b"other")
        with failing_writes(store, "last.ckpt", monkeypatch), pytest.raises(OSError):
            store.write("last.ckpt", b"new bytes that must not appear")
        assert state(store) == {"last.ckpt": b"old bytes", "other.ckpt": b"other"}

    def test_failed_first_write_leaves_nothing(
        self, store: CheckpointStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failed write of a new name raises OSError and leaves no object and no temp file."""
        with failing_writes(store, "d/new.ckpt", monkeypatch), pytest.raises(OSError):
            store.write("d/new.ckpt", b"new")
        assert not store.exists("d/new.ckpt")
        assert store.names() == []

    def test_non_bytes_data_raises_type_error_and_keeps_old_bytes(
        self, store: CheckpointStore
    ) -> None:
        """Writing something that is not bytes raises TypeError; the old bytes stay."""
        store.write("last.ckpt", b"old")
        with pytest.raises(TypeError):
            store.write("last.ckpt", "a str is not bytes")  # type: ignore[arg-type]
        assert state(store) == {"last.ckpt": b"old"}

    def test_open_write_streams_the_bytes_of_a_name(self, store: CheckpointStore) -> None:
        """What the block writes, in several pieces, becomes the name's bytes, as ``write``
        would store them (the optional streaming write; every store here has it)."""
        store.write("state/e.state", b"old")
        with store.open_write("state/e.state") as file:  # type: ignore[attr-defined]
            file.write(b"new ")
            file.write(memoryview(b"bytes"))
            file.flush()
            assert store.read("state/e.state") == b"old"  # nothing visible before the end
        assert state(store) == {"state/e.state": b"new bytes"}

    def test_open_write_that_raises_keeps_old_bytes(self, store: CheckpointStore) -> None:
        """An exception inside the block propagates and leaves the old bytes (or no object)
        and no temporary file."""
        store.write("last.ckpt", b"old bytes")
        for name in ("last.ckpt", "d/new.ckpt"):
            with pytest.raises(KeyError), store.open_write(name) as file:  # type: ignore[attr-defined]
                file.write(b"half of the new")
                raise KeyError("serializer failed")
        assert state(store) == {"last.ckpt": b"old bytes"}

    def test_open_write_that_fails_raises_os_error_and_keeps_old_bytes(
        self, store: CheckpointStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A streamed write the store fails to complete raises OSError naming the URL and
        leaves the old bytes."""
        store.write("last.ckpt", b"old bytes")
        with failing_writes(store, "last.ckpt", monkeypatch), pytest.raises(OSError) as caught, \
                store.open_write("last.ckpt") as file:  # type: ignore[attr-defined]
            file.write(b"new bytes that must not appear")
        assert state(store) == {"last.ckpt": b"old bytes"}
        if not isinstance(store, MemoryCheckpointStore):
            assert store.url("last.ckpt") in str(caught.value)

    def test_open_write_wraps_any_store_error_with_the_url(
        self, store: CheckpointStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A remote upload that fails with an error that is not an OSError (botocore's
        connection errors) comes back as an OSError naming the URL, as from ``write``; a
        local disk error raised by the block's writes too, with its errno."""
        if not isinstance(store, FsspecCheckpointStore):
            pytest.skip("the fake has no disk and no remote endpoint")
        store.write("last.ckpt", b"old")
        if isinstance(store.fs, LocalFileSystem):
            with pytest.raises(OSError) as caught, \
                    store.open_write("last.ckpt"):  # type: ignore[attr-defined]
                raise OSError(28, "No space left on device")
            assert caught.value.errno == 28
        else:
            def unreachable(*args: object, **kwargs: object) -> None:
                raise RuntimeError("endpoint unreachable")

            monkeypatch.setattr(store.fs, "pipe_file", unreachable)
            with pytest.raises(OSError) as caught, \
                    store.open_write("last.ckpt") as file:  # type: ignore[attr-defined]
                file.write(b"new")
            monkeypatch.undo()
        assert store.url("last.ckpt") in str(caught.value)
        assert state(store) == {"last.ckpt": b"old"}

    def _staged(self, store: CheckpointStore, name: str) -> Any:
        """``store.open_staged(name)``, or a skip for a store that cannot stage."""
        open_staged = getattr(store, "open_staged", None)
        staged = open_staged(name) if open_staged is not None else None
        if staged is None:
            pytest.skip("this store does not stage its writes (optional)")
        return staged

    def test_open_staged_publishes_the_staged_bytes(self, store: CheckpointStore) -> None:
        """What is written to a staged write is invisible (neither the name nor a listed
        temporary file) until ``publish``, then it is the name's bytes, as ``write`` would
        store them."""
        store.write("state/e.state", b"old")
        staged = self._staged(store, "state/e.state")
        staged.write(b"new ")
        staged.write(memoryview(b"bytes"))
        staged.flush()
        assert state(store) == {"state/e.state": b"old"}
        staged.publish()
        assert state(store) == {"state/e.state": b"new bytes"}
        staged.discard()  # after publish: nothing happens
        assert state(store) == {"state/e.state": b"new bytes"}
        with pytest.raises(ValueError, match="already published"):
            staged.publish()

    def test_open_staged_publish_from_another_thread(self, store: CheckpointStore) -> None:
        """A write staged on one thread can be published by another (the background commit's
        writer thread)."""
        import threading

        staged = self._staged(store, "d/new.ckpt")
        staged.write(b"staged here")
        thread = threading.Thread(target=staged.publish)
        thread.start()
        thread.join(10)
        assert state(store) == {"d/new.ckpt": b"staged here"}

    def test_open_staged_discard_keeps_old_bytes(self, store: CheckpointStore) -> None:
        """``discard`` removes the staged bytes and leaves the old bytes (or no object);
        publishing afterwards is refused."""
        store.write("last.ckpt", b"old bytes")
        for name in ("last.ckpt", "d/new.ckpt"):
            staged = self._staged(store, name)
            staged.write(b"half of the new")
            staged.discard()
            staged.discard()
            with pytest.raises(ValueError, match="already discarded"):
                staged.publish()
        assert state(store) == {"last.ckpt": b"old bytes"}
        if isinstance(store, FsspecCheckpointStore) and isinstance(store.fs, LocalFileSystem):
            assert store.remove_temp_files() == []  # nothing left behind

    def test_open_staged_failed_publish_raises_os_error_and_keeps_old_bytes(
        self, store: CheckpointStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A publish the store fails to complete raises OSError naming the URL, leaves the
        old bytes and removes the staged bytes."""
        store.write("last.ckpt", b"old bytes")
        staged = self._staged(store, "last.ckpt")
        staged.write(b"new bytes that must not appear")
        with failing_writes(store, "last.ckpt", monkeypatch), pytest.raises(OSError) as caught:
            staged.publish()
        assert store.url("last.ckpt") in str(caught.value)
        assert state(store) == {"last.ckpt": b"old bytes"}
        if isinstance(store, FsspecCheckpointStore) and isinstance(store.fs, LocalFileSystem):
            assert store.remove_temp_files() == []

    def test_open_staged_refuses_an_invalid_name(self, store: CheckpointStore) -> None:
        """An invalid name raises ValueError before anything is written."""
        if getattr(store, "open_staged", None) is None:
            pytest.skip("this store does not stage its writes (optional)")
        with pytest.raises(ValueError, match="name"):
            store.open_staged("../x.ckpt")  # type: ignore[attr-defined]
        assert store.names() == []

    def test_open_write_refuses_an_invalid_name_before_writing(
        self, store: CheckpointStore
    ) -> None:
        """An invalid name raises ValueError when the block is entered."""
        with pytest.raises(ValueError, match="name"), \
                store.open_write("../x.ckpt"):  # type: ignore[attr-defined]
            pass
        assert store.names() == []

    @pytest.mark.parametrize("name", INVALID_NAMES)
    def test_invalid_name_raises_value_error(
        self, store: CheckpointStore, name: str, request: pytest.FixtureRequest
    ) -> None:
        """A name that is empty, absolute, has '..' or empty parts, or a backslash is refused."""
        with pytest.raises(ValueError, match="name"):
            store.write(name, b"x")
        with pytest.raises(ValueError, match="name"):
            store.read(name)
        assert store.names() == []

    def test_property_state_equals_dict_model(self, store_factory: StoreFactory) -> None:
        """After any sequence of writes and deletes, the store holds what a dict would."""
        operations = st.lists(
            st.one_of(
                st.tuples(st.just("write"), st.sampled_from(NAMES), st.binary(max_size=64)),
                st.tuples(st.just("delete"), st.sampled_from(NAMES), st.just(b"")),
            ),
            max_size=12,
        )
        current = settings()
        max_examples = min(current.max_examples, store_factory.max_examples or 10**9)

        @settings(current, max_examples=max_examples)
        @given(ops=operations)
        def check(ops: list[tuple[str, str, bytes]]) -> None:
            store = store_factory.make()
            model: dict[str, bytes] = {}
            for op, name, data in ops:
                if op == "write":
                    store.write(name, data)
                    model[name] = data
                else:
                    store.delete(name)
                    model.pop(name, None)
            assert state(store) == model
            assert store.names() == sorted(model)
            assert {name for name in NAMES if store.exists(name)} == set(model)

        check()
