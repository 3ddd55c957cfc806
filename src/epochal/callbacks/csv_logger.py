"""``CSVLogger`` and ``AtomicCSVLogger``: the epoch (and batch) rows in a CSV or TSV file on
any storage, in the library's one table format (:mod:`epochal_adapters.tsv`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from epochal.callbacks._files import check_not_directory, file_location, probe_location
from epochal.callbacks.logger import Logger
from epochal.exceptions import ConfigurationError
from epochal.ports import CheckpointStore

__all__ = ["AtomicCSVLogger", "CSVLogger"]


class CSVLogger(Logger):
    """Write the epoch logs (and optionally the batch logs) to a CSV or TSV file.

    The file is UTF-8 text with exactly one header row, in Poutyne's column order:
    ``epoch``, (``batch``, ``size``), ``time``, ``lr`` (or ``lr_group_<i>``), ``loss``, the
    metrics, ``val_loss``, ``val_<metric>``. A value an epoch did not log (the ``val_*`` of
    an epoch a stop request cut short) is an empty cell. With ``batch_granularity`` each
    training batch adds a row before its epoch's row; as in Poutyne a batch row's ``epoch``,
    learning-rate and ``val_*`` cells are empty, and an epoch row's ``batch`` and ``size``
    cells are. Cells are written by :func:`epochal_adapters.tsv.format_cell` (floats as
    ``repr``: read back bit-identical).

    When it writes: the header at ``on_train_begin``, then after every epoch and at
    ``on_train_end``. Object stores cannot append, so the logger keeps the file's rows and
    rewrites it whole through the store (atomic on local disks, one upload on S3): a reader
    sees the file after some epoch, never a torn row. Batch rows reach the file at their
    epoch's end.

    Args:
        filename: A local path or fsspec URL (``file://``, ``memory://``, ``s3://...``), or
            with ``store`` a name in that store.
        batch_granularity: Also write one row per training batch.
        separator: The one-character field delimiter (``','`` for CSV, ``'\\t'`` for TSV).
        append: Continue an existing file: its rows are kept and new rows follow. A missing or
            empty file gets a header; an existing header must equal this training's columns.
            False: the file is overwritten when training begins.
        store: A :class:`~epochal.ports.CheckpointStore` holding the file; None to derive it
            from ``filename``.
        storage_options: fsspec options for a URL (S3 credentials, endpoint...).

    Raises:
        ConfigurationError: ``separator`` is not one character; ``filename`` is a directory;
            at ``on_train_begin`` with ``append``, the existing file's header differs from
            this training's columns (raised before anything is written).
        OSError: A write failed; the message contains the URL.
    """

    _flush_each_batch = False

    def __init__(
        self,
        filename: str | os.PathLike[str],
        *,
        batch_granularity: bool = False,
        separator: str = ",",
        append: bool = False,
        store: CheckpointStore | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(batch_granularity=batch_granularity)
        if not isinstance(separator, str) or len(separator) != 1:
            raise ConfigurationError(
                f"separator must be one character (',' for CSV, '\\t' for TSV); got "
                f"{separator!r}."
            )
        self.filename = os.fspath(filename)
        check_not_directory(type(self).__name__, self.filename, store)
        self.separator = separator
        self.append = append
        self.store = store
        self.storage_options = dict(storage_options or {})
        self.rows: list[list[str]] = []
        self._pending_state: tuple[list[str], list[list[str]]] | None = None
        self._location: tuple[CheckpointStore, str] | None = None
        self._dirty = False
        self._training = False

    # -- storage

    def _open(self) -> tuple[CheckpointStore, str]:
        if self._location is None:
            self._location = file_location(
                type(self).__name__, self.filename, self.store, self.storage_options
            )
        return self._location

    def text(self) -> str:
        """The file's full text as it is (or will be) written."""
        from epochal_adapters.tsv import format_table

        if self.fieldnames is None:
            return ""
        return format_table(self.fieldnames, self.rows, separator=self.separator).decode()

    def _flush(self) -> None:
        store, name = self._open()
        store.write(name, self.text().encode("utf-8"))
        self._dirty = False

    def _mismatch(self, found: Sequence[str], columns: Sequence[str], where: str) -> None:
        raise ConfigurationError(
            f"{type(self).__name__} cannot continue {where}: its columns are "
            f"[{', '.join(found)}] but this training logs [{', '.join(columns)}]. Write to a "
            "new file, or pass append=False to overwrite it."
        )

    def _add(self, row: Mapping[str, Any]) -> None:
        from epochal_adapters.tsv import format_cell

        assert self.fieldnames is not None
        self.rows.append([format_cell(c, row.get(c)) for c in self.fieldnames])
        self._dirty = True

    # -- state

    def state_dict(self) -> dict[str, Any]:
        """``{'fieldnames': [...], 'rows': [[cell, ...], ...]}``: the header and every row
        written so far (including rows of an appended file), as strings. No path."""
        if self._pending_state is not None:
            fieldnames, rows = self._pending_state
            return {"fieldnames": list(fieldnames), "rows": [list(r) for r in rows]}
        return {"fieldnames": list(self.fieldnames or []), "rows": [list(r) for r in self.rows]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`: outside training, the restored rows replace the
        file's content at the next ``on_train_begin`` (whatever ``append`` says); during
        training, they replace it now."""
        fieldnames = [str(f) for f in state.get("fieldnames", [])]
        rows = [[str(c) for c in row] for row in state.get("rows", [])]
        if not self._training:
            self._pending_state = (fieldnames, rows)
            return
        self.fieldnames = fieldnames or self.fieldnames
        self.rows = rows
        self._flush()

    # -- writes

    def _on_train_begin_write(self, logs: dict[str, Any]) -> None:
        from epochal_adapters.tsv import parse_table

        probe_location(type(self).__name__, self.filename, self.store, self.storage_options)
        columns = self.fieldnames
        rows: list[list[str]] = []
        pending, self._pending_state = self._pending_state, None
        if pending is not None and pending[0]:
            if columns is not None and pending[0] != columns:
                self._mismatch(pending[0], columns, "the restored log")
            columns, rows = list(pending[0]), [list(r) for r in pending[1]]
        elif self.append:
            store, name = self._open()
            try:
                existing = store.read(name)
            except FileNotFoundError:
                existing = b""
            header, old_rows = parse_table(existing, separator=self.separator)
            if header:
                if columns is not None and header != columns:
                    self._mismatch(header, columns, store.url(name))
                columns, rows = header, old_rows
        self.fieldnames = columns
        self.rows = rows
        self._training = True
        if self.fieldnames is not None:
            self._flush()

    def _on_train_batch_end_write(self, batch_number: int, logs: dict[str, Any]) -> None:
        self._add(logs)
        if self._flush_each_batch:
            self._flush()

    def _on_epoch_end_write(self, epoch_number: int, logs: dict[str, Any]) -> None:
        self._add(logs)
        self._flush()

    def _on_train_end_write(self, logs: dict[str, Any]) -> None:
        self._training = False
        if self._dirty:
            self._flush()


class AtomicCSVLogger(CSVLogger):
    """A :class:`CSVLogger` that rewrites the file atomically after every row, batch rows
    included (Poutyne's atomic CSV logger; :class:`CSVLogger`'s writes are atomic too, but
    batch rows wait for their epoch's end).

    Args:
        filename: As :class:`CSVLogger`.
        batch_granularity: As :class:`CSVLogger`.
        separator: As :class:`CSVLogger`.
        append: As :class:`CSVLogger`.
        temporary_filename: Accepted for Poutyne compatibility and unused: the store writes
            through its own temporary file.
        store: As :class:`CSVLogger`.
        storage_options: As :class:`CSVLogger`.
    """

    _flush_each_batch = True

    def __init__(
        self,
        filename: str | os.PathLike[str],
        *,
        batch_granularity: bool = False,
        separator: str = ",",
        append: bool = False,
        temporary_filename: str | None = None,
        store: CheckpointStore | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(filename, batch_granularity=batch_granularity, separator=separator,
                         append=append, store=store, storage_options=storage_options)
        self.temporary_filename = temporary_filename
