"""The training and evaluation steps under mixed precision.

:func:`epochal.core.loop.run_epoch` picks these once per pass when its setup carries a
:class:`~epochal.core.precision.MixedPrecision`; with ``precision='32'`` it keeps its plain
float32 steps, so the default path does no extra work per step.

One optimizer step reads: forward pass and loss under autocast; ``precision.backward`` (the
loss scaled first for ``'16-mixed'``); at the group's end ``precision.unscale_`` (gradients
back to their true size), the accumulation normalisation, the ``gradients_ready`` hook
(gradient clipping sees true gradients), ``precision.step`` (skipped by the scaler on
inf/NaN gradients) and ``precision.update``. The network's output is cast to float32 before
the metrics see it, so metrics are computed in float32, and predictions come back in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from epochal.core import steps
from epochal.core.precision import MixedPrecision, float32_outputs

__all__ = ["MixedSteps", "mixed_steps"]

TrainStep = Callable[..., tuple[torch.Tensor, tuple[torch.Tensor, ...], Any]]
EvalStep = Callable[..., tuple[torch.Tensor | float, tuple[torch.Tensor, ...], Any]]
OptimizerStep = Callable[..., None]
MixedSteps = tuple[TrainStep, EvalStep, OptimizerStep]


def mixed_steps(precision: MixedPrecision) -> MixedSteps:
    """The ``(train_step, eval_step, optimizer_step)`` functions of a pass in ``precision``,
    with the signatures of :func:`epochal.core.loop.train_step`,
    :func:`epochal.core.loop.eval_step` and the loop's optimizer step.

    Args:
        precision: The training's autocast/scaler helper (its scaler state is updated in
            place by every optimizer step).

    Returns:
        The three step functions, bound to ``precision``.
    """

    def train_step(
        setup: steps.EpochSetup, x: Any, y: Any, *, loss_scale: float | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], Any]:
        assert setup.loss_function is not None
        if not torch.is_grad_enabled():
            with torch.enable_grad():
                return train_step(setup, x, y, loss_scale=loss_scale)
        with precision.autocast():
            y_pred = steps._call_network(setup.network, x)
            loss = steps.compute_loss(setup.loss_function, y_pred, y)
        precision.backward(loss, loss_scale)
        y_pred = float32_outputs(steps._detach(y_pred))
        values = steps._batch_metric_values(setup, y_pred, y)
        if setup.epoch_metrics:
            with torch.no_grad():
                for metric in setup.epoch_metrics:
                    metric.update(y_pred, y)
        return loss.detach().float(), values, y_pred

    def eval_step(
        setup: steps.EpochSetup, x: Any, y: Any
    ) -> tuple[torch.Tensor | float, tuple[torch.Tensor, ...], Any]:
        with torch.no_grad():
            with precision.autocast():
                y_pred = steps._call_network(setup.network, x)
                if y is None or setup.loss_function is None:
                    return steps._NO_LOSS, (), float32_outputs(y_pred)
                loss = steps.compute_loss(setup.loss_function, y_pred, y)
            y_pred = float32_outputs(y_pred)
            values = steps._batch_metric_values(setup, y_pred, y)
            for metric in setup.epoch_metrics:
                metric.update(y_pred, y)
        return loss.float(), values, y_pred

    def optimizer_step(
        optimizer: torch.optim.Optimizer,
        params: list[torch.nn.Parameter],
        group_batches: list[int],
        accumulate: bool,
        before_optimizer_step: Callable[[int], None] | None,
        step: int,
    ) -> None:
        precision.unscale_(optimizer)
        if accumulate:
            steps._scale_gradients(params, 1.0 / float(sum(group_batches)))
        if before_optimizer_step is not None:
            before_optimizer_step(step)
        precision.step(optimizer)
        precision.update()

    return train_step, eval_step, optimizer_step
