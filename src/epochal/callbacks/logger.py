"""``Logger``: Poutyne's base of the loggers that write one row per epoch (and optionally
per training batch), with the learning rates in the epoch rows.

The columns are Poutyne's: ``epoch``, (``batch``, ``size`` with batch granularity), ``time``,
the learning rates (``lr``, or ``lr_group_<i>`` for several parameter groups), ``loss``, the
metrics, ``val_loss`` and ``val_<metric>``. The learning rates are read from the model
(``model.learning_rates()``) when an epoch row is made, whether or not the logs carry them.
A batch row holds the batch's logs as they are (``batch``, ``size``, ``time``, ``loss``,
metrics): its ``epoch`` and learning-rate cells stay empty, as in Poutyne.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from epochal.callbacks.base import _HOOKS, Callback

__all__ = ["Logger", "is_lr_key", "validation_columns"]

_BATCH_COLUMNS = ("batch", "size")


def is_lr_key(key: str) -> bool:
    """True for a learning-rate key (``lr``, ``lr_group_<i>``)."""
    return key == "lr" or key.startswith("lr_group_")


def validation_columns(keys: list[str]) -> list[str]:
    """The ``val_<key>`` columns missing from ``keys``: Poutyne's loggers always have a
    ``val_`` twin of ``loss`` and of every metric, left empty when nothing is validated.

    Args:
        keys: Epoch log keys (``epoch``, ``time``, ``loss``, metrics, maybe ``val_*``).

    Returns:
        The missing ``val_`` keys, in the order of their training keys.
    """
    train = [k for k in keys
             if k not in ("epoch", "time") and not k.startswith("val_") and not is_lr_key(k)]
    return [f"val_{k}" for k in train if f"val_{k}" not in keys]


class Logger(Callback):
    """Base of the row loggers: subclasses write what the ``_on_*_write`` methods get.

    Args:
        batch_granularity: Also make a row for each training batch.

    Attributes:
        fieldnames: The columns, fixed at ``on_train_begin`` (None until then, or while the
            model does not say which keys it logs: then the first row fixes them).
        epoch_number: The current epoch (for batch rows).

    Subclass hooks (all no-ops here): ``_on_train_begin_write(logs)``,
    ``_on_epoch_begin_write(epoch_number, logs)``,
    ``_on_train_batch_end_write(batch_number, logs)``,
    ``_on_epoch_end_write(epoch_number, logs)``, ``_on_train_end_write(logs)``; the logs they
    get are already reduced to the columns; epoch rows carry the learning rates, batch rows
    neither the epoch nor the learning rates (Poutyne's rows).
    """

    def __init__(self, *, batch_granularity: bool = False) -> None:
        super().__init__()
        self.batch_granularity = batch_granularity
        self.epoch_number = 0
        self.fieldnames: list[str] | None = None

    @property
    def used_hooks(self) -> frozenset[str]:
        """The hooks the class defines; the batch hook only with ``batch_granularity`` (no
        per-batch work otherwise)."""
        hooks = {hook for hook in _HOOKS
                 if getattr(type(self), hook, None) is not getattr(Callback, hook)}
        if not self.batch_granularity:
            hooks.discard("on_train_batch_end")
        return frozenset(hooks)

    # -- columns and rows

    def _learning_rates(self) -> dict[str, float]:
        learning_rates = getattr(getattr(self, "model", None), "learning_rates", None)
        return dict(learning_rates()) if callable(learning_rates) else {}

    def columns(self) -> list[str] | None:
        """The columns of this training, in Poutyne's order (None when the model does not
        list its epoch log keys)."""
        keys = [k for k in getattr(self.model, "epoch_log_keys", ()) or () if not is_lr_key(k)]
        if not keys:
            return None
        keys += validation_columns(keys)
        at = keys.index("time") + 1 if "time" in keys else (
            keys.index("epoch") + 1 if "epoch" in keys else 0)
        keys[at:at] = list(self._learning_rates())
        if self.batch_granularity:
            at = keys.index("epoch") + 1 if "epoch" in keys else 0
            keys[at:at] = [c for c in _BATCH_COLUMNS if c not in keys]
        return keys

    def _row(
        self, logs: Mapping[str, Any], head: Mapping[str, Any], *, learning_rates: bool = True
    ) -> dict[str, Any]:
        row = dict(head)
        row.update((k, v) for k, v in logs.items() if not is_lr_key(k))
        if learning_rates:
            row.update(self._learning_rates())
        if self.fieldnames is None:
            ordered: dict[str, Any] = {
                k: row[k] for k in ("epoch", "batch", "size", "time") if k in row}
            lrs = {k: v for k, v in row.items() if is_lr_key(k)}
            row = {**ordered, **lrs, **row}
            self.fieldnames = list(row)
        return {k: row[k] for k in self.fieldnames if row.get(k) is not None}

    # -- hooks

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.fieldnames = self.columns()
        self._on_train_begin_write(logs)

    def on_epoch_begin(self, epoch_number: int, logs: dict[str, Any]) -> None:
        self.epoch_number = epoch_number
        self._on_epoch_begin_write(epoch_number, logs)

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        if self.batch_granularity:
            # Poutyne writes a batch's logs as they are: no epoch, no learning rate.
            row = self._row(logs, {"batch": batch_number}, learning_rates=False)
            self._on_train_batch_end_write(batch_number, row)

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        row = self._row(
            {k: v for k, v in logs.items() if k not in _BATCH_COLUMNS}, {"epoch": epoch_number}
        )
        self._on_epoch_end_write(epoch_number, row)

    def on_train_end(self, logs: dict[str, Any]) -> None:
        self._on_train_end_write(logs)

    # -- what subclasses write

    def _on_train_begin_write(self, logs: dict[str, Any]) -> None:
        pass

    def _on_epoch_begin_write(self, epoch_number: int, logs: dict[str, Any]) -> None:
        pass

    def _on_train_batch_end_write(self, batch_number: int, logs: dict[str, Any]) -> None:
        pass

    def _on_epoch_end_write(self, epoch_number: int, logs: dict[str, Any]) -> None:
        pass

    def _on_train_end_write(self, logs: dict[str, Any]) -> None:
        pass
