"""The bundle's records: its statistics as pandas tables (the form Poutyne's bundle returns
them in), the best epoch's row, and loading a committed checkpoint into the network.

``BundleRecords`` is a part of :class:`~epochal.ModelBundle` (a mixin); it only reads what the
bundle's snapshot store has committed, or, in a directory Poutyne's ``ModelBundle`` wrote,
Poutyne's ``log.tsv`` and weights files (:mod:`epochal._poutyne_directory`). pandas is imported on call, so importing epochal does
not need it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from typing import Any

from epochal._poutyne_directory import is_poutyne_directory, poutyne_log_rows
from epochal._snapshots import SnapshotStore
from epochal.core import resume
from epochal.core.monitor import Monitor, best_epoch
from epochal.exceptions import CheckpointError, ConfigurationError, ResumeError
from epochal.model import Model
from epochal.ports import CheckpointStore

__all__ = ["BundleRecords", "rows_frame"]


def rows_frame(rows: Sequence[dict[str, Any]], *, columns: Iterable[str] | None = None) -> Any:
    """A ``pandas.DataFrame`` of log rows, one row per dict, columns in the rows' key order.

    Args:
        rows: Log rows (``epoch``, ``time``, ``loss``, ...), as ``log.tsv`` holds them.
        columns: Columns of an empty table (when ``rows`` is empty).

    Returns:
        The table, indexed ``0 .. len(rows) - 1`` as ``pandas.read_csv`` indexes
        ``log.tsv`` in Poutyne.

    Raises:
        ImportError: pandas is not installed; the message says how to install it.
    """
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas is a dependency
        raise ImportError(
            "ModelBundle statistics are pandas DataFrames, as in Poutyne; install pandas "
            "(pip install pandas)."
        ) from exc
    if not rows:
        return pd.DataFrame(columns=list(columns or ()))
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return pd.DataFrame([dict(row) for row in rows], columns=list(names))


def _print_row(row: dict[str, Any]) -> None:
    """Print an epoch's statistics after ``epoch`` and ``time`` as Poutyne's bundle does:
    ``lr: 0.01, loss: 0.523, acc: 81.2, ...`` (``%g``)."""
    shown = [(k, v) for k, v in row.items() if k not in ("epoch", "time")]
    print(", ".join(f"{k}: {float(v):g}" if isinstance(v, (int, float)) else f"{k}: {v}"
                    for k, v in shown))


class BundleRecords:
    """The statistics and checkpoint-loading methods of :class:`~epochal.ModelBundle`."""

    # Set by ModelBundle.__init__.
    _snapshots: SnapshotStore
    monitor: Monitor | None
    model: Model
    store: CheckpointStore
    directory: str
    logging: bool

    # ------------------------------------------------------------------ checkpoints

    def get_saved_epochs(self) -> Any:
        """The log rows of the epochs that have a ``checkpoint_epoch_{epoch}.ckpt`` file,
        ascending, as a ``pandas.DataFrame`` (Poutyne's return value; ``['epoch']`` gives
        the epoch numbers).

        Raises:
            ConfigurationError: The bundle does not monitor (Poutyne's ``ValueError``).
        """
        if self.monitor is None:
            raise ConfigurationError(
                "Monitoring was disabled (monitoring=False): no best checkpoints are saved, "
                "only the last epoch's (load_checkpoint('last'))."
            )
        saved = set(self._snapshots.saved_epochs())
        rows = [r for r in self._stats_rows() if int(r["epoch"]) in saved]
        return rows_frame(rows, columns=["epoch"])

    def load_checkpoint(
        self, checkpoint: str | int = "best", *, verbose: bool = False, strict: bool = True
    ) -> Any:
        """Load weights into the network: ``'best'`` (the best epoch's checkpoint, or the last
        without monitoring), ``'last'``, an epoch number, the name of a weights file in the
        bundle's directory (``'checkpoint_epoch_3.ckpt'``), or a path/URL of a weights file.

        Args:
            checkpoint: Which weights (see above).
            verbose: Print what Poutyne's bundle prints: the best epoch for ``'best'``, the
                file loaded and the epoch's statistics (``lr: 0.01, loss: 0.52, ...``).
            strict: Require the file's keys to match the network's exactly.

        Returns:
            As Poutyne's: the epoch's log row as a one-row ``pandas.DataFrame`` (its index the
            row's position in :meth:`get_stats`) for ``'best'``, ``'last'`` and an epoch
            number (``['epoch'].item()`` gives the epoch); None for a file name or path.

        Raises:
            CheckpointError: No such checkpoint (the message lists the saved epochs), or the
                file is not a weights checkpoint of this network.
        """
        rows = self._stats_rows()
        row = self._load_checkpoint(checkpoint, verbose=verbose, strict=strict, rows=rows)
        if row is None:
            return None
        index = rows.index(row)
        return rows_frame(rows).iloc[index : index + 1]

    def _load_checkpoint(
        self,
        checkpoint: str | int,
        *,
        verbose: bool,
        strict: bool,
        rows: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any] | None:
        """:meth:`load_checkpoint`, returning the epoch's row as a dict (or None)."""
        if isinstance(checkpoint, str) and checkpoint.strip().isdigit():
            checkpoint = int(checkpoint)
        elif hasattr(checkpoint, "__index__") and not isinstance(checkpoint, (str, bool)):
            checkpoint = int(checkpoint.__index__())
        if isinstance(checkpoint, str) and checkpoint not in ("best", "last") and not any(
            mark in checkpoint for mark in ("/", "\\", ".")
        ):
            close = difflib.get_close_matches(checkpoint, ["best", "last"], n=1)
            raise CheckpointError(
                f"load_checkpoint({checkpoint!r}): expected 'best', 'last', an epoch number or "
                f"the path of a weights file." + (f" Did you mean {close[0]!r}?" if close else "")
            )
        rows = self._stats_rows() if rows is None else rows
        if checkpoint == "best":
            if self.monitor is None:
                checkpoint = "last"
            else:
                best_row = self._best_row(rows)
                checkpoint = int(best_row["epoch"])
                if verbose:
                    print(f"Found best checkpoint at epoch: {checkpoint}")
                    _print_row(best_row)
                    print(f"Loading checkpoint {self._path_of(resume.best_name(checkpoint))}")
                self.model.set_weights(
                    self._snapshots.read_weights(resume.best_name(checkpoint)), strict=strict
                )
                return best_row
        if checkpoint == "last":
            row = rows[-1] if rows else None
            if verbose:
                print(f"Loading checkpoint {self._path_of(resume.LAST)}")
                if row is not None:
                    _print_row(row)
            weights = self._snapshots.read_weights(resume.LAST)
            self.model.set_weights(weights, strict=strict)
            return row
        if isinstance(checkpoint, int) and not isinstance(checkpoint, bool):
            name = resume.best_name(checkpoint)
            row = next((r for r in rows if int(r["epoch"]) == checkpoint), None)
            if verbose:
                print(f"Loading checkpoint {self._path_of(name)}")
                if row is not None:
                    _print_row(row)
            if not self.store.exists(name):
                raise CheckpointError(
                    f"No checkpoint for epoch {checkpoint} in {self.directory}; saved epochs: "
                    f"{self._snapshots.saved_epochs()} (use save_every_epoch=True to keep every "
                    "epoch)."
                )
            self.model.set_weights(self._snapshots.read_weights(name), strict=strict)
            return row
        if isinstance(checkpoint, str):
            if verbose:
                print(f"Loading checkpoint {checkpoint}")
            if "/" not in checkpoint and "\\" not in checkpoint and self.store.exists(checkpoint):
                # A file of the bundle's own directory, named relative to it.
                self.model.set_weights(self._snapshots.read_weights(checkpoint), strict=strict)
                return None
            from epochal._io import load_torch

            self.model.set_weights(load_torch(checkpoint), strict=strict)
            return None
        raise TypeError(
            f"checkpoint must be 'best', 'last', an epoch number or a path; got {checkpoint!r}"
        )

    def _path_of(self, name: str) -> str:
        """The path or URL of ``name`` in the bundle's directory, as Poutyne prints it."""
        get_path = getattr(self, "get_path", None)
        return str(get_path(name)) if callable(get_path) else self.store.url(name)

    # ------------------------------------------------------------------ stats

    def get_stats(self) -> Any:
        """The committed log rows as a ``pandas.DataFrame``, one row per epoch, the columns
        of ``log.tsv`` (Poutyne's return value). ``.to_dict('records')`` gives the list of
        dicts ``fit`` returns.

        Raises:
            ConfigurationError: No epoch is logged yet, or the bundle has ``logging=False``
                (Poutyne's ``ValueError``).
        """
        rows = self._stats_rows()
        if not rows:
            raise ConfigurationError(
                f"There are no logs available in {self.directory}: train it first, with "
                "logging enabled (logging=True)."
            )
        return rows_frame(rows)

    def _stats_rows(self) -> list[dict[str, Any]]:
        if not self.logging:
            return []
        if is_poutyne_directory(self.store):  # read as Poutyne reads it, never changed
            return poutyne_log_rows(self.store)
        snapshot = self._snapshots.read_latest().snapshot
        return [dict(r) for r in snapshot.log_rows] if snapshot else []

    def get_best_epoch_stats(self) -> Any:
        """The log row of the best epoch of the monitored metric, as a one-row
        ``pandas.DataFrame`` keeping its index in :meth:`get_stats` (Poutyne's return value).

        Raises:
            ConfigurationError: The bundle does not monitor, or no epoch is logged yet
                (Poutyne's ``ValueError``).
        """
        if self.monitor is None:
            raise ConfigurationError(
                "Monitoring was disabled (monitoring=False): there is no best epoch; "
                "get_stats().iloc[-1:] is the last one."
            )
        self.get_stats()  # raises when nothing is logged
        rows = self._stats_rows()
        best = self._best_row(rows)
        index = rows.index(best)
        return rows_frame(rows).iloc[index : index + 1]

    def _best_row(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not rows:
            raise ResumeError(f"{self.directory} holds no trained epoch yet.")
        if self.monitor is None:
            return rows[-1]
        key = self.monitor.key
        values = [float(r[key]) if r.get(key) is not None else math.nan for r in rows]
        epoch = best_epoch(values, self.monitor, first_epoch=int(rows[0]["epoch"]))
        return next((r for r in rows if int(r["epoch"]) == epoch), rows[-1])

    def is_better_than(self, another_model_bundle: BundleRecords) -> bool:
        """Whether this bundle's best monitored value beats ``another_model_bundle``'s (same
        metric, same mode; ties are not better).

        Raises:
            TypeError: ``another_model_bundle`` is not a ModelBundle.
            ConfigurationError: The bundles monitor different metrics or modes, or one does not
                monitor.
        """
        other = another_model_bundle
        if not isinstance(other, BundleRecords):
            raise TypeError(
                f"is_better_than compares two ModelBundle objects; got {type(other).__name__}. "
                "Open the other directory first: ModelBundle.from_network(directory, network, ...)."
            )
        if self.monitor is None or other.monitor is None:
            raise ConfigurationError("is_better_than needs both bundles to monitor a metric.")
        if (self.monitor.key, self.monitor.mode) != (other.monitor.key, other.monitor.mode):
            raise ConfigurationError(
                f"Cannot compare bundles monitoring {self.monitor.key} ({self.monitor.mode}) and "
                f"{other.monitor.key} ({other.monitor.mode})."
            )
        mine = float(self._best_row(self._stats_rows())[self.monitor.key])
        theirs = float(other._best_row(other._stats_rows())[other.monitor.key])
        return self.monitor.improves(mine, theirs)
