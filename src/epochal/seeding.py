"""Seeding every random number generator a training run draws from, and saving and restoring
their states."""

from __future__ import annotations

import random
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["get_random_states", "set_random_states", "set_seeds"]


def set_seeds(seed: int | None) -> None:
    """Seed Python's ``random``, NumPy's global generator and PyTorch (CPU and every CUDA
    device).

    Args:
        seed: A non-negative integer below 2**32 (NumPy's limit), or None to leave every
            generator as it is (Poutyne's behaviour).

    Raises:
        ValueError: ``seed`` is negative or too large.
        TypeError: ``seed`` is neither an int nor None.
    """
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int; got {type(seed).__name__}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32); got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too



def get_random_states() -> dict[str, Any]:
    """The states of every random number generator a training draws from, in a form that
    ``torch.load(weights_only=True)`` accepts (tensors, ints, floats, strings, None).

    Returns:
        A dict with the keys ``'python'`` (``{'version', 'state', 'gauss_next'}``),
        ``'numpy'`` (``{'bit_generator', 'key', 'pos', 'has_gauss', 'cached_gaussian'}``) and
        ``'torch'`` (a ByteTensor), plus ``'cuda'`` (one ByteTensor per device) when CUDA is
        available.
    """
    version, internal, gauss_next = random.getstate()
    numpy_state = np.random.get_state(legacy=True)
    assert isinstance(numpy_state, tuple)
    bit_generator, key, pos, has_gauss, cached_gaussian = numpy_state
    states: dict[str, Any] = {
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": None if gauss_next is None else float(gauss_next),
        },
        "numpy": {
            "bit_generator": str(bit_generator),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64).copy()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = list(torch.cuda.get_rng_state_all())
    return states


def set_random_states(states: Mapping[str, Any]) -> None:
    """Restore what :func:`get_random_states` returned; absent parts are left alone.

    CUDA states are restored on as many devices as both the saved state and this machine
    have (a ``RuntimeWarning`` when the counts differ); ignored without CUDA.

    Raises:
        ValueError: A part has the wrong form (e.g. a state from another format).
    """
    try:
        _set_host_states(states)
    except (KeyError, TypeError) as exc:
        raise ValueError(
            f"set_random_states: the state lacks or mistypes {exc}; expected what "
            "get_random_states returns ('python', 'numpy', 'torch', 'cuda' parts)."
        ) from exc
    torch_state = states.get("torch")
    if torch_state is not None:
        torch.set_rng_state(torch.as_tensor(torch_state, dtype=torch.uint8).cpu())
    cuda_states = states.get("cuda")
    if cuda_states is not None and torch.cuda.is_available():
        count = torch.cuda.device_count()
        if count != len(cuda_states):
            warnings.warn(
                f"set_random_states: the state holds {len(cuda_states)} CUDA generator(s) but "
                f"this machine has {count} device(s); restoring the first "
                f"{min(count, len(cuda_states))}.",
                RuntimeWarning,
                stacklevel=2,
            )
        for index, state in enumerate(cuda_states[:count]):
            torch.cuda.set_rng_state(torch.as_tensor(state, dtype=torch.uint8).cpu(), index)


def _set_host_states(states: Mapping[str, Any]) -> None:
    """Restore the Python and NumPy parts of ``states`` (absent parts are left alone)."""
    python = states.get("python")
    if python is not None:
        internal = tuple(int(v) for v in torch.as_tensor(python["state"]).tolist())
        gauss_next = python.get("gauss_next")
        random.setstate(
            (int(python["version"]), internal, None if gauss_next is None else float(gauss_next))
        )
    numpy_part = states.get("numpy")
    if numpy_part is not None:
        key = np.asarray(torch.as_tensor(numpy_part["key"]).numpy(), dtype=np.uint32)
        np.random.set_state(
            (
                str(numpy_part["bit_generator"]),
                key,
                int(numpy_part["pos"]),
                int(numpy_part["has_gauss"]),
                float(numpy_part["cached_gaussian"]),
            )
        )
