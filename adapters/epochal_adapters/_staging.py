"""Two-step writes for :meth:`~epochal_adapters.storage.FsspecCheckpointStore.open_staged`:
bytes written now into a file outside the process's memory, published later (from another
thread, if need be), or discarded.

:class:`StagedWrite` stages a local file in a hidden temporary file beside its final path;
:class:`StagedUpload` stages a remote object in an anonymous local spool file. A background
commit serializes its files into them on the training thread and publishes them from its
writer thread (:mod:`epochal._commit_writer`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Callable
from typing import Any, BinaryIO

from epochal_adapters._storage_paths import TEMP_PREFIX, TEMP_SUFFIX, fsync_directory, with_url

__all__ = ["StagedUpload", "StagedWrite"]


class _Staged:
    """What both staged writes share: ``write``/``flush`` to a local file (errors named with
    the URL), ``discard``, and the state (``"staged"``, then ``"published"`` or
    ``"discarded"``)."""

    file: BinaryIO
    url: str
    state: str
    #: What a staging error says could not be done, before the URL.
    action = "write"

    def write(self, data: Any) -> int:
        """Write ``data`` (bytes-like) to the staging file.

        Raises:
            OSError: The write failed (a full disk); the message contains the URL (and, for
                a spool file, the local directory it is in).
        """
        try:
            return self.file.write(data)
        except OSError as exc:
            raise with_url(exc, self.action, self.url) from exc

    def flush(self) -> None:
        """Flush Python's buffer to the staging file (no ``fsync``: that is ``publish``'s)."""
        try:
            self.file.flush()
        except OSError as exc:
            raise with_url(exc, self.action, self.url) from exc

    def _check_staged(self) -> None:
        if self.state != "staged":
            raise ValueError(f"the staged write of {self.url} was already {self.state}; "
                             "stage it again")

    def discard(self) -> None:
        """Close and remove the staged bytes (nothing happens to the final name). Safe to
        call more than once, and a no-op after ``publish``."""
        if self.state != "staged":
            return
        self.state = "discarded"
        with contextlib.suppress(OSError):
            self.file.close()
        self._remove()

    def _remove(self) -> None:
        """Remove the staging file once closed (nothing to do for an anonymous one)."""


class StagedWrite(_Staged):
    """A local write in two steps: bytes written now (:meth:`write`, a binary file's method),
    made durable and renamed onto the final path by :meth:`publish` later (from another thread,
    if need be).

    ``file`` is a hidden temporary file beside the final path (``.<name>.<id>.tmp``, which
    :meth:`FsspecCheckpointStore.remove_temp_files` sweeps after a crash and which ``names()``
    never lists). Until :meth:`publish` returns, the final path holds its previous bytes, or
    nothing.

    Args:
        path: The final path (its directory is made if missing).
        url: The final URL, for error messages (the path when omitted).

    Raises:
        OSError: The directory or the temporary file cannot be made.
    """

    def __init__(self, path: str, *, url: str | None = None) -> None:
        directory, basename = os.path.split(path)
        os.makedirs(directory, exist_ok=True)
        self.path = path
        self.url = url or path
        self.temp_path = os.path.join(
            directory, f"{TEMP_PREFIX}{basename}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
        )
        # O_EXCL: never reuse a file; 0o666 lets the umask decide the final permissions.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        self.file = os.fdopen(os.open(self.temp_path, flags, 0o666), "wb")
        self.state = "staged"

    def publish(self) -> None:
        """Flush and ``fsync`` the temporary file, ``os.replace`` it onto the final path, then
        ``fsync`` the directory. On failure the temporary file is removed and the final path
        keeps its previous bytes.

        Raises:
            OSError: The flush, ``fsync`` or rename failed (a full disk, a permission); the
                message contains the URL.
            ValueError: Already published or discarded.
        """
        try:
            self._finish()
        except OSError as exc:
            raise with_url(exc, "write", self.url) from exc

    def _finish(self) -> None:
        """:meth:`publish`, raising the filesystem's own errors (no URL added)."""
        self._check_staged()
        try:
            with self.file:
                self.file.flush()
                os.fsync(self.file.fileno())
            os.replace(self.temp_path, self.path)
        except BaseException:
            self.discard()
            raise
        self.state = "published"
        fsync_directory(os.path.dirname(self.path))

    def _remove(self) -> None:
        with contextlib.suppress(OSError):
            os.remove(self.temp_path)


class StagedUpload(_Staged):
    """A remote write in two steps: bytes written now to an anonymous local spool file
    (``tempfile.TemporaryFile`` in the temporary directory, ``TMPDIR``: on disk, outside
    this process's memory unless that directory is a ``tmpfs``; the operating system removes
    it when it is closed or the process dies), uploaded in one upload by :meth:`publish`
    later (from another thread, if need be).

    The upload reads the spool file back whole (as ``s3fs``'s own ``put_file`` does below
    100 MiB), so a publish holds one file in memory while it uploads, as a synchronous
    remote write does.

    Args:
        upload: Uploads bytes as the final object; raises ``OSError`` naming the URL.
        url: The final URL, for error messages.

    Raises:
        OSError: The spool file cannot be made; the message names the URL and the local
            directory.
    """

    def __init__(self, upload: Callable[[bytes], None], *, url: str) -> None:
        self.url = url
        self._upload = upload
        self.action = (f"spool into the local temporary directory {tempfile.gettempdir()} "
                       "(TMPDIR) the upload of")
        try:
            self.file = tempfile.TemporaryFile(prefix="epochal-staged-")  # noqa: SIM115
        except OSError as exc:
            raise with_url(exc, self.action, url) from exc
        self.state = "staged"

    def publish(self) -> None:
        """Upload the spooled bytes as the final object (one upload: it appears whole or
        not at all) and remove the spool file, which is removed on failure too.

        Raises:
            OSError: Reading the spool file or the upload failed; the message contains the
                URL. The object keeps its previous bytes (or stays absent).
            ValueError: Already published or discarded.
        """
        self._check_staged()
        try:
            try:
                self.file.flush()
                self.file.seek(0)
                data = self.file.read()
            except OSError as exc:
                raise with_url(exc, self.action, self.url) from exc
            self._upload(data)
        except BaseException:
            self.discard()
            raise
        self.state = "published"
        with contextlib.suppress(OSError):
            self.file.close()
