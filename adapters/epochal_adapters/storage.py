"""Checkpoint storage on any fsspec URL: local paths, ``file://``, ``memory://``, ``s3://``.

``FsspecCheckpointStore`` implements the ``epochal.ports.CheckpointStore`` port. Writes are
crash-safe: on the local filesystem a write goes to a hidden temporary file in the target
directory, is flushed and ``fsync``-ed, then renamed onto the final name with ``os.replace``;
on remote filesystems (S3 and others) a write is a single upload, so no partial object ever
appears under the final key.

Example:
    >>> store = FsspecCheckpointStore("memory://epochal-doc")
    >>> store.write("checkpoints/epoch_1.ckpt", b"weights")
    >>> store.names()
    ['checkpoints/epoch_1.ckpt']
    >>> store.url("checkpoints/epoch_1.ckpt")
    'memory://epochal-doc/checkpoints/epoch_1.ckpt'
    >>> store.delete("checkpoints/epoch_1.ckpt")

S3 needs the ``s3`` extra (``pip install epochal[s3]``). Credentials, endpoint and retry policy
go in ``storage_options``; they are handed to ``s3fs.S3FileSystem``. To fail fast when the
endpoint may be down (tests, health checks), shorten botocore's timeouts and retries::

    FsspecCheckpointStore(
        "s3://bucket/run-1",
        storage_options={
            "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"},
            "config_kwargs": {"connect_timeout": 1, "read_timeout": 5,
                              "retries": {"max_attempts": 1}},
        },
    )
"""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import fsspec
import fsspec.core
from fsspec.implementations.local import LocalFileSystem

from epochal.ports import CheckpointStore
from epochal_adapters._staging import StagedUpload, StagedWrite
from epochal_adapters._storage_paths import (
    OBJECT_STORE_PROTOCOLS,
    PROBE_PREFIX,
    TEMP_SUFFIX,
    is_temp_file,
    strip_trailing_slashes,
    validate_name,
    validate_prefix,
    with_url,
)

__all__ = ["FsspecCheckpointStore", "StagedUpload", "StagedWrite", "open_store", "split_url"]

