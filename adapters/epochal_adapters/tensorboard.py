"""TensorBoard: the writer the TensorBoard callbacks write scalars and histograms to.

``torch.utils.tensorboard.SummaryWriter`` needs the ``tensorboard`` package (the
``epochal[tensorboard]`` extra); :func:`summary_writer` builds one and says how to install
it when it is missing. :func:`resumed_summary_writer` builds one for a training that resumes
at a step: TensorBoard hides the points a crashed run left at that step and later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["ScalarWriter", "resumed_summary_writer", "summary_writer"]


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
    ``purge_step``, TensorBoard's purge marker) before its first value there.

    Args:
        log_dir: The run's directory (a local path).
        purge_step: The first step this run writes (the epoch it resumes at).

    Returns:
        The writer (a ``torch.utils.tensorboard.SummaryWriter``).

    Raises:
        ImportError: The ``tensorboard`` package is not installed.
    """
    summary_writer_class = _summary_writer_class()
    from tensorboard.compat.proto.event_pb2 import (  # type: ignore[import-untyped]
        Event,
        SessionLog,
    )
    from torch.utils.tensorboard.writer import FileWriter

    class _ResumedSummaryWriter(summary_writer_class):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__(log_dir=os.fspath(log_dir), purge_step=purge_step)
            self._marked: set[str] = set()

        def add_scalars(self, main_tag: str, tag_scalar_dict: Mapping[str, float],
                        global_step: int | None = None, walltime: float | None = None) -> None:
            base = self._get_file_writer().get_logdir()
            for tag in tag_scalar_dict:
                folder = base + "/" + main_tag.replace("/", "_") + "_" + tag
                if folder in self._marked or folder in self.all_writers:
                    continue
                writer = FileWriter(folder, self.max_queue, self.flush_secs, self.filename_suffix)
                writer.add_event(Event(step=purge_step, file_version="brain.Event:2"))
                writer.add_event(Event(step=purge_step,
                                       session_log=SessionLog(status=SessionLog.START)))
                self.all_writers[folder] = writer
                self._marked.add(folder)
            super().add_scalars(main_tag, tag_scalar_dict, global_step, walltime)

    return _ResumedSummaryWriter()
