"""Tests of :mod:`epochal._io`: torch objects to and from paths, URLs and file objects."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

import pytest
import torch

from epochal._io import (
    load_torch,
    read_bytes,
    save_torch,
    save_torch_into,
    save_torch_to_store,
    torch_bytes,
    torch_from_bytes,
    write_bytes,
)
from epochal.exceptions import CheckpointError

RAN: list[str] = []


def _ran(tag: str) -> str:
    RAN.append(tag)
    return tag


class _Payload:
    """An object whose unpickling would call :func:`_ran`: code a checkpoint must not run."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_ran, ("unpickled",))


def _weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3).state_dict()


def test_bytes_round_trip_on_a_local_path(tmp_path: Path) -> None:
    """write_bytes then read_bytes at a local path gives the bytes back, with no temporary
    file left beside them."""
    path = tmp_path / "sub" / "blob.bin"
    write_bytes(str(path), b"\x00weights\xff")
    assert read_bytes(str(path)) == b"\x00weights\xff"
    assert os.listdir(path.parent) == ["blob.bin"]


def test_bytes_round_trip_on_a_memory_url() -> None:
    """A memory:// URL goes through fsspec: bytes written there are read back."""
    url = f"memory://epochal-io-{uuid.uuid4().hex}/run/blob.bin"
    write_bytes(url, b"abc")
    assert read_bytes(url) == b"abc"


def test_overwrite_replaces_the_bytes(tmp_path: Path) -> None:
    """A second write at the same path replaces the first whole."""
    path = str(tmp_path / "blob.bin")
    write_bytes(path, b"a much longer first content")
    write_bytes(path, b"short")
    assert read_bytes(path) == b"short"


def test_reading_nothing_names_the_path(tmp_path: Path) -> None:
    """read_bytes of a missing file raises FileNotFoundError whose message holds the path."""
    path = tmp_path / "missing.ckpt"
    with pytest.raises(FileNotFoundError, match=r"missing\.ckpt"):
        read_bytes(str(path))


def test_torch_bytes_round_trip() -> None:
    """torch_from_bytes(torch_bytes(x)) equals x for a state dict, bit for bit."""
    weights = _weights()
    loaded = torch_from_bytes(torch_bytes(weights))
    assert loaded.keys() == weights.keys()
    for key, tensor in weights.items():
        assert torch.equal(loaded[key], tensor)
        assert loaded[key].device.type == "cpu"


def test_garbage_is_a_checkpoint_error_naming_the_source() -> None:
    """Bytes that are not a torch checkpoint raise CheckpointError naming the source."""
    with pytest.raises(CheckpointError, match=r"saves/last\.ckpt is not a readable torch"):
        torch_from_bytes(b"not a checkpoint", source="saves/last.ckpt")


