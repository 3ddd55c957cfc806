"""``TensorBoardLogger``: the epoch logs and learning rates as TensorBoard scalars."""

from __future__ import annotations

import os
from typing import Any

from epochal.callbacks.logger import Logger

__all__ = ["TensorBoardLogger"]


class TensorBoardLogger(Logger):
    """Write each epoch's logs and learning rates as TensorBoard scalars (step = epoch).

    With ``split_train_val=False`` a training value and its validation value share one graph:
    ``add_scalars('loss', {'loss': ..., 'val_loss': ...}, epoch)`` (likewise each metric,
    ``epoch`` and ``time``), and the learning rates go to ``add_scalars('lr', {...})``. With
    ``split_train_val=True`` each value is its own scalar (``add_scalar('val_loss', ...)``,
    ``add_scalar('lr', ...)``). The writer is closed when training ends (a
    ``SummaryWriter`` reopens its files if written to again).

    Args:
        writer: A ``torch.utils.tensorboard.SummaryWriter`` (anything implementing
            :class:`epochal_adapters.tensorboard.ScalarWriter`), or a log directory for which
            one is made (needs ``pip install tensorboard``).
        split_train_val: Whether each training and validation value gets its own graph.

    Raises:
        ImportError: A log directory was given and ``tensorboard`` is not installed.
    """

    def __init__(self, writer: Any, split_train_val: bool = False) -> None:
        super().__init__(batch_granularity=False)
        if isinstance(writer, (str, os.PathLike)):
            from epochal_adapters.tensorboard import summary_writer

            writer = summary_writer(writer)
        self.writer = writer
        self.split_train_val = split_train_val

    def _on_epoch_end_write(self, epoch_number: int, logs: dict[str, Any]) -> None:
        from epochal.callbacks.logger import is_lr_key

        values = {k: float(v) for k, v in logs.items() if not is_lr_key(k)}
        learning_rates = {k: float(v) for k, v in logs.items() if is_lr_key(k)}
        if self.split_train_val:
            for key, value in {**values, **learning_rates}.items():
                self.writer.add_scalar(key, value, epoch_number)
            return
        groups: dict[str, dict[str, float]] = {}
        for key, value in values.items():
            groups.setdefault(key[4:] if key.startswith("val_") else key, {})[key] = value
        for group, scalars in groups.items():
            self.writer.add_scalars(group, scalars, epoch_number)
        if learning_rates:
            self.writer.add_scalars("lr", learning_rates, epoch_number)

    def _on_train_end_write(self, logs: dict[str, Any]) -> None:
        self.writer.close()
