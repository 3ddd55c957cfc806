"""Tests of :mod:`epochal.seeding`: seeding every generator, saving and restoring states."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch

from epochal.seeding import get_random_states, set_random_states, set_seeds


def _draws() -> tuple[list[float], list[float], list[float]]:
    """Draws from the three generators a training uses, gaussian caches included."""
    python = [random.random(), random.gauss(0.0, 1.0), random.random()]
    numpy = [float(v) for v in np.random.randn(3)]  # legacy: caches a gaussian
    torch_draws = torch.rand(3).tolist()
    return python, numpy, torch_draws


def test_set_seeds_repeats_every_generator() -> None:
    """The same seed gives the same Python, NumPy and PyTorch draws; another seed differs."""
    set_seeds(123)
    first = _draws()
    set_seeds(123)
    assert _draws() == first
    set_seeds(124)
    assert _draws() != first


@pytest.mark.parametrize("seed", [True, 1.0, "1"])
def test_set_seeds_refuses_non_integers(seed: object) -> None:
    """A bool, float or string seed raises TypeError naming the type."""
    with pytest.raises(TypeError, match="seed must be an int"):
        set_seeds(seed)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_set_seeds_refuses_out_of_range(seed: int) -> None:
    """Seeds outside [0, 2**32) raise ValueError naming the seed."""
    with pytest.raises(ValueError, match=str(seed)):
        set_seeds(seed)


def test_set_seeds_accepts_the_range_ends() -> None:
    """0 and 2**32 - 1 are valid seeds, and each is the seed torch and NumPy then draw from."""
    for seed in (0, 2**32 - 1):
        set_seeds(seed)
        assert torch.initial_seed() == seed
        draw = np.random.rand()
        np.random.seed(seed)
        assert np.random.rand() == draw


def test_restored_states_repeat_the_draws() -> None:
    """Draws after set_random_states(state) equal the draws made right after capturing it,
    with a gaussian cached in Python's and NumPy's generators at capture time."""
    set_seeds(7)
    random.gauss(0.0, 1.0)  # leaves gauss_next set
    np.random.randn(1)  # leaves NumPy's cached gaussian set
    states = get_random_states()
    expected = _draws()
    _draws()
    set_random_states(states)
    assert _draws() == expected


def test_states_survive_a_weights_only_round_trip() -> None:
    """The states load with torch.load(weights_only=True) and still restore the draws."""
    set_seeds(11)
    states = get_random_states()
    expected = _draws()
    buffer = io.BytesIO()
    torch.save(states, buffer)
    loaded = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    set_random_states(loaded)
    assert _draws() == expected


def test_absent_parts_are_left_alone() -> None:
    """A state holding only 'torch' restores PyTorch and leaves Python's generator as it is."""
    set_seeds(3)
    torch_only = {"torch": get_random_states()["torch"]}
    expected_torch = torch.rand(2).tolist()
    random.seed(99)
    expected_python = random.random()
    random.seed(99)
    set_random_states(torch_only)
    assert torch.rand(2).tolist() == expected_torch
    assert random.random() == expected_python


def test_a_state_of_the_wrong_form_raises_value_error() -> None:
    """A Python state vector of the wrong length raises ValueError."""
    states = get_random_states()
    states["python"] = dict(states["python"], state=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError):
        set_random_states(states)


def test_a_state_missing_a_field_raises_value_error_naming_it() -> None:
    """A 'numpy' part without its 'key' raises ValueError naming the missing field, before
    any generator is changed by that part."""
    states = get_random_states()
    states["numpy"] = {k: v for k, v in states["numpy"].items() if k != "key"}
    with pytest.raises(ValueError, match="'key'"):
        set_random_states(states)


def test_set_seeds_none_leaves_the_generators_alone() -> None:
    """set_seeds(None) does nothing, as in Poutyne: the draws continue the current streams."""
    set_seeds(3)
    _draws()
    expected = _draws()
    set_seeds(3)
    _draws()
    set_seeds(None)
    assert _draws() == expected
