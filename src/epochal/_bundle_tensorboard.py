"""The bundle's TensorBoard logs: ``tensorboard/`` in its directory, as Poutyne's bundle writes.

Poutyne's ``ModelBundle.train`` adds a ``TensorBoardLogger`` writing to
``<directory>/tensorboard`` whenever ``torch.utils.tensorboard`` imports (the ``tensorboard``
package), warns when it does not, and writes nothing with ``disable_tensorboard=True``.
epochal does the same, with two additions:

- The event files are derived logs, not part of the committed snapshot. A resume opens the
  writer with ``purge_step`` set to the epoch it resumes at (in every per-tag folder:
  :func:`epochal_adapters.tensorboard.resumed_summary_writer`), so the scalars of epochs that
  ran after the last commit (and run again now) are hidden by TensorBoard instead of drawn
  twice.
- TensorBoard writes event files with its own file I/O, not through the bundle's store: they
  are written for a local directory only. A bundle on another fsspec URL (``s3://``,
  ``memory://``) warns and writes none; one on a store object of your own (such as
  :class:`epochal.testing.MemoryCheckpointStore`) writes none, silently.

The writer is :class:`epochal_adapters.tensorboard.ScalarEventFiles`: the files
``SummaryWriter`` would write, written on the training thread at each epoch's end, with no
writer thread per event file.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from epochal.ports import CheckpointStore

__all__ = ["TENSORBOARD_DIRECTORY", "bundle_tensorboard_logger"]

TENSORBOARD_DIRECTORY = "tensorboard"


def _local_directory(store: CheckpointStore) -> str | None:
    """The local path of ``store``'s ``tensorboard/`` directory, or None when the store is not
    a local directory."""
    from fsspec.implementations.local import LocalFileSystem

    fs = getattr(store, "fs", None)
    if not isinstance(fs, LocalFileSystem):
        return None
    url = store.url(TENSORBOARD_DIRECTORY)
    return url[len("file://"):] if url.startswith("file://") else url


def bundle_tensorboard_logger(
    store: CheckpointStore, *, first_epoch: int, describe: str
) -> Any:
    """A ``TensorBoardLogger`` writing to the bundle's ``tensorboard/`` directory, or None.

    Args:
        store: The bundle's store.
        first_epoch: The epoch this call trains first (1 on a fresh directory): events at
            this step and later, left by a run that crashed after them, are purged.
        describe: The bundle's directory, for the warnings.

    Returns:
        The logger (its writer is closed at ``on_train_end``; call ``writer.close()`` too when
        training raises), or None: with a ``UserWarning`` when the ``tensorboard`` package is
        missing or the store is a remote fsspec URL; silently for a store without ``fs``.
    """
    directory = _local_directory(store)
    if directory is None:
        if getattr(store, "fs", None) is None:
            return None  # a store object of the user's own: nothing to warn about
        warnings.warn(
            f"{describe} is not a local directory: the bundle writes no TensorBoard logs "
            "there (TensorBoard writes its files itself). Pass disable_tensorboard=True to "
            "silence this warning, or add TensorBoardLogger(SummaryWriter(<local dir>)) to "
            "the callbacks.",
            UserWarning,
            stacklevel=3,
        )
        return None
    try:
        # The package is there (the writer needs its protocol buffers only): warn now if not.
        import tensorboard.compat.proto.event_pb2  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        warnings.warn(
            "tensorboard does not seem to be installed, so the bundle writes no TensorBoard "
            "logs. To remove this warning, set the 'disable_tensorboard' flag to True or "
            "install tensorboard (pip install tensorboard, or epochal[tensorboard]).",
            UserWarning,
            stacklevel=3,
        )
        return None
    from epochal.callbacks.tensorboard_logger import TensorBoardLogger

    return TensorBoardLogger(_FirstWriteOpens(directory, first_epoch))


class _FirstWriteOpens:
    """A ``ScalarWriter`` that opens its ``SummaryWriter`` at the first value written.

    ``SummaryWriter`` creates its event file when it is built; opening it at the first
    epoch's end instead keeps the bundle's promise that a training refused before its first
    step (a bad loader, a monitored key never logged) leaves the directory untouched.
    """

    def __init__(self, directory: str, first_epoch: int) -> None:
        self.directory = directory
        self.first_epoch = first_epoch
        self._writer: Any = None

    def _open(self) -> Any:
        if self._writer is None:
            from epochal_adapters.tensorboard import ScalarEventFiles

            # Written once per epoch: on this thread, with no writer thread per event file.
            self._writer = ScalarEventFiles(
                self.directory, purge_step=self.first_epoch if self.first_epoch > 1 else None)
        return self._writer

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> Any:
        return self._open().add_scalar(tag, scalar_value, global_step)

    def add_scalars(self, main_tag: str, tag_scalar_dict: Mapping[str, float],
                    global_step: int) -> Any:
        return self._open().add_scalars(main_tag, tag_scalar_dict, global_step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
