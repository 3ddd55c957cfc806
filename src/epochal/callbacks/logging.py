"""Logging callbacks: CSV/TSV files on any storage URL, TensorBoard scalars, structlog events.

The library never configures logging: :class:`StructlogLogger` uses
``structlog.get_logger("epochal")``, fetched lazily, unless the application injects a logger.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from epochal.callbacks.base import Callback
from epochal.exceptions import ConfigurationError

__all__ = ["CSVLogger", "EventLogger", "ScalarWriter", "StructlogLogger", "TensorBoardLogger"]

_BATCH_COLUMNS = ("batch", "size")
_INT_COLUMNS = frozenset({"epoch", "batch", "size"})


def _cell(key: str, value: Any) -> str:
    """One CSV cell: empty for None, integers for ``epoch``/``batch``/``size``, ``repr`` of
    floats (round-trips exactly)."""
    if value is None:
        return ""
    if hasattr(value, "item") and callable(value.item):  # 0-dim tensors and NumPy scalars
        value = value.item()
    if key in _INT_COLUMNS and isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    return str(value)


class CSVLogger(Callback):
    """Write the epoch logs (and optionally the batch logs) to a CSV or TSV file.

    The file is UTF-8 text with exactly one header row. Its columns are the epoch log keys of
    the training, in order (``model.epoch_log_keys``: ``epoch``, ``time``, ``loss``, the
    metrics, ``val_loss`` and ``val_<metric>`` when validating, ``lr`` or ``lr_group_<i>``);
    with ``batch_granularity`` ``batch`` and ``size`` follow ``epoch``. An epoch row has one
    cell per column; a value the epoch did not log (a metric logged on some epochs only, the
    ``val_*`` of an epoch a stop request cut short) is an empty cell. With
    ``batch_granularity`` each training batch adds a row (``epoch``, ``batch``, ``size``,
    ``time``, ``loss``, the batch metrics and the learning rates; other cells empty) before its
    epoch's row, whose ``batch`` and ``size`` cells are empty.

    When it writes: the header at ``on_train_begin``, then after every epoch
    (``on_epoch_end``) and at ``on_train_end``. Object stores cannot append, so the logger keeps
    the file's full text and rewrites it whole through the storage port
    (``FsspecCheckpointStore.write``: atomic on local disks, one upload on S3): a reader sees
    the file after some epoch, never a torn row. Batch rows reach the file at their epoch's end.

    Args:
        filename: A local path or fsspec URL (``file://``, ``memory://``, ``s3://...``).
        batch_granularity: Also write one row per training batch.
        separator: The one-character field delimiter (``','`` for CSV, ``'\\t'`` for TSV).
        append: Continue an existing file: its rows are kept and new rows follow. A missing or
            empty file gets a header; an existing header must equal this training's columns.
            False: the file is overwritten when training begins.
        storage_options: fsspec options for the URL (S3 credentials, endpoint...).

    Raises:
        ConfigurationError: ``separator`` is not one character; at ``on_train_begin`` with
            ``append``, the existing file's header differs from this training's columns (raised
            before anything is written, so the file stays as it was).
        OSError: A write failed; the message contains the URL.
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        *,
        batch_granularity: bool = False,
        separator: str = ",",
        append: bool = False,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(separator, str) or len(separator) != 1:
            raise ConfigurationError(
                f"separator must be one character (',' for CSV, '\\t' for TSV); got "
                f"{separator!r}."
            )
        self.filename = os.fspath(filename)
        self.batch_granularity = batch_granularity
        self.separator = separator
        self.append = append
        self.storage_options = dict(storage_options or {})
        self.fieldnames: list[str] | None = None
        self.rows: list[list[str]] = []
        self._pending_state: tuple[list[str], list[list[str]]] | None = None
        self._store: Any = None
        self._name = ""
        self._epoch = 0
        self._dirty = False
        self._training = False

    @property
    def used_hooks(self) -> frozenset[str]:
        """The hooks this logger acts on: the batch hooks only with ``batch_granularity``
        (so without it no batch logs, and no per-batch device-to-host copy, are made)."""
        hooks = {"on_train_begin", "on_epoch_end", "on_train_end"}
        if self.batch_granularity:
            hooks |= {"on_epoch_begin", "on_train_batch_end"}
        return frozenset(hooks)

    # ------------------------------------------------------------------ storage

    def _open_store(self) -> tuple[Any, str]:
        if self._store is None:
            from epochal_adapters.storage import FsspecCheckpointStore, split_url

            parent, name = split_url(self.filename)
            self._store = FsspecCheckpointStore(parent, storage_options=self.storage_options)
            self._name = name
        return self._store, self._name

    def _read_existing(self) -> str | None:
        store, name = self._open_store()
        try:
            data: bytes = store.read(name)
        except FileNotFoundError:
            return None
        return data.decode("utf-8-sig")

    def text(self) -> str:
        """The file's full text as it is (or will be) written."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=self.separator, lineterminator="\n")
        if self.fieldnames is not None:
            writer.writerow(self.fieldnames)
            writer.writerows(self.rows)
        return buffer.getvalue()

    def _flush(self) -> None:
        store, name = self._open_store()
        store.write(name, self.text().encode("utf-8"))
        self._dirty = False

    # ------------------------------------------------------------------ columns and rows

    def _columns(self) -> list[str] | None:
        keys = list(getattr(self.model, "epoch_log_keys", ()) or ())
        if not keys:
            return None
        if self.batch_granularity:
            at = keys.index("epoch") + 1 if "epoch" in keys else 0
            keys[at:at] = [c for c in _BATCH_COLUMNS if c not in keys]
        return keys

    def _mismatch(self, found: Sequence[str], columns: Sequence[str], where: str) -> None:
        raise ConfigurationError(
            f"CSVLogger cannot continue {where}: its columns are [{', '.join(found)}] but this "
            f"training logs [{', '.join(columns)}]. Write to a new file, or pass append=False "
            "to overwrite it."
        )

    def _add_row(self, values: Mapping[str, Any]) -> None:
        if self.fieldnames is None:
            # The training's keys were unknown at train begin: the first row sets them.
            self.fieldnames = list(values)
        self.rows.append([_cell(c, values.get(c)) for c in self.fieldnames])
        self._dirty = True

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """``{'fieldnames': [...], 'rows': [[cell, ...], ...]}``: the header and every row
        written so far (including rows of an appended file), as strings."""
        if self._pending_state is not None:
            fieldnames, rows = self._pending_state
            return {"fieldnames": list(fieldnames), "rows": [list(r) for r in rows]}
        return {
            "fieldnames": list(self.fieldnames or []),
            "rows": [list(r) for r in self.rows],
        }

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

    # ------------------------------------------------------------------ hooks

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        """Fix the columns, take the rows to keep (restored state, or the existing file with
        ``append``), check the header, and write the file (header and kept rows)."""
        columns = self._columns()
        rows: list[list[str]] = []
        pending, self._pending_state = self._pending_state, None
        if pending is not None and pending[0]:
            if columns is not None and pending[0] != columns:
                self._mismatch(pending[0], columns, "the restored log")
            columns = list(pending[0])
            rows = [list(r) for r in pending[1]]
        elif self.append:
            existing = self._read_existing()
            if existing is not None and existing.strip():
                parsed = [r for r in csv.reader(io.StringIO(existing), delimiter=self.separator)
                          if r]
                header, rows = parsed[0], parsed[1:]
                if columns is not None and header != columns:
                    url = self._open_store()[0].url(self._name)
                    self._mismatch(header, columns, f"{url}")
                columns = header
        self.fieldnames = columns
        self.rows = rows
        self._epoch = 0
        self._training = True
        if self.fieldnames is not None:
            self._flush()

    def on_epoch_begin(self, epoch_number: int, logs: dict[str, Any]) -> None:
        """Remember the epoch number for batch rows."""
        self._epoch = epoch_number

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        """With ``batch_granularity``, add the batch's row (written at the epoch's end)."""
        if not self.batch_granularity:
            return
        row: dict[str, Any] = {"epoch": self._epoch, **logs, "batch": batch_number}
        learning_rates = getattr(self.model, "learning_rates", None)
        if callable(learning_rates):
            row.update(learning_rates())
        self._add_row(row)

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        """Add the epoch's row and rewrite the file."""
        row = dict(logs)
        if self.batch_granularity:
            for column in _BATCH_COLUMNS:
                row.pop(column, None)
        self._add_row(row)
        self._flush()

    def on_train_end(self, logs: dict[str, Any]) -> None:
        """Rewrite the file if anything changed since the last write."""
        self._training = False
        if self._dirty:
            self._flush()


