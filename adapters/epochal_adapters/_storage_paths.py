"""The rules :class:`~epochal_adapters.storage.FsspecCheckpointStore` applies to names and
URLs: valid store names and ``names()`` prefixes, the shape of its temporary and probe files,
errors re-raised with the URL, and the ``fsync`` of a directory after a rename.
"""

from __future__ import annotations

import os

__all__ = [
    "KEPT_OS_ERRORS", "OBJECT_STORE_PROTOCOLS", "PROBE_PREFIX", "TEMP_PREFIX", "TEMP_SUFFIX",
    "fsync_directory", "is_temp_file", "strip_trailing_slashes", "validate_name",
    "validate_prefix", "with_url",
]

#: Protocols of object stores: directories are implicit, so no ``makedirs`` before a write
#: (on S3, ``makedirs`` of a bare bucket path would try to create the bucket).
OBJECT_STORE_PROTOCOLS = frozenset(
    {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "r2"}
)

#: Built-in ``OSError`` subclasses kept when an error is re-raised with the URL in its message.
KEPT_OS_ERRORS: tuple[type[OSError], ...] = (
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    FileExistsError,
    TimeoutError,
    ConnectionError,
)

TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"
PROBE_PREFIX = "._probe-"


def is_temp_file(basename: str) -> bool:
    """Whether ``basename`` has the form of this module's temporary files (``.*.tmp``)."""
    return basename.startswith(TEMP_PREFIX) and basename.endswith(TEMP_SUFFIX)


def validate_name(name: str) -> None:
    """Check that ``name`` is a store name: relative, ``/``-separated, no ``..``.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: ``name`` is empty, absolute, has an empty, ``.`` or ``..`` part, contains a
            backslash, or has the form of a temporary file (``.*.tmp``); the message names it.
    """
    if not isinstance(name, str):
        raise TypeError(f"a checkpoint name must be a str, got {type(name).__name__}: {name!r}")
    expected = (
        "expected a relative, '/'-separated name such as 'checkpoints/epoch_3.ckpt' "
        "(no leading '/', no empty, '.' or '..' parts, no backslash)"
    )
    if not name:
        raise ValueError(f"invalid checkpoint name {name!r}: it is empty; {expected}")
    if "\\" in name:
        raise ValueError(f"invalid checkpoint name {name!r}: it contains a backslash; {expected}")
    if name.startswith("/"):
        raise ValueError(f"invalid checkpoint name {name!r}: it starts with '/'; {expected}")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(
            f"invalid checkpoint name {name!r}: it has an empty, '.' or '..' part; {expected}"
        )
    if is_temp_file(parts[-1]):
        raise ValueError(
            f"invalid checkpoint name {name!r}: names of the form '.*.tmp' are reserved for "
            f"temporary files of in-flight writes; choose another file name"
        )


def validate_prefix(prefix: str) -> None:
    """Check a ``names()`` prefix: a string prefix of names, so it may end in a partial part.

    Raises:
        TypeError: ``prefix`` is not a string.
        ValueError: ``prefix`` starts with ``/``, contains a backslash or a ``..`` part.
    """
    if not isinstance(prefix, str):
        raise TypeError(f"a names() prefix must be a str, got {type(prefix).__name__}")
    if prefix.startswith("/") or "\\" in prefix or ".." in prefix.split("/"):
        raise ValueError(
            f"invalid names() prefix {prefix!r}: expected the start of a relative, "
            "'/'-separated name such as 'checkpoints/' or 'checkpoints/epoch_' "
            "(no leading '/', no '..' part, no backslash)"
        )


def with_url(exc: BaseException, action: str, url: str) -> OSError:
    """An ``OSError`` saying that ``action`` on ``url`` failed because of ``exc``.

    Keeps the built-in ``OSError`` subclass of ``exc`` where there is one (``FileNotFoundError``,
    ``PermissionError``, ...); anything else (e.g. a botocore connection error) becomes a plain
    ``OSError``.
    """
    message = f"could not {action} {url}: {type(exc).__name__}: {exc}"
    for error_type in KEPT_OS_ERRORS:
        if isinstance(exc, error_type):
            wrapped: OSError = error_type(message)
            break
    else:
        wrapped = OSError(message)
    if isinstance(exc, OSError) and exc.errno is not None:
        wrapped.errno = exc.errno
    return wrapped


def fsync_directory(directory: str) -> None:
    """Flush a directory entry to disk so that a rename in it survives a power loss.

    A no-op on platforms that cannot open a directory (Windows).
    """
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def strip_trailing_slashes(url: str) -> str:
    """``url`` without trailing ``/``, keeping a bare ``protocol://``."""
    while url.endswith("/") and not url.endswith("://") and url != "/":
        url = url[:-1]
    return url
