"""TensorBoard: the writer the TensorBoard callbacks write scalars and histograms to.

``torch.utils.tensorboard.SummaryWriter`` needs the ``tensorboard`` package (the
``epochal[tensorboard]`` extra); :func:`summary_writer` builds one and says how to install
it when it is missing. :func:`resumed_summary_writer` builds one for a training that resumes
at a step: TensorBoard hides the points a crashed run left at that step and later.
:class:`ScalarEventFiles` writes the same event files of scalars on the caller's thread, with
no writer thread and without importing ``SummaryWriter`` (the bundle's writer, called once per
epoch).
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from collections.abc import Mapping
from typing import Any, BinaryIO, Protocol, runtime_checkable

__all__ = [
    "ScalarEventFiles", "ScalarWriter", "masked_crc32c", "resumed_summary_writer",
    "summary_writer",
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


def resumed_summary_writer(log_dir: str | os.PathLike[str], purge_step: int
                           ) -> ScalarEventFiles:
    """A scalar writer (:class:`ScalarEventFiles`) for a training resumed at ``purge_step``:
    the points that an
    earlier run wrote at ``purge_step`` or later (epochs it ran but never committed) are
    hidden by TensorBoard, in ``log_dir`` and in every per-tag folder ``add_scalars`` writes.

    ``SummaryWriter(purge_step=...)`` marks only ``log_dir`` itself; ``add_scalars`` writes
    each value in a folder of its own (``<log_dir>/<main_tag>_<tag>``), which this writer
    marks the same way (a ``file_version`` event and a ``SessionLog.START`` event at
    ``purge_step``, TensorBoard's purge marker) before its first value there. It writes on
    the caller's thread (:class:`ScalarEventFiles`).

    Args:
        log_dir: The run's directory (a local path).
        purge_step: The first step this run writes (the epoch it resumes at).

    Returns:
        The writer (a :class:`ScalarEventFiles`).

    Raises:
        ImportError: The ``tensorboard`` package is not installed.
    """
    return ScalarEventFiles(log_dir, purge_step=purge_step)


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C of ``data``, as TFRecord framing stores it.

    CRC-32C is the CRC with the Castagnoli polynomial (0x1EDC6F41, reflected 0x82F63B78;
    RFC 3720, section B.4); the mask is TensorFlow's (``lib/hash/crc32c.h``): rotate right by
    15 bits and add 0xA282EAD8, modulo 2**32.

    Args:
        data: The bytes.

    Returns:
        An unsigned 32-bit integer.
    """
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _as_float(value: Any) -> float:
    """A scalar value as a float: a number, or a tensor or array of one element (detached),
    as ``SummaryWriter`` accepts.

    Raises:
        ValueError: More than one element (the message names the shape).
    """
    detach = getattr(value, "detach", None)
    if detach is not None:
        value = detach()
    if getattr(value, "ndim", 0):
        count = value.numel() if hasattr(value, "numel") else value.size  # tensor, array
        if count != 1:
            raise ValueError(
                f"A TensorBoard scalar must be one number; got a value of shape "
                f"{tuple(value.shape)}. Expected a number or a one-element tensor or array."
            )
        value = value.reshape(())
    return float(value)


class ScalarEventFiles:
    """TensorBoard event files of scalars, written on the caller's thread.

    The files are those ``torch.utils.tensorboard.SummaryWriter`` writes for ``add_scalar``
    and ``add_scalars``: one event file in ``log_dir`` and one in each per-tag folder
    ``<log_dir>/<main_tag>_<tag>`` that ``add_scalars`` uses, named as TensorBoard names them
    (``events.out.tfevents.<seconds>.<host>.<pid>.<n>``), each starting with a
    ``file_version`` event, the events framed as TFRecords (length, masked CRC-32C of the
    length, the serialized ``Event``, masked CRC-32C of it), a scalar as a
    ``Summary.Value(simple_value=...)``.

    Why not ``SummaryWriter``: it starts a writer thread for each event file, and importing
    it imports TensorBoard's file layer (with boto3 when installed, 13 MiB of resident
    memory here). A writer called once per epoch, as the bundle's is, needs neither: each
    call writes its events and flushes them, so they are in the file when it returns. Only
    local directories (the bundle writes TensorBoard logs nowhere else).

    Args:
        log_dir: The run's directory (a local path; created when missing).
        purge_step: When set, each event file starts with TensorBoard's purge marker at this
            step: a ``file_version`` event and a ``SessionLog.START`` event at ``purge_step``,
            after which TensorBoard hides the points an earlier run left at that step and
            later.

    Raises:
        ImportError: The ``tensorboard`` package is not installed.
    """

    def __init__(self, log_dir: str | os.PathLike[str], *, purge_step: int | None = None
                 ) -> None:
        try:
            from tensorboard.compat.proto import (  # type: ignore[import-untyped]
                event_pb2,
                summary_pb2,
            )
        except ImportError as exc:
            raise ImportError(
                "TensorBoard logging needs the 'tensorboard' package: pip install tensorboard "
                "(or pip install epochal[tensorboard])."
            ) from exc
        self._event_pb2 = event_pb2
        self._summary_pb2 = summary_pb2
        self.log_dir = os.fspath(log_dir)
        self.purge_step = purge_step
        self._files: dict[str, BinaryIO] = {}
        self._purged: set[str] = set()
        self._file(self.log_dir)  # as SummaryWriter, the main file exists from the start

    def _file(self, folder: str) -> BinaryIO:
        file = self._files.get(folder)
        if file is not None:
            return file
        os.makedirs(folder, exist_ok=True)
        while True:  # "x": never truncate another writer's file that has the same name
            # The number is zero-padded: TensorBoard reads a folder's files in name order.
            name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                    f"{os.getpid()}.{next(_EVENT_FILE_IDS):06d}")
            try:
                file = open(os.path.join(folder, name), "xb")  # noqa: SIM115  # kept open
                break
            except FileExistsError:
                continue
        self._files[folder] = file
        event_pb2 = self._event_pb2
        self._write(file, event_pb2.Event(
            wall_time=time.time(), file_version="brain.Event:2",
            source_metadata=event_pb2.SourceMetadata(writer="epochal_adapters.tensorboard")))
        if self.purge_step is not None and folder not in self._purged:
            # Once per folder: a file opened after close() must not hide this run's points.
            self._purged.add(folder)
            self._write(file, event_pb2.Event(wall_time=time.time(), step=self.purge_step,
                                              file_version="brain.Event:2"))
            start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
            self._write(file, event_pb2.Event(wall_time=time.time(), step=self.purge_step,
                                              session_log=start))
        file.flush()
        return file

    @staticmethod
    def _write(file: BinaryIO, event: Any) -> None:
        data = event.SerializeToString()
        length = struct.pack("<Q", len(data))
        file.write(length + struct.pack("<I", masked_crc32c(length)) + data
                   + struct.pack("<I", masked_crc32c(data)))

    def _scalar(self, folder: str, tag: str, value: float, step: int | None,
                walltime: float | None) -> None:
        summary = self._summary_pb2.Summary(
            value=[self._summary_pb2.Summary.Value(tag=tag, simple_value=_as_float(value))])
        event = self._event_pb2.Event(
            wall_time=time.time() if walltime is None else walltime, summary=summary)
        if step is not None:
            event.step = int(step)
        file = self._file(folder)
        self._write(file, event)
        file.flush()

    def add_scalar(self, tag: str, scalar_value: float, global_step: int | None = None,
                   walltime: float | None = None) -> None:
        """Write ``scalar_value`` under ``tag`` in ``log_dir``'s event file."""
        self._scalar(self.log_dir, tag, scalar_value, global_step, walltime)

    def add_scalars(self, main_tag: str, tag_scalar_dict: Mapping[str, float],
                    global_step: int | None = None, walltime: float | None = None) -> None:
        """Write each value under ``main_tag`` in its folder ``<log_dir>/<main_tag>_<tag>``
        (one graph, a line per tag), as ``SummaryWriter.add_scalars`` does."""
        walltime = time.time() if walltime is None else walltime
        for tag, value in tag_scalar_dict.items():
            folder = self.log_dir + "/" + main_tag.replace("/", "_") + "_" + tag
            self._scalar(folder, main_tag, value, global_step, walltime)

    def get_logdir(self) -> str:
        """The run's directory (``SummaryWriter.get_logdir``)."""
        return self.log_dir

    def __enter__(self) -> ScalarEventFiles:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def flush(self) -> None:
        """Flush every open event file (each call already flushed what it wrote)."""
        for file in self._files.values():
            file.flush()

    def close(self) -> None:
        """Close the event files; a later call opens new ones, as ``SummaryWriter`` does."""
        files, self._files = self._files, {}
        for file in files.values():
            file.close()