class ScalarWriter(Protocol):
    """What :class:`TensorBoardLogger` needs: ``torch.utils.tensorboard.SummaryWriter``'s
    ``add_scalar`` and ``flush``."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> Any: ...

    def flush(self) -> Any: ...


class TensorBoardLogger(Callback):
    """Write the epoch logs as TensorBoard scalars, one point per epoch (x = epoch number).

    A metric and its validation value share a group: ``loss/train`` and ``loss/valid``,
    ``acc/train`` and ``acc/valid``; the learning rate is ``lr`` (``lr/group_<i>`` for several
    parameter groups). ``epoch`` and ``time`` are not written. The writer is flushed at
    ``on_train_end`` and left open (the application owns it).

    Needs the ``tensorboard`` extra for ``SummaryWriter`` (``pip install epochal[tensorboard]``).

    Args:
        writer: A ``torch.utils.tensorboard.SummaryWriter`` (or anything with its
            ``add_scalar(tag, value, step)`` and ``flush()``).
    """

    def __init__(self, writer: ScalarWriter) -> None:
        super().__init__()
        self.writer = writer

    @staticmethod
    def tag(key: str) -> str | None:
        """The scalar tag of an epoch log key, or None for keys not written."""
        if key in ("epoch", "time"):
            return None
        if key == "lr":
            return "lr"
        if key.startswith("lr_group_"):
            return f"lr/group_{key[len('lr_group_'):]}"
        if key.startswith("val_"):
            return f"{key[len('val_'):]}/valid"
        return f"{key}/train"

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        """Write each logged value under its tag at step ``epoch_number``."""
        for key, value in logs.items():
            tag = self.tag(key)
            if tag is None or value is None:
                continue
            self.writer.add_scalar(tag, float(value), epoch_number)

    def on_train_end(self, logs: dict[str, Any]) -> None:
        """Flush the writer."""
        self.writer.flush()


class EventLogger(Protocol):
    """What :class:`StructlogLogger` needs from a logger: structlog's
    ``info(event, **key_values)``."""

    def info(self, event: str, /, **key_values: Any) -> Any: ...


class StructlogLogger(Callback):
    """Log one structlog event per epoch, at info level, with the epoch's logs as key-values.

    The event (named ``event``, ``'epoch_end'`` by default) carries ``epoch``, ``time``
    (seconds), ``loss``, the metrics, ``val_*`` and ``lr``, plus ``complete`` (False when a
    stop request cut the epoch short). A log key that would clash with ``event`` or
    ``complete`` is logged as ``metric_<key>``. The library never configures logging.

    Args:
        logger: The logger to write to (anything with structlog's ``info(event, **kw)``);
            None for ``structlog.get_logger("epochal")``, fetched at the first event so the
            application's ``structlog.configure`` applies.
        event: The event name.
    """

    def __init__(self, logger: EventLogger | None = None, *, event: str = "epoch_end") -> None:
        super().__init__()
        self._logger = logger
        self.event = event

    @property
    def logger(self) -> EventLogger:
        """The injected logger, or ``structlog.get_logger("epochal")`` (fetched once)."""
        if self._logger is None:
            import structlog

            self._logger = structlog.get_logger("epochal")
        return self._logger

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        """Log the epoch's event."""
        complete = bool(getattr(self.model, "epoch_complete", True))
        fields: dict[str, Any] = {}
        for key, value in logs.items():
            fields[f"metric_{key}" if key in ("event", "complete") else key] = value
        fields["complete"] = complete
        self.logger.info(self.event, **fields)