def test_truncated_checkpoint_is_a_checkpoint_error() -> None:
    """A checkpoint cut in half (a torn copy) raises CheckpointError, not a bare error."""
    data = torch_bytes(_weights())
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        torch_from_bytes(data[: len(data) // 2], source="half.ckpt")


def test_a_pickled_object_is_refused_without_running_it() -> None:
    """A checkpoint holding an object whose unpickling would run code is refused with
    CheckpointError, and the code does not run."""
    buffer = io.BytesIO()
    torch.save({"weights": _weights(), "payload": _Payload()}, buffer)
    RAN.clear()
    with pytest.raises(CheckpointError, match=r"Refused to load evil\.ckpt"):
        torch_from_bytes(buffer.getvalue(), source="evil.ckpt")
    assert RAN == []


def test_save_and_load_through_a_path(tmp_path: Path) -> None:
    """save_torch/load_torch accept str and PathLike paths and round-trip the object."""
    state = {"epoch": 3, "weights": _weights()}
    save_torch(state, tmp_path / "state.ckpt")  # type: ignore[arg-type]
    loaded = load_torch(str(tmp_path / "state.ckpt"))
    assert loaded["epoch"] == 3
    assert torch.equal(loaded["weights"]["weight"], state["weights"]["weight"])


def test_save_to_a_path_streams_and_a_failed_save_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path is written through the store's streaming write (never as whole bytes), and a
    save that fails half-way (here ``torch.save`` raises) leaves the old file and no
    temporary file."""
    from epochal_adapters.storage import FsspecCheckpointStore

    def whole_bytes(*args: object, **kwargs: object) -> None:
        raise AssertionError("save_torch wrote the whole bytes instead of streaming")

    path = tmp_path / "w.ckpt"
    with monkeypatch.context() as patch:
        patch.setattr(FsspecCheckpointStore, "write", whole_bytes)
        save_torch(_weights(), str(path))
        assert set(load_torch(str(path))) == {"weight", "bias"}
        before = path.read_bytes()

        class Unsaveable:
            def __reduce__(self) -> tuple[object, tuple[()]]:
                raise RuntimeError("cannot pickle this")

        with pytest.raises(RuntimeError, match="cannot pickle"):
            save_torch({"weight": torch.ones(1000), "bad": Unsaveable()}, str(path))
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["w.ckpt"]


def test_save_and_load_through_a_file_object() -> None:
    """A binary file object is written and read as is (no store involved)."""
    buffer = io.BytesIO()
    save_torch({"step": torch.tensor(7)}, buffer)
    buffer.seek(0)
    assert int(load_torch(buffer)["step"]) == 7


def test_load_torch_of_a_missing_path_raises_file_not_found(tmp_path: Path) -> None:
    """load_torch of a missing file raises FileNotFoundError, not CheckpointError."""
    with pytest.raises(FileNotFoundError):
        load_torch(str(tmp_path / "nothing.ckpt"))


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_an_error_of_the_file_is_raised_as_itself(error: BaseException) -> None:
    """torch.save's zip writer finishes its archive on the way out of an error and raises a
    RuntimeError of its own; save_torch_into raises the file's error instead (a full disk
    stays an OSError with its errno, an interrupt an interrupt)."""

    class FullDisk(io.BytesIO):
        def write(self, data: object) -> int:
            if self.tell() > 500:
                raise error
            return super().write(data)  # type: ignore[arg-type]

    with pytest.raises(type(error)) as caught:
        save_torch_into(FullDisk(), {"w": torch.ones(1000)})
    assert caught.value is error


def test_save_torch_into_counts_and_hashes_what_torch_save_writes() -> None:
    """Size and SHA-256 are those of the bytes torch.save produces."""
    import hashlib

    buffer = io.BytesIO()
    size, digest = save_torch_into(buffer, _weights(), hashed=True)
    assert buffer.getvalue() == torch_bytes(_weights())
    assert (size, digest) == (len(buffer.getvalue()),
                              hashlib.sha256(buffer.getvalue()).hexdigest())


class _WriteOnlyStore:
    """A store with ``write`` and no optional ``open_write``: whole bytes only."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def write(self, name: str, data: bytes) -> None:
        self.blobs[name] = data


@pytest.mark.parametrize("streaming", [True, False], ids=["open_write", "write only"])
def test_save_torch_to_store_gives_the_same_bytes_size_and_hash_either_way(
    streaming: bool,
) -> None:
    """A store with open_write is streamed into, one without gets whole bytes; the stored
    file, the size and the SHA-256 are those of torch.save's bytes in both cases, and the
    hash is left empty unless asked for."""
    import hashlib

    from epochal.testing import MemoryCheckpointStore

    store = MemoryCheckpointStore() if streaming else _WriteOnlyStore()
    expected = torch_bytes(_weights())
    size, digest = save_torch_to_store(store, "w.pt", _weights(), hashed=True)
    assert store.blobs["w.pt"] == expected
    assert (size, digest) == (len(expected), hashlib.sha256(expected).hexdigest())
    assert save_torch_to_store(store, "v.pt", _weights()) == (len(expected), "")
