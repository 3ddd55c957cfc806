"""Pure building of Poutyne's epoch logs: the keys ``fit`` writes and one epoch's row.

Example:
    >>> from epochal.core.logs import epoch_log_keys, epoch_log_row
    >>> from epochal.core.records import EpochRecord, PassPhase
    >>> train = EpochRecord(phase=PassPhase.TRAIN, epoch=2, steps=3, samples=96, loss=0.5,
    ...                     metrics={"acc": 80.0}, duration_s=1.5)
    >>> valid = EpochRecord(phase=PassPhase.VALID, epoch=2, steps=1, samples=32, loss=0.75,
    ...                     metrics={"acc": 70.0}, duration_s=0.25)
    >>> epoch_log_row(epoch=2, train=train, valid=valid, duration_s=2.0)
    {'epoch': 2, 'time': 2.0, 'loss': 0.5, 'acc': 80.0, 'val_loss': 0.75, 'val_acc': 70.0}
    >>> epoch_log_keys(["acc"], with_validation=True)
    ('epoch', 'time', 'loss', 'acc', 'val_loss', 'val_acc')
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from epochal.core.records import EpochRecord

__all__ = ["epoch_log_keys", "epoch_log_row"]


def epoch_log_keys(metric_names: Iterable[str], *, with_validation: bool) -> tuple[str, ...]:
    """The keys of the epoch logs ``fit`` writes, in Poutyne's order.

    Args:
        metric_names: Log names of the batch then epoch metrics.
        with_validation: Whether a validation pass runs each epoch.

    Returns:
        ``('epoch', 'time', 'loss', *metrics)`` then, when validating,
        ``('val_loss', *('val_' + metric))``.
    """
    names = list(metric_names)
    keys = ["epoch", "time", "loss", *names]
    if with_validation:
        keys += ["val_loss", *(f"val_{name}" for name in names)]
    return tuple(keys)


def epoch_log_row(
    *, epoch: int, train: EpochRecord, valid: EpochRecord | None, duration_s: float
) -> dict[str, Any]:
    """One epoch's log row with Poutyne's keys, from the records of its passes.

    Args:
        epoch: 1-based epoch number.
        train: The epoch's training pass.
        valid: The epoch's validation pass, or None (no validation, or a pass cut short).
        duration_s: Wall time of the whole epoch (training and validation), seconds.

    Returns:
        The epoch's row, in :func:`epoch_log_keys` order, the ``val_`` keys only with
        ``valid``: ``{'epoch': epoch, 'time': duration_s, 'loss': ..., <metric>: ...,
        'val_loss': ..., 'val_<metric>': ...}``.
    """
    row: dict[str, Any] = {"epoch": epoch, "time": duration_s}
    row.update(train.logs())
    if valid is not None:
        row.update(valid.logs())
    return row
