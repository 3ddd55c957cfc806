"""TensorBoard: the writer the TensorBoard callbacks write scalars and histograms to.

``torch.utils.tensorboard.SummaryWriter`` needs the ``tensorboard`` package (the
``epochal[tensorboard]`` extra); :func:`summary_writer` builds one and says how to install
it when it is missing. :func:`resumed_summary_writer` builds one for a training that resumes
at a step: TensorBoard hides the points a crashed run left at that step and later.
:func:`same_thread_summary_writer` writes its event files on the caller's thread (the bundle's
writer, called once per epoch).
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "ScalarWriter", "resumed_summary_writer", "same_thread_summary_writer", "summary_writer",
]

#: The last part of the event file names this module opens (unique within the process).
_EVENT_FILE_IDS = itertools.count()


@runtime_checkable
class ScalarWriter(Protocol):
    """What the TensorBoard callbacks need of a writer: ``SummaryWriter``'s ``add_scalar``,
    ``add_scalars``, ``flush`` and ``close``."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> Any: ...

    def add_scalars(
        self, main_tag: str, tag_scalar_dict: Mapping[str, float], global_step: int
    ) -> Any: ...

    def flush(self) -> Any: ...

    def close(self) -> Any: ...


def summary_writer(log_dir: str | os.PathLike[str], **kwargs: Any) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` writing event files under ``log_dir``.

    Args:
        log_dir: The run's directory (local path or a URL TensorBoard supports).
        **kwargs: Other ``SummaryWriter`` arguments (``comment``, ``flush_secs``...).

    Returns:
        The writer.

    Raises:
        ImportError: The ``tensorboard`` package is not installed (``pip install tensorboard``
            or ``pip install epochal[tensorboard]``).
    """
    return _summary_writer_class()(log_dir=os.fspath(log_dir), **kwargs)


def _summary_writer_class() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``, or an ImportError saying what to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ImportError(
            "TensorBoard logging needs the 'tensorboard' package: pip install tensorboard "
            "(or pip install epochal[tensorboard])."
        ) from exc
    return SummaryWriter


def resumed_summary_writer(log_dir: str | os.PathLike[str], purge_step: int) -> Any:
    """A ``SummaryWriter`` for a training resumed at ``purge_step``: the points that an
    earlier run wrote at ``purge_step`` or later (epochs it ran but never committed) are
    hidden by TensorBoard, in ``log_dir`` and in every per-tag folder ``add_scalars`` writes.

    ``SummaryWriter(purge_step=...)`` marks only ``log_dir`` itself; ``add_scalars`` writes
    each value in a folder of its own (``<log_dir>/<main_tag>_<tag>``), which this writer
    marks the same way (a ``file_version`` event and a ``SessionLog.START`` event at
    ``purge_step``, TensorBoard's purge marker) before its first value there. It writes on
    the caller's thread, as :func:`same_thread_summary_writer` does.

    Args:
        log_dir: The run's directory (a local path).
        purge_step: The first step this run writes (the epoch it resumes at).

    Returns:
        The writer (a ``torch.utils.tensorboard.SummaryWriter``).

    Raises:
        ImportError: The ``tensorboard`` package is not installed.
    """
    return same_thread_summary_writer(log_dir, purge_step=purge_step)


def same_thread_summary_writer(log_dir: str | os.PathLike[str],
                               purge_step: int | None = None) -> Any:
    """A ``SummaryWriter`` whose event files are written on the caller's thread.

    ``SummaryWriter`` starts a writer thread for each event file, and ``add_scalars`` opens
    one event file per tag (``<log_dir>/<main_tag>_<tag>``): a training logging five metrics
    per epoch runs a dozen threads, each with its own stack and allocator arena (about 1 MiB
    of resident memory in all, measured in ``docs/performance.md``). For a writer called once
    per epoch, as the bundle's is, each call writes and flushes its event records at once
    instead (a few small writes). The files are the same: names of TensorBoard's form
    (``events.out.tfevents.<time>.<host>.<pid>.<n>``), a ``file_version`` event first, then
    the TFRecord-framed events, written with TensorBoard's own ``RecordWriter``.

    Args:
        log_dir: The run's directory (a local path or a URL TensorBoard's file layer opens).
        purge_step: When set, each event file starts with TensorBoard's purge marker at this
            step (see :func:`resumed_summary_writer`).

    Returns:
        The writer (a ``torch.utils.tensorboard.SummaryWriter``).

    Raises:
        ImportError: The ``tensorboard`` package is not installed.
    """
    summary_writer_class = _summary_writer_class()
    from tensorboard.compat import tf  # type: ignore[import-untyped]
    from tensorboard.compat.proto.event_pb2 import (  # type: ignore[import-untyped]
        Event,
        SessionLog,
    )
    from tensorboard.summary.writer.record_writer import (  # type: ignore[import-untyped]
        RecordWriter,
    )
    from torch.utils.tensorboard.writer import FileWriter

    class _EventFile:
        """What ``FileWriter`` asks of TensorBoard's ``EventFileWriter``, without its thread."""

        def __init__(self, folder: str, filename_suffix: str) -> None:
            self._folder = folder
            tf.io.gfile.makedirs(folder)
            name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                    f"{os.getpid()}.{next(_EVENT_FILE_IDS)}{filename_suffix}")
            self._records = RecordWriter(tf.io.gfile.GFile(os.path.join(folder, name), "wb"))
            self.add_event(Event(wall_time=time.time(), file_version="brain.Event:2"))

        def get_logdir(self) -> str:
            return self._folder

        def add_event(self, event: Any) -> None:
            self._records.write(event.SerializeToString())
            self._records.flush()

        def flush(self) -> None:
            self._records.flush()

        def close(self) -> None:
            if not self._records.closed:
                self._records.flush()
                self._records.close()

    class _SameThreadFileWriter(FileWriter):  # type: ignore[misc]
        def __init__(self, folder: str, filename_suffix: str) -> None:
            # Not FileWriter.__init__: it would start EventFileWriter's thread.
            self.event_writer = _EventFile(str(folder), filename_suffix)

    class _SameThreadSummaryWriter(summary_writer_class):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            self._purge_at = purge_step  # before super().__init__, which opens the file
            super().__init__(log_dir=os.fspath(log_dir))

        def _open(self, folder: str) -> Any:
            writer = _SameThreadFileWriter(folder, self.filename_suffix)
            if self._purge_at is not None:
                writer.add_event(Event(step=self._purge_at, file_version="brain.Event:2"))
                writer.add_event(Event(step=self._purge_at,
                                       session_log=SessionLog(status=SessionLog.START)))
            return writer

        def _get_file_writer(self) -> Any:
            # SummaryWriter's own, but for the writer it opens (and its purge marker).
            writers: dict[str, Any] | None = getattr(self, "all_writers", None)
            if writers is None or getattr(self, "file_writer", None) is None:
                self.file_writer = self._open(self.log_dir)
                self.all_writers = {self.file_writer.get_logdir(): self.file_writer}
            return self.file_writer

        def add_scalars(self, main_tag: str, tag_scalar_dict: Mapping[str, float],
                        global_step: int | None = None, walltime: float | None = None) -> None:
            base = self._get_file_writer().get_logdir()
            for tag in tag_scalar_dict:
                folder = base + "/" + main_tag.replace("/", "_") + "_" + tag
                if folder not in self.all_writers:
                    self.all_writers[folder] = self._open(folder)
            super().add_scalars(main_tag, tag_scalar_dict, global_step, walltime)

    return _SameThreadSummaryWriter()
