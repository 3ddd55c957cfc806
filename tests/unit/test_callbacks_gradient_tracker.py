"""Gradient statistics over an epoch: WeightsGradientsStatsTracker, GradientTracker and
TensorBoardGradientTracker, checked against statistics computed with NumPy from copies of
the gradients."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from epochal import Callback, Model
from epochal.callbacks.gradient_tracker import (
    GradientTracker,
    TensorBoardGradientTracker,
    WeightsGradientsStatsTracker,
)


class _GradCopies(Callback):
    """Copies every parameter's gradient at each training batch end, per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.by_epoch: dict[int, list[dict[str, np.ndarray]]] = {}
        self.epoch = 0

    def on_epoch_begin(self, epoch_number: int, logs: dict[str, Any]) -> None:
        self.epoch = epoch_number
        self.by_epoch[epoch_number] = []

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        self.by_epoch[self.epoch].append(
            {n: p.grad.detach().numpy().copy() for n, p in self.model.network.named_parameters()})


class _RecordingWriter:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, float], int]] = []

    def add_scalars(self, tag: str, values: dict[str, float], step: int) -> None:
        self.calls.append((tag, dict(values), step))


def _fit(callbacks: list[Callback], epochs: int = 2) -> None:
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    model = Model(network, "sgd", nn.MSELoss())
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(12, 3, generator=g), torch.randn(12, 1, generator=g)
    batches = [(x[i:i + 4], y[i:i + 4]) for i in range(0, 12, 4)]
    model.fit_generator(batches, epochs=epochs, verbose=False, callbacks=callbacks)


def _expected(grads: list[np.ndarray]) -> dict[str, float]:
    """Statistics written out from their definitions."""
    abs_means = np.array([np.abs(g).mean() for g in grads], dtype=np.float64)
    std = abs_means.std(ddof=1) if len(grads) > 1 else 0.0
    return {
        "mean": abs_means.mean(),
        "mean_std_dev_up": abs_means.mean() + std,
        "mean_std_dev_down": abs_means.mean() - std,
        "min": min(g.min() for g in grads),
        "abs_min": min(np.abs(g).min() for g in grads),
        "max": max(g.max() for g in grads),
        "abs_max": max(np.abs(g).max() for g in grads),
    }


class _Collect(GradientTracker):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stats: dict[int, dict[str, dict[str, float]]] = {}

    def _on_epoch_end_log(self, epoch_number: int, logs: dict[str, Any]) -> None:
        assert self.tracker is not None
        self.stats[epoch_number] = self.tracker.get_stats(self.layer_names)


class TestGradientTracker:
    def test_epoch_statistics_match_numpy(self):
        """Each epoch's statistics are those of that epoch's batches only (reset at each
        epoch), for every weight layer; min and max are the true extremes (not clipped at
        0)."""
        copies, tracker = _GradCopies(), _Collect()
        _fit([copies, tracker])
        assert tracker.layer_names == ["0.weight", "2.weight"]
        for epoch in (1, 2):
            for layer in tracker.layer_names:
                expected = _expected([b[layer] for b in copies.by_epoch[epoch]])
                got = tracker.stats[epoch][layer]
                for key, value in expected.items():
                    assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (epoch, layer, key)
                assert got["abs_min"] >= 0 and got["min"] <= got["max"]

    def test_keep_bias_tracks_the_biases(self):
        """keep_bias=True adds the bias parameters."""
        tracker = _Collect(keep_bias=True)
        _fit([tracker], epochs=1)
        assert tracker.layer_names == ["0.weight", "0.bias", "2.weight", "2.bias"]

    def test_tensorboard_tracker_writes_grouped_scalars(self):
        """TensorBoardGradientTracker writes gradient_distributions/<layer> and
        other_gradient_stats/<layer> per epoch."""
        writer = _RecordingWriter()
        _fit([TensorBoardGradientTracker(writer)], epochs=2)
        tags = {(tag, next(iter(values)), step) for tag, values, step in writer.calls}
        for step in (1, 2):
            for key in ("mean", "mean_std_dev_up", "mean_std_dev_down"):
                assert ("gradient_distributions/0.weight", key, step) in tags
            for key in ("min", "max"):
                assert ("other_gradient_stats/2.weight", key, step) in tags

    def test_accumulator_without_batches_is_empty(self):
        """get_stats before any batch returns no statistics."""
        assert WeightsGradientsStatsTracker(2).get_stats(["a", "b"]) == {}
