"""``Experiment``: Poutyne's older name for :class:`~epochal.ModelBundle`.

In Poutyne 1.19, ``Experiment`` is ``ModelBundle.from_network``: calling it with a working
directory and a network returns a :class:`~epochal.ModelBundle` (with the ``task`` defaults,
``monitor_metric`` and ``monitor_mode`` attributes). epochal keeps the same rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from epochal.bundle import ModelBundle
from epochal.ports import CheckpointStore

__all__ = ["Experiment"]


def Experiment(
    directory: str | CheckpointStore,
    network: nn.Module,
    *,
    device: torch.device | str | None = None,
    logging: bool = True,
    optimizer: torch.optim.Optimizer | str | Mapping[str, Any] = "sgd",
    loss_function: Callable[..., Any] | str | None = None,
    batch_metrics: Sequence[Any] | None = None,
    epoch_metrics: Sequence[Any] | None = None,
    monitoring: bool = True,
    monitor_metric: str | None = None,
    monitor_mode: str | None = None,
    task: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    precision: str = "32",
    compile: bool | Mapping[str, Any] = False,
) -> ModelBundle:
    """A :class:`~epochal.ModelBundle` around ``network`` in ``directory`` (same arguments and
    defaults as :meth:`ModelBundle.from_network`).

    Args:
        directory: Working directory: a local path, an fsspec URL or a ``CheckpointStore``.
        network: The network to train.
        device: Device to move the network to.
        logging: Write logs, checkpoints and state (False: train without files).
        optimizer: Optimizer, its name, or a dict with ``optim`` and its keywords.
        loss_function: Loss, or None for the network's ``loss_function`` attribute, else the
            task's default (``'classif'``: cross-entropy; ``'reg'``/``'regr'``: MSE), else
            none (a bundle for inference: ``train`` refuses it).
        batch_metrics: Batch metrics (None or empty: the network's attribute, else the
            task's).
        epoch_metrics: Epoch metrics (None or empty: the network's attribute, else the
            task's).
        monitoring: Track a best epoch.
        monitor_metric: Monitored key (default ``'val_loss'`` or the task's).
        monitor_mode: ``'min'`` or ``'max'`` (default: the task's with the task's
            ``monitor_metric``, else ``'min'``).
        task: A name starting with ``'classif'`` or ``'reg'``, or None.
        storage_options: fsspec options for a URL directory.
        precision: ``'32'``, ``'bf16-mixed'`` or ``'16-mixed'`` (see :class:`~epochal.Model`).
        compile: False, True or ``torch.compile`` options (see :class:`~epochal.Model`).

    Returns:
        The bundle.

    Raises:
        ConfigurationError: Unknown task; a precision or compile option the Model refuses.
    """
    return ModelBundle.from_network(
        directory,
        network,
        device=device,
        logging=logging,
        optimizer=optimizer,
        loss_function=loss_function,
        batch_metrics=batch_metrics,
        epoch_metrics=epoch_metrics,
        monitoring=monitoring,
        monitor_metric=monitor_metric,
        monitor_mode=monitor_mode,
        task=task,
        storage_options=storage_options,
        precision=precision,
        compile=compile,
    )