class FsspecCheckpointStore:
    """A ``CheckpointStore`` under one fsspec URL: a local directory, ``memory://``, ``s3://``.

    Names are ``/``-separated paths relative to ``url`` (``"checkpoints/epoch_3.ckpt"``).
    Writes are atomic per name: local writes go through a temporary file (``.<name>.<id>.tmp``
    in the same directory), ``fsync`` and ``os.replace``; remote writes are one upload.

    Args:
        url: Base location: a local path (``"saves/conv"``), ``file:///abs/dir``,
            ``memory://root``, ``s3://bucket/prefix`` or any URL fsspec understands. It need not
            exist yet; directories are made on the first write.
        storage_options: Keyword arguments for the fsspec filesystem (for S3: ``key``,
            ``secret``, ``client_kwargs={"endpoint_url": ...}``, ``config_kwargs``; see the
            module docstring for short timeouts). ``None`` means none.

    Raises:
        ValueError: fsspec does not know the URL's protocol.
        ImportError: The protocol's implementation is not installed (``s3://`` needs the
            ``s3`` extra).
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        url = os.fspath(url)
        if not isinstance(url, str) or not url:
            raise ValueError(f"a store URL must be a non-empty str, got {url!r}")
        self.storage_options: dict[str, Any] = dict(storage_options or {})
        fs, root = fsspec.core.url_to_fs(url, **self.storage_options)
        self._fs: Any = fs
        self._local = isinstance(fs, LocalFileSystem)
        self._root: str = strip_trailing_slashes(root) if root != "/" else ""
        protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
        self._object_store = bool(OBJECT_STORE_PROTOCOLS.intersection(protocols))
        if self._local:
            # fsspec made the path absolute; keep the user's choice of plain path or file://.
            given_protocol = fsspec.core.split_protocol(url)[0]
            self._base_url = f"file://{self._root}" if given_protocol else (self._root or "/")
        else:
            self._base_url = strip_trailing_slashes(url)

    @property
    def base_url(self) -> str:
        """The URL of the store's base location (absolute for local paths)."""
        return self._base_url

    @property
    def fs(self) -> Any:
        """The ``fsspec`` filesystem behind the store, for advanced use and for tests."""
        return self._fs

    def __repr__(self) -> str:
        return f"FsspecCheckpointStore({self._base_url!r})"

    def url(self, name: str) -> str:
        """The full URL of ``name``, for messages and for other libraries.

        Args:
            name: A store name such as ``"checkpoints/epoch_3.ckpt"``.

        Returns:
            The base URL and ``name`` joined with ``/`` (an absolute path for a store made
            from a plain local path).

        Raises:
            ValueError: ``name`` is not a valid store name.
        """
        validate_name(name)
        return self._join(self._base_url, name)

    @staticmethod
    def _join(base: str, name: str) -> str:
        return f"{base}{name}" if base.endswith("/") else f"{base}/{name}"

    def _path(self, name: str) -> str:
        """The filesystem path of ``name`` (protocol stripped), joined with ``/``."""
        return f"{self._root}/{name}"

    def write(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name``, atomically, replacing any previous bytes.

        Args:
            name: A store name such as ``"checkpoints/epoch_3.ckpt"``; missing parent
                directories are made.
            data: The bytes to store (``bytes``, ``bytearray`` or ``memoryview``).

        Raises:
            ValueError: ``name`` is not a valid store name.
            TypeError: ``data`` is not bytes-like.
            OSError: The write failed (disk full, permission, endpoint unreachable); the
                message contains the URL. The previous bytes, if any, are still in place.
        """
        validate_name(name)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"write() takes bytes, got {type(data).__name__} for {self.url(name)}; "
                "serialize first (e.g. torch.save into an io.BytesIO and pass .getvalue())"
            )
        url = self.url(name)
        try:
            if self._local:
                self._write_local(self._path(name), data)
            else:
                self._write_remote(self._path(name), bytes(data))
        except Exception as exc:
            raise with_url(exc, "write", url) from exc

    @contextlib.contextmanager
    def open_write(self, name: str) -> Iterator[BinaryIO]:
        """Stream the bytes of ``name``: what the block writes to the yielded binary file
        becomes ``name`` atomically when it exits normally, as :meth:`write` would store it.

        A local file is streamed to its temporary file (nothing is held in memory); a remote
        object is buffered in memory and uploaded at the end, in one upload.

        Args:
            name: A store name, as for :meth:`write`.

        Yields:
            A binary file object with ``write`` and ``flush``.

        Raises:
            ValueError: ``name`` is not a valid store name (before anything is written).
            OSError: The write failed; the message contains the URL. As when the block raises
                anything, the previous bytes, if any, are still in place.
        """
        validate_name(name)
        url = self.url(name)
        if self._local:
            try:
                with self._local_file(self._path(name)) as file:
                    yield file
            except OSError as exc:  # the disk's errors, the block's writes included
                raise with_url(exc, "write", url) from exc
            return
        buffer = io.BytesIO()
        yield buffer  # what the block raises propagates as it is; nothing is uploaded
        try:
            self._write_remote(self._path(name), buffer.getvalue())
        except Exception as exc:  # as write(): e.g. botocore's connection errors
            raise with_url(exc, "write", url) from exc

    def _write_local(self, path: str, data: bytes | bytearray | memoryview) -> None:
        """Temp file in the same directory, flush, fsync, ``os.replace``, fsync the directory."""
        with self._local_file(path) as file:
            file.write(data)

    @staticmethod
    @contextlib.contextmanager
    def _local_file(path: str) -> Iterator[BinaryIO]:
        """The temporary file beside ``path`` to write; at a normal exit it is flushed,
        fsynced and renamed onto ``path`` (then the directory is fsynced); at an exception it
        is removed."""
        staged = StagedWrite(path)
        try:
            yield staged.file
        except BaseException:
            staged.discard()
            raise
        staged._finish()

    def open_staged(self, name: str) -> StagedWrite | StagedUpload:
        """Write the bytes of ``name`` now and make them ``name`` later (the optional
        ``open_staged`` of :class:`epochal.ports.CheckpointStore`).

        On the local filesystem a :class:`StagedWrite`: the bytes go to the temporary file
        beside ``name`` (the page cache: not this process's memory), and ``publish`` makes
        them durable and renames them onto ``name``, as :meth:`write` would store them.
        Elsewhere a :class:`StagedUpload`: the bytes go to an anonymous local spool file, and
        ``publish`` uploads them in one upload, as :meth:`write` would.

        Args:
            name: A store name, as for :meth:`write`.

        Returns:
            The staged write, with ``write``, ``flush``, ``publish`` and ``discard``.

        Raises:
            ValueError: ``name`` is not a valid store name.
            OSError: The temporary or spool file cannot be made; the message contains the
                URL.
        """
        validate_name(name)
        url = self.url(name)
        path = self._path(name)
        if self._local:
            try:
                return StagedWrite(path, url=url)
            except OSError as exc:
                raise with_url(exc, "write", url) from exc

        def upload(data: bytes) -> None:
            try:
                self._write_remote(path, data)
            except Exception as exc:  # as write(): e.g. botocore's connection errors
                raise with_url(exc, "write", url) from exc

        return StagedUpload(upload, url=url)

    def _write_remote(self, path: str, data: bytes) -> None:
        """One upload (``pipe_file``): the object appears whole or not at all."""
        if not self._object_store:
            parent = path.rsplit("/", 1)[0]
            if parent:
                self._fs.makedirs(parent, exist_ok=True)
        self._fs.pipe_file(path, data)
        self._fs.invalidate_cache(path)

    def read(self, name: str) -> bytes:
        """The bytes stored under ``name``.

        Args:
            name: A store name.

        Returns:
            The bytes of the last completed write of ``name``.

        Raises:
            ValueError: ``name`` is not a valid store name.
            FileNotFoundError: No object named ``name``; the message gives its URL.
            OSError: Reading failed otherwise; the message contains the URL.
        """
        validate_name(name)
        url = self.url(name)
        path = self._path(name)
        try:
            if self._local:
                with open(path, "rb") as file:
                    return file.read()
            data = self._fs.cat_file(path)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"no checkpoint named {name!r} at {url}; names() lists what this store holds"
            ) from exc
        except Exception as exc:
            raise with_url(exc, "read", url) from exc
        return bytes(data)

    def exists(self, name: str) -> bool:
        """Whether an object named ``name`` exists (a directory of that name does not count).

        Args:
            name: A store name.

        Returns:
            ``True`` when ``read(name)`` would find bytes.

        Raises:
            ValueError: ``name`` is not a valid store name.
            OSError: The check failed (e.g. endpoint unreachable); the message contains the URL.
        """
        validate_name(name)
        path = self._path(name)
        if self._local:
            return os.path.isfile(path)
        try:
            self._fs.invalidate_cache(path)
            # info(), not isfile(): isfile() answers False when the endpoint is unreachable.
            info = self._fs.info(path)
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise with_url(exc, "check", self.url(name)) from exc
        return bool(info.get("type") == "file")

    def names(self, prefix: str = "") -> list[str]:
        """Every stored name that starts with ``prefix``, sorted, listed recursively.

        Listing caches are refreshed first; temporary files of in-flight writes are skipped.

        Args:
            prefix: A string prefix of names (``"checkpoints/"``, ``"checkpoints/epoch_"``);
                ``""`` lists everything.

        Returns:
            Sorted names relative to the base URL, ``/``-separated.

        Raises:
            ValueError: ``prefix`` starts with ``/``, contains a backslash or a ``..`` part.
            OSError: Listing failed (e.g. endpoint unreachable); the message contains the URL.
        """
        validate_prefix(prefix)
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        top = f"{self._root}/{directory}" if directory else self._root
        try:
            if self._local:
                found = self._list_local(top)
            else:
                found = self._list_remote(top)
        except Exception as exc:
            raise with_url(exc, "list", self._base_url) from exc
        start = f"{self._root}/"
        names = (path[len(start) :] for path in found if path.startswith(start))
        return sorted(
            name
            for name in names
            if name.startswith(prefix) and not is_temp_file(name.rsplit("/", 1)[-1])
        )

    @staticmethod
    def _list_local(top: str) -> list[str]:
        found: list[str] = []
        for directory, _subdirectories, files in os.walk(top or "/"):
            base = directory.replace(os.sep, "/")
            found.extend(f"{base.rstrip('/')}/{file}" for file in files)
        return found

    def _list_remote(self, top: str) -> list[str]:
        self._fs.invalidate_cache()
        try:
            found = self._fs.find(top, withdirs=False, detail=False)
        except FileNotFoundError:
            return []
        return [str(path) for path in found]

    def delete(self, name: str) -> None:
        """Remove ``name``; a missing name is not an error.

        Args:
            name: A store name.

        Raises:
            ValueError: ``name`` is not a valid store name.
            OSError: Removing failed (permission, endpoint unreachable); the message contains
                the URL.
        """
        validate_name(name)
        path = self._path(name)
        try:
            if self._local:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                return
            self._rm_remote(path)
        except Exception as exc:
            raise with_url(exc, "delete", self.url(name)) from exc

    def _rm_remote(self, path: str) -> None:
        """One delete request; a missing object is not an error."""
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm_file(path)
        self._fs.invalidate_cache(path)

    def remove_temp_files(self) -> list[str]:
        """Delete the temporary files that killed writes left (``.name.XXXX.tmp``), and the
        probe files of a probe killed between its write and its delete (``._probe-XXXX.tmp``
        at the top).

        Local directories are swept recursively; a remote store (where a write is one upload)
        only has probe files, looked for at its top level. Call it when no other process
        writes to the store.

        Returns:
            The removed files' names, relative to the base URL.

        Raises:
            OSError: Listing or removing failed; the message contains the URL.
        """
        if not self._local:
            return self._remove_remote_probe_files()
        if not os.path.isdir(self._root or "/"):
            return []
        removed: list[str] = []
        start = f"{self._root}/"
        try:
            for path in self._list_local(self._root):
                if is_temp_file(path.rsplit("/", 1)[-1]) and path.startswith(start):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(path)
                    removed.append(path[len(start):])
        except Exception as exc:
            raise with_url(exc, "clean temporary files of", self._base_url) from exc
        return removed

    def _remove_remote_probe_files(self) -> list[str]:
        removed: list[str] = []
        start = f"{self._root}/"
        try:
            self._fs.invalidate_cache(self._root)
            try:
                found = self._fs.ls(self._root, detail=False)
            except FileNotFoundError:
                return []
            for path in found:
                name = str(path)[len(start):] if str(path).startswith(start) else ""
                if name.startswith(PROBE_PREFIX) and is_temp_file(name) and "/" not in name:
                    self._rm_remote(str(path))
                    removed.append(name)
            self._fs.invalidate_cache(self._root)
        except Exception as exc:
            raise with_url(exc, "clean probe files of", self._base_url) from exc
        return removed

    def probe(self) -> None:
        """Check, before any work, that the store can be written: a local directory exists
        or can be made, is a directory and accepts a file; a bucket exists and accepts a small
        write and delete.

        Raises:
            StorageError: The path and the problem, and what was expected.
        """
        from epochal.exceptions import StorageError

        url = self._base_url
        if self._local:
            root = self._root or "/"
            existing = root
            while existing and not os.path.exists(existing):
                existing = os.path.dirname(existing)
            if existing and not os.path.isdir(existing):
                raise StorageError(
                    f"Cannot use {url} as a directory: {existing} is an existing regular "
                    "file. Expected a directory path (or one that does not exist yet); pass "
                    "another path or move the file."
                )
        elif self._object_store:
            bucket = self._root.split("/", 1)[0]
            try:
                # info, not exists: s3fs's exists answers False for an unreachable endpoint.
                self._fs.invalidate_cache()
                self._fs.info(bucket)
                found = True
            except FileNotFoundError:
                found = False
            except PermissionError:
                found = True  # the bucket may not be listable; the write below decides
            except Exception as exc:
                raise StorageError(
                    f"Cannot reach {url}: {type(exc).__name__}: {exc}. Expected a reachable "
                    "endpoint (check storage_options: endpoint_url, credentials)."
                ) from exc
            if not found:
                raise StorageError(
                    f"Cannot use {url}: the bucket {bucket!r} does not exist. Expected an "
                    "existing bucket; create it first or fix the URL."
                )
        # Shaped as a temporary file: names() skips it, and remove_temp_files deletes it when
        # a kill left it behind.
        path = self._path(f"{PROBE_PREFIX}{uuid.uuid4().hex}{TEMP_SUFFIX}")
        try:
            try:
                if self._local:
                    self._write_local(path, b"")
                    os.remove(path)
                else:
                    self._write_remote(path, b"")
                    self._rm_remote(path)
            except Exception as exc:
                raise with_url(exc, "write", url) from exc
        except OSError as exc:
            reason = (
                "permission denied (read-only?)"
                if isinstance(exc, PermissionError) or getattr(exc, "errno", None) in (13, 30)
                else str(exc)
            )
            raise StorageError(
                f"Cannot write in {url}: {reason}. Expected a writable directory or bucket; "
                "fix its permissions or choose another location."
            ) from exc



def open_store(
    url_or_store: str | os.PathLike[str] | CheckpointStore,
    storage_options: Mapping[str, Any] | None = None,
) -> CheckpointStore:
    """A ``CheckpointStore`` for a URL, or the store itself when given one.

    Args:
        url_or_store: A URL or local path (made into an ``FsspecCheckpointStore``), or an
            object that already implements ``CheckpointStore`` (returned as is).
        storage_options: fsspec options for a URL (see ``FsspecCheckpointStore``).

    Returns:
        The store.

    Raises:
        ValueError: ``storage_options`` were given with a ready-made store (they would be
            ignored).
        TypeError: ``url_or_store`` is neither a URL/path nor a ``CheckpointStore``.
    """
    if isinstance(url_or_store, (str, os.PathLike)):
        return FsspecCheckpointStore(os.fspath(url_or_store), storage_options)
    if isinstance(url_or_store, CheckpointStore):
        if storage_options:
            raise ValueError(
                f"storage_options apply to a URL, but a ready-made store was given "
                f"({url_or_store!r}); configure that store instead or pass its URL"
            )
        return url_or_store
    raise TypeError(
        f"expected a URL, a local path or a CheckpointStore (write, read, exists, names, "
        f"delete, url), got {type(url_or_store).__name__}: {url_or_store!r}"
    )


def split_url(path: str) -> tuple[str, str]:
    """Split a file URL or path into its parent directory URL and its file name.

    Remote URLs are split on their last ``/`` (never through ``pathlib``); plain local paths
    with ``os.path``.

    Examples:
        >>> split_url("s3://bucket/run/last.ckpt")
        ('s3://bucket/run', 'last.ckpt')
        >>> split_url("file:///tmp/run/last.ckpt")
        ('file:///tmp/run', 'last.ckpt')
        >>> split_url("last.ckpt")
        ('.', 'last.ckpt')

    Args:
        path: A file URL (``s3://bucket/x/last.ckpt``, ``file:///a/b.ckpt``) or local path.

    Returns:
        ``(parent, name)``: ``parent`` is a URL or path for ``FsspecCheckpointStore`` (``"."``
        for a bare local file name); ``name`` is the file name, valid as a store name.

    Raises:
        ValueError: ``path`` has no file name (empty, ends with ``/``, or is only a bucket or
            protocol).
    """
    path = os.fspath(path)
    if not isinstance(path, str) or not path:
        raise ValueError(
            f"expected a file URL or path such as 's3://bucket/x/last.ckpt', got {path!r}"
        )
    protocol, rest = fsspec.core.split_protocol(path)
    if protocol is None:
        parent, name = os.path.split(path)
        if not name:
            raise ValueError(f"expected a file path, got a directory {path!r}; add a file name")
        return (parent or "."), name
    if "/" not in rest or rest.endswith("/"):
        raise ValueError(
            f"expected a file URL such as '{protocol}://bucket/dir/last.ckpt', got {path!r}; "
            "add a file name after the last '/'"
        )
    parent, name = path.rsplit("/", 1)
    if parent.endswith("://"):
        parent += "/"  # "file:///last.ckpt": the parent is the root, "file:///"
    return parent, name
