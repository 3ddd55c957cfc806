"""Saving and loading torch objects at paths, fsspec URLs or file objects, crash-safely.

Paths and URLs go through the storage adapter (``epochal_adapters.storage.open_store``, the
one place that turns a path or URL into a store): a local file is
written to a temporary file beside it, fsynced and renamed; a remote object is one upload.
Loading always uses ``torch.load(weights_only=True)`` mapped to the CPU: a checkpoint cannot
run code.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Mapping
from typing import Any, BinaryIO

import torch

from epochal.exceptions import CheckpointError

__all__ = [
    "load_torch", "read_bytes", "save_torch", "save_torch_into", "save_torch_to_store",
    "torch_bytes", "torch_from_bytes", "write_bytes",
]


def _store_and_name(path: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    from epochal_adapters.storage import open_store, split_url

    parent, name = split_url(path)
    return open_store(parent, dict(storage_options) if storage_options else None), name


def write_bytes(
    path: str, data: bytes, *, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Write ``data`` at a path or fsspec URL, atomically (old bytes survive a failure)."""
    store, name = _store_and_name(str(path), storage_options)
    store.write(name, data)


def read_bytes(path: str, *, storage_options: Mapping[str, Any] | None = None) -> bytes:
    """Read the bytes at a path or fsspec URL.

    Raises:
        FileNotFoundError: Nothing is there (the message names the URL).
    """
    store, name = _store_and_name(str(path), storage_options)
    data: bytes = store.read(name)
    return data


class _CountingWriter:
    """A binary file that forwards each write to ``file``, counts (and optionally hashes) it,
    and remembers the exception a write raised."""

    def __init__(self, file: BinaryIO, *, hashed: bool) -> None:
        self.file = file
        self.size = 0
        self.hash = hashlib.sha256() if hashed else None
        self.error: BaseException | None = None

    def write(self, data: Any) -> int:
        view = memoryview(data)
        try:
            self.file.write(view)
        except BaseException as exc:
            self.error = exc
            raise
        if self.hash is not None:
            self.hash.update(view)
        self.size += view.nbytes
        return view.nbytes

    def flush(self) -> None:
        self.file.flush()


def save_torch_into(file: BinaryIO, obj: Any, *, hashed: bool = False) -> tuple[int, str]:
    """``torch.save(obj, file)``, counting what it writes.

    An exception raised by ``file.write`` (a full disk, an interrupt) is raised as itself:
    ``torch.save``'s zip writer would otherwise replace it with a ``RuntimeError`` about the
    archive's position when it finishes the archive on the way out.

    Args:
        file: A binary file object with ``write`` (and ``flush``).
        obj: What to save.
        hashed: Also compute the SHA-256 of the bytes.

    Returns:
        ``(size, sha256)``: the bytes written and their hex SHA-256 (``""`` unless
        ``hashed``).
    """
    writer = _CountingWriter(file, hashed=hashed)
    try:
        torch.save(obj, writer)  # type: ignore[arg-type]
    except BaseException:
        if writer.error is not None:
            raise writer.error from None
        raise
    return writer.size, writer.hash.hexdigest() if writer.hash is not None else ""


def save_torch_to_store(store: Any, name: str, obj: Any, *, hashed: bool = False
                        ) -> tuple[int, str]:
    """``torch.save(obj)`` as ``name`` in a :class:`~epochal.ports.CheckpointStore`.

    Streamed into the store when it has the optional ``open_write`` (no whole file in
    memory), else serialized to bytes and written with ``write``; the stored bytes are the
    same either way.

    Args:
        store: A ``CheckpointStore``.
        name: The file's name in the store.
        obj: What to save.
        hashed: Also compute the SHA-256 of the bytes.

    Returns:
        ``(size, sha256)``: the file's size in bytes and its hex SHA-256 (``""`` unless
        ``hashed``).
    """
    open_write = getattr(store, "open_write", None)
    if open_write is None:
        data = torch_bytes(obj)
        store.write(name, data)
        return len(data), hashlib.sha256(data).hexdigest() if hashed else ""
    with open_write(name) as file:
        return save_torch_into(file, obj, hashed=hashed)


def torch_bytes(obj: Any) -> bytes:
    """``torch.save(obj)`` into bytes."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _unpickler_detail(exc: BaseException) -> str:
    """The line of torch's weights-only error that says what was wrong (its first line is
    advice about ``weights_only`` that does not apply here)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip()
            if rest:
                return rest.split(" Please use", 1)[0]
            return lines[index + 1] if index + 1 < len(lines) else line
    return lines[0] if lines else type(exc).__name__


def torch_from_bytes(data: bytes, *, source: str = "<bytes>") -> Any:
    """``torch.load(weights_only=True, map_location='cpu')`` from bytes.

    Raises:
        CheckpointError: The bytes are not a torch checkpoint (truncated, corrupt), or the
            checkpoint holds a pickled object that would run code; the message names
            ``source``.
    """
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unpickler_detail(exc)
        if "Unsupported global" not in detail:
            # Not a pickled object outside the allow-list: the bytes are not a pickle at all.
            raise CheckpointError(
                f"{source} is not a readable torch checkpoint ({len(data)} bytes; truncated "
                f"or corrupt?). Expected a file written by torch.save. Detail: {detail}"
            ) from exc
        raise CheckpointError(
            f"Refused to load {source}: it holds a pickled object outside the weights-only "
            f"allow-list (loading it could run code). Expected tensors, numbers, strings and "
            f"containers of them. Detail: {detail}"
        ) from exc
    except (RuntimeError, EOFError, ValueError, OSError, KeyError) as exc:
        raise CheckpointError(
            f"{source} is not a readable torch checkpoint ({len(data)} bytes; truncated or "
            f"corrupt?). Expected a file written by torch.save. Detail: {exc}"
        ) from exc


def save_torch(
    obj: Any, f: str | BinaryIO, *, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Save ``obj`` with ``torch.save`` to a path/URL (crash-safe) or a binary file object.

    A local path is streamed to its temporary file (the store's ``open_write``): no copy of
    the file is held in memory.
    """
    if isinstance(f, (str, bytes)) or hasattr(f, "__fspath__"):
        store, name = _store_and_name(str(f if not isinstance(f, bytes) else f.decode()),
                                      storage_options)
        save_torch_to_store(store, name, obj)
    else:
        torch.save(obj, f)


def load_torch(f: str | BinaryIO, *, storage_options: Mapping[str, Any] | None = None) -> Any:
    """Load what :func:`save_torch` saved (weights only, to the CPU).

    Raises:
        FileNotFoundError: No file at the path/URL.
        CheckpointError: See :func:`torch_from_bytes`.
    """
    if isinstance(f, (str, bytes)) or hasattr(f, "__fspath__"):
        path = str(f if not isinstance(f, bytes) else f.decode())
        return torch_from_bytes(read_bytes(path, storage_options=storage_options), source=path)
    return torch_from_bytes(f.read(), source=getattr(f, "name", "<file object>"))
