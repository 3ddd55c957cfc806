"""Per-layer statistics of the weights' gradients, accumulated over each epoch's training
batches: ``WeightsGradientsStatsTracker`` (the accumulator), ``GradientTracker`` (the
callback base) and ``TensorBoardGradientTracker``.

The statistics stay on the gradients' device while an epoch runs (no host sync per step);
they are read once, when the epoch ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from epochal.callbacks.base import Callback

__all__ = ["GradientTracker", "TensorBoardGradientTracker", "WeightsGradientsStatsTracker"]


class WeightsGradientsStatsTracker:
    """Running statistics of the gradients of ``number_layers`` layers over batches.

    Per layer: the running mean of the batch's mean absolute gradient and its running
    variance (Welford's online algorithm: B. P. Welford, "Note on a method for calculating
    corrected sums of squares and products", Technometrics 4(3), 1962; the sample variance,
    0 until two batches are seen), the minimum and maximum gradient and the minimum and
    maximum absolute gradient over all batches.

    Args:
        number_layers: The number of layers tracked (the length of each
            :meth:`batch_statistic_upgrade` input).
    """

    def __init__(self, number_layers: int) -> None:
        self.number_layers = number_layers
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen."""
        self.count = 0
        self._mean: torch.Tensor | None = None
        self._m2: torch.Tensor | None = None
        self._extremes: torch.Tensor | None = None  # (4, layers): min, abs_min, -max, -abs_max

    def batch_statistic_upgrade(
        self, named_parameters: Iterable[tuple[str, torch.nn.Parameter]]
    ) -> None:
        """Add one batch: the current ``.grad`` of each parameter (a parameter without a
        gradient counts as a zero gradient).

        Args:
            named_parameters: ``(name, parameter)`` pairs, ``number_layers`` of them, in the
                same order at every call.
        """
        with torch.no_grad():
            abs_means, extremes = [], []
            for _name, parameter in named_parameters:
                grad = parameter.grad
                if grad is None:
                    grad = torch.zeros_like(parameter)
                grad = grad.detach().float()
                magnitude = grad.abs()
                abs_means.append(magnitude.mean())
                extremes.append(torch.stack([grad.min(), magnitude.min(), -grad.max(),
                                             -magnitude.max()]))
            batch_mean = torch.stack(abs_means)
            batch_extremes = torch.stack(extremes, dim=1)
            self.count += 1
            if self._mean is None or self._m2 is None or self._extremes is None:
                self._mean = batch_mean
                self._m2 = torch.zeros_like(batch_mean)
                self._extremes = batch_extremes
                return
            delta = batch_mean - self._mean
            self._mean = self._mean + delta / self.count
            self._m2 = self._m2 + delta * (batch_mean - self._mean)
            self._extremes = torch.minimum(self._extremes, batch_extremes)

    def get_stats(self, layer_names: list[str]) -> dict[str, dict[str, float]]:
        """The statistics per layer, then :meth:`reset` (one device-to-host copy).

        Args:
            layer_names: The names of the tracked layers, in order.

        Returns:
            ``{layer: {'mean', 'mean_std_dev_up', 'mean_std_dev_down', 'min', 'abs_min',
            'max', 'abs_max'}}`` (mean ± one standard deviation of the mean absolute
            gradient); empty when no batch was seen.
        """
        if self._mean is None or self._m2 is None or self._extremes is None:
            return {}
        variance = self._m2 / (self.count - 1) if self.count > 1 else torch.zeros_like(self._m2)
        table = torch.cat([self._mean[None], variance.sqrt()[None], self._extremes]).cpu()
        rows = table.tolist()
        stats: dict[str, dict[str, float]] = {}
        for index, name in enumerate(layer_names):
            mean, std = rows[0][index], rows[1][index]
            stats[name] = {
                "mean": mean,
                "mean_std_dev_up": mean + std,
                "mean_std_dev_down": mean - std,
                "min": rows[2][index],
                "abs_min": rows[3][index],
                "max": -rows[4][index],
                "abs_max": -rows[5][index],
            }
        self.reset()
        return stats


class GradientTracker(Callback):
    """Base of the callbacks that track the gradient statistics of the network's layers
    during each epoch and report them when it ends (:meth:`_on_epoch_end_log`).

    Args:
        keep_bias: Also track the parameters whose name contains ``'bias'``.

    Attributes:
        layer_names: The tracked parameters (those requiring a gradient), set at train begin.
        tracker: The :class:`WeightsGradientsStatsTracker`.
    """

    def __init__(self, keep_bias: bool = False) -> None:
        super().__init__()
        self.keep_bias = keep_bias
        self.layer_names: list[str] = []
        self.number_layers = 0
        self.tracker: WeightsGradientsStatsTracker | None = None

    def _keep_layer(self, layer_params: torch.nn.Parameter, layer_name: str) -> bool:
        return layer_params.requires_grad and (self.keep_bias or "bias" not in layer_name)

    def _tracked(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in self.model.network.named_parameters() if self._keep_layer(p, n)]

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.layer_names = [name for name, _ in self._tracked()]
        self.number_layers = len(self.layer_names)
        self.tracker = WeightsGradientsStatsTracker(self.number_layers)

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        assert self.tracker is not None
        if self.number_layers:
            self.tracker.batch_statistic_upgrade(self._tracked())

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        self._on_epoch_end_log(epoch_number, logs)

    def _on_epoch_end_log(self, epoch_number: int, logs: dict[str, Any]) -> None:
        """What a subclass does with the epoch's statistics (``self.tracker.get_stats``)."""


class TensorBoardGradientTracker(GradientTracker):
    """Write each layer's gradient statistics to TensorBoard at each epoch's end:
    ``gradient_distributions/<layer>`` (``mean``, ``mean_std_dev_up``,
    ``mean_std_dev_down``) and ``other_gradient_stats/<layer>`` (``min``, ``max``), with
    ``add_scalars`` at step = epoch.

    Args:
        writer: A ``SummaryWriter`` (see :mod:`epochal_adapters.tensorboard`).
        keep_bias: Also track the bias parameters.
    """

    def __init__(self, writer: Any, keep_bias: bool = False) -> None:
        super().__init__(keep_bias)
        self.writer = writer

    def _on_epoch_end_log(self, epoch_number: int, logs: dict[str, Any]) -> None:
        assert self.tracker is not None
        stats = self.tracker.get_stats(self.layer_names)
        for layer, values in stats.items():
            for key in ("mean", "mean_std_dev_up", "mean_std_dev_down"):
                self.writer.add_scalars(f"gradient_distributions/{layer}", {key: values[key]},
                                        epoch_number)
            for key in ("min", "max"):
                self.writer.add_scalars(f"other_gradient_stats/{layer}", {key: values[key]},
                                        epoch_number)
