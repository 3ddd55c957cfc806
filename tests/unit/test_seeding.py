"""set_seeds: Poutyne's seeding of Python, NumPy and PyTorch."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from epochal import set_seeds


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_same_seed_same_draws():
    """Seeding twice with one seed repeats the draws of all three generators."""
    set_seeds(7)
    first = _draws()
    set_seeds(7)
    assert _draws() == first


def test_none_leaves_the_generators_alone():
    """set_seeds(None) does nothing, as in Poutyne: the draws continue the current streams."""
    set_seeds(3)
    _draws()
    expected = _draws()
    set_seeds(3)
    _draws()
    set_seeds(None)
    assert _draws() == expected


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (2**32, ValueError),
                                         ("1", TypeError), (True, TypeError)])
def test_bad_seed_is_refused(seed, error):
    """A seed outside [0, 2**32) or not an int is refused before anything is seeded."""
    with pytest.raises(error, match="seed"):
        set_seeds(seed)
