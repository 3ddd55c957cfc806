"""Where the callbacks' files go: the one place a callback turns a path or URL into a
``CheckpointStore`` and a name in it.

A callback that writes files accepts either a path/URL (``'saves/last.ckpt'``,
``'s3://bucket/run/log.csv'`` with ``storage_options``) or a ``store`` (any
:class:`~epochal.ports.CheckpointStore`) plus a file name relative to it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

from epochal.exceptions import ConfigurationError, StorageError
from epochal.ports import CheckpointStore

__all__ = [
    "check_not_directory",
    "file_location",
    "fixed_prefix",
    "name_from_state",
    "probe_location",
]


def file_location(
    owner: str,
    filename: str,
    store: CheckpointStore | None,
    storage_options: Mapping[str, Any] | None,
) -> tuple[CheckpointStore, str]:
    """The store and the name in it where ``filename`` (already formatted) lives.

    Args:
        owner: The callback's name, for messages.
        filename: A path or URL (without ``store``), or a ``/``-separated name relative to
            ``store``.
        store: A ready-made store, or None to build one from ``filename``'s parent.
        storage_options: fsspec options for a URL (not allowed with ``store``).

    Returns:
        ``(store, name)``.

    Raises:
        ConfigurationError: ``storage_options`` with ``store``; ``filename`` has no file
            name (ends with a separator).
    """
    from epochal_adapters.storage import open_store, split_url

    if store is not None:
        if storage_options:
            raise ConfigurationError(
                f"{owner}: storage_options apply to a URL filename, but a store was given; "
                "configure the store instead."
            )
        return store, filename.replace("\\", "/").lstrip("/")
    try:
        parent, name = split_url(filename)
    except ValueError as exc:
        raise ConfigurationError(f"{owner}: {exc}.") from exc
    return open_store(parent, storage_options), name


def check_not_directory(owner: str, filename: str, store: CheckpointStore | None) -> None:
    """Raise ``ConfigurationError`` when ``filename`` is an existing local directory (or ends
    with a path separator): a file name is expected.

    Only local paths are checked (a remote "directory" is just a prefix).
    """
    expected = (
        "a file name is expected, e.g. 'outdir/last.ckpt' or "
        "'outdir/model_{epoch:02d}-{val_loss:.3f}.ckpt' ('{epoch}' and the epoch's log keys "
        "are filled in at each save)."
    )
    if filename.endswith(("/", "\\")) or (
        store is None and "://" not in filename and os.path.isdir(filename)
    ):
        raise ConfigurationError(f"{owner}: {filename!r} is a directory; {expected}")


def fixed_prefix(template: str) -> str:
    """The template's leading directory that no field changes (``'/run/w_{epoch}.ckpt'``
    gives ``'/run/'``); file names kept in a callback's state are relative to it."""
    literal = template.split("{", 1)[0]
    cut = max(literal.rfind("/"), literal.rfind("\\"))
    return literal[: cut + 1]


def name_from_state(owner: str, prefix: str, name: Any) -> str | None:
    """The full filename of a relative name read from a state (``prefix + name``), or None,
    with a ``RuntimeWarning``, for anything that is not a plain relative name (an absolute
    path, a URL, a ``..``: another run's file, never to be read or deleted)."""
    if not isinstance(name, str) or not name:
        return None
    parts = name.replace("\\", "/").split("/")
    if "://" in name or os.path.isabs(name) or name.startswith(("/", "\\")) or ".." in parts:
        warnings.warn(
            f"{owner}.load_state_dict: ignoring the saved file {name!r}: a state holds names "
            "relative to the callback's filename, not paths (a state of an older version or "
            "of another run); it is neither read nor deleted.",
            RuntimeWarning,
            stacklevel=4,
        )
        return None
    return prefix + name


def probe_location(
    owner: str,
    template: str,
    store: CheckpointStore | None,
    storage_options: Mapping[str, Any] | None,
) -> None:
    """Check, before the first step, that the directory a filename template writes into can be
    used: it exists or can be made, is a directory and accepts a file (for a bucket: it exists
    and accepts a small write and delete). A store without a ``probe`` method is trusted.

    Args:
        owner: The callback's name, for messages.
        template: The filename template (``'run/w_{epoch}.ckpt'``); its fixed leading
            directory is probed.
        store: A ready-made store, or None.
        storage_options: fsspec options for a URL.

    Raises:
        StorageError: The directory cannot be used; the message names the callback, the
            filename, the path and the problem.
    """
    where, _name = file_location(owner, fixed_prefix(template) + "probe", store, storage_options)
    probe = getattr(where, "probe", None)
    if not callable(probe):
        return
    try:
        probe()
    except StorageError as exc:
        raise StorageError(f"{owner}'s filename {template!r} cannot be written: {exc}") from exc
