"""Seeding every random number generator a training run draws from."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["set_seeds"]


def set_seeds(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and PyTorch (CPU and every CUDA
    device).

    Args:
        seed: A non-negative integer below 2**32 (NumPy's limit).

    Raises:
        ValueError: ``seed`` is negative or too large.
        TypeError: ``seed`` is not an int.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int; got {type(seed).__name__}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32); got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too
