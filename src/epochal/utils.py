"""Poutyne's utility functions: converting nested tensors, inferring batch sizes, random states.

The nested-structure helpers walk lists, tuples (named tuples and ``PackedSequence``
included) and dicts, and leave every other value as it is (by reference). They are the
names Poutyne exports from ``poutyne.utils``; ``set_seeds`` is :func:`epochal.seeding.set_seeds`.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import warnings
from collections.abc import Callable, Iterator
from typing import IO, Any, BinaryIO

import numpy as np
import torch
from torch.nn.utils.rnn import PackedSequence
from torch.utils.data import Dataset

from epochal.exceptions import ShapeMismatchError
from epochal.seeding import set_seeds

__all__ = [
    "TensorDataset",
    "get_batch_size",
    "is_in_jupyter_notebook",
    "load_random_states",
    "numpy_to_torch",
    "save_random_states",
    "set_deterministic_debug_mode",
    "set_seeds",
    "torch_apply",
    "torch_to",
    "torch_to_numpy",
    "warning_settings",
]

#: Warnings epochal may silence, as in Poutyne: ``warning_settings['batch_size'] = 'ignore'``
#: silences the warning :func:`get_batch_size` gives when it cannot infer a batch size.
warning_settings: dict[str, str] = {"batch_size": "warn"}


def _apply(obj: Any, func: Callable[[Any], Any]) -> Any:
    """``func`` on every leaf of a structure of lists, tuples and dicts; a new structure."""
    if isinstance(obj, PackedSequence):
        # batch_sizes and the sort indices describe the packing: only the data is converted,
        # the index tensors are converted too (they are tensors) except batch_sizes, which
        # PyTorch requires to stay a CPU int64 tensor.
        return PackedSequence(
            _apply(obj.data, func),
            obj.batch_sizes,
            None if obj.sorted_indices is None else _apply(obj.sorted_indices, func),
            None if obj.unsorted_indices is None else _apply(obj.unsorted_indices, func),
        )
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple
        return type(obj)(*(_apply(element, func) for element in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_apply(element, func) for element in obj)
    if isinstance(obj, dict):
        return {key: _apply(value, func) for key, value in obj.items()}
    return func(obj)


def torch_apply(obj: Any, func: Callable[[torch.Tensor], Any]) -> Any:
    """Apply ``func`` to every tensor inside a nested structure of lists, tuples and dicts.

    Args:
        obj: The structure (or a single tensor).
        func: Called on each tensor; its result replaces the tensor.

    Returns:
        A new structure of the same shape (same container types, same dict keys) where each
        tensor is replaced by ``func(tensor)``; other values are kept by reference.
    """
    return _apply(obj, lambda value: func(value) if torch.is_tensor(value) else value)


def torch_to_numpy(obj: Any, copy: bool = False) -> Any:
    """Convert every tensor inside a nested structure to a NumPy array.

    Tensors are detached and moved to the CPU first (a device-to-host copy for tensors on
    an accelerator).

    Args:
        obj: The structure (or a single tensor).
        copy: When False (the default) an array made from a CPU tensor shares its memory;
            when True every array owns a copy.

    Returns:
        A new structure of the same shape with arrays in place of tensors; other values are
        kept by reference.
    """
    if copy:
        return torch_apply(obj, lambda t: t.detach().cpu().numpy().copy())
    return torch_apply(obj, lambda t: t.detach().cpu().numpy())


def numpy_to_torch(obj: Any) -> Any:
    """Convert every NumPy array inside a nested structure to a tensor (``torch.from_numpy``:
    the tensor shares the array's memory).

    Args:
        obj: The structure (or a single array).

    Returns:
        A new structure of the same shape with CPU tensors in place of arrays; other values
        are kept by reference.
    """
    return _apply(obj, lambda value: torch.from_numpy(value) if isinstance(value, np.ndarray) else value)


def torch_to(obj: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``tensor.to(*args, **kwargs)`` on every tensor inside a nested structure.

    Args:
        obj: The structure (or a single tensor).
        *args: Passed to :meth:`torch.Tensor.to` (a device, a dtype, ...).
        **kwargs: Passed to :meth:`torch.Tensor.to` (``non_blocking=True``, ...).

    Returns:
        A new structure of the same shape with the moved or cast tensors.
    """
    return torch_apply(obj, lambda t: t.to(*args, **kwargs))


def _length(obj: Any, where: str) -> int:
    if isinstance(obj, (list, tuple)):
        if not obj:
            raise ShapeMismatchError(
                f"TensorDataset got an empty list or tuple at {where}; expected tensors or "
                f"arrays (or lists/tuples of them) indexed along their first dimension."
            )
        lengths = [_length(element, f"{where}[{i}]") for i, element in enumerate(obj)]
        if any(length != lengths[0] for length in lengths):
            raise ShapeMismatchError(
                f"TensorDataset needs every tensor to have the same first dimension; at "
                f"{where} the lengths are {lengths}. Pass tensors with one row per example."
            )
        return lengths[0]
    return len(obj)


def _index(obj: Any, index: Any) -> Any:
    if isinstance(obj, (list, tuple)):
        return type(obj)(_index(element, index) for element in obj)
    return obj[index]


class TensorDataset(Dataset[Any]):
    """A dataset over tensors (or arrays) sharing their first dimension, possibly nested.

    ``TensorDataset(x, y)[i]`` is ``(x[i], y[i])``; ``TensorDataset((x1, x2), y)[i]`` is
    ``((x1[i], x2[i]), y[i])``: the nesting of the arguments is kept in each example, unlike
    :class:`torch.utils.data.TensorDataset`.

    Args:
        *tensors: Tensors, arrays, or lists/tuples of them, all of the same length.

    Raises:
        ShapeMismatchError: The first dimensions differ (the message lists them), or a
            list/tuple is empty.
    """

    def __init__(self, *tensors: Any) -> None:
        super().__init__()
        self.tensors = tensors
        self._len = _length(tensors, "tensors")

    def __getitem__(self, index: Any) -> Any:
        return _index(self.tensors, index)

    def __len__(self) -> int:
        return self._len


def _is_array(value: Any) -> bool:
    return torch.is_tensor(value) or isinstance(value, np.ndarray)


_BATCH_SIZE_RULES = (
    "epochal infers a batch size from the values of a batch in four steps; each step tries the "
    "values in order and the first success wins: (1) a tensor or NumPy array: its len(); "
    "(2) a list or tuple whose first element is a tensor or array: that element's len(); "
    "(3) a dict with an integer 'batch_size' entry: that entry; (4) a dict whose first value "
    "is a tensor or array: that value's len()."
)


def get_batch_size(*values: Any) -> int:
    """Infer the number of examples in a batch (Poutyne's rule).

    The steps, each trying ``values`` in order, the first success winning:

    1. a tensor or NumPy array: its ``len()``;
    2. a list or tuple whose first element is a tensor or array: that element's ``len()``;
    3. a dict with an integral ``'batch_size'`` entry: that entry;
    4. a dict whose first value is a tensor or array: that value's ``len()``.

    When no step succeeds the batch size is 1 and a ``UserWarning`` explains the rule; set
    ``epochal.utils.warning_settings['batch_size'] = 'ignore'`` to silence it.

    Args:
        *values: Usually the batch's inputs and targets: ``get_batch_size(x, y)``.

    Returns:
        The inferred batch size (1 when it cannot be inferred).
    """
    for value in values:
        if _is_array(value):
            return len(value)
    for value in values:
        if isinstance(value, (list, tuple)) and value and _is_array(value[0]):
            return len(value[0])
    for value in values:
        if isinstance(value, dict) and isinstance(value.get("batch_size"), numbers.Integral):
            return int(value["batch_size"])
    for value in values:
        if isinstance(value, dict) and value:
            first = next(iter(value.values()))
            if _is_array(first):
                return len(first)
    if warning_settings.get("batch_size", "warn") == "warn":
        warnings.warn(
            "Cannot infer the batch size of this batch; counting it as 1 example. "
            + _BATCH_SIZE_RULES
            + " To silence this warning: epochal.utils.warning_settings['batch_size'] = 'ignore'.",
            UserWarning,
            stacklevel=2,
        )
    return 1


def save_random_states(f: str | os.PathLike[str] | BinaryIO | IO[bytes]) -> None:
    """Save the states of Python's, NumPy's and PyTorch's (CPU and every CUDA device)
    random number generators.

    The file holds only tensors, numbers and strings, so :func:`load_random_states` reads it
    with ``torch.load(weights_only=True)``.

    Args:
        f: A path, an fsspec URL (written crash-safely) or a binary file object.
    """
    from epochal._io import save_torch
    from epochal.seeding import get_random_states

    save_torch(get_random_states(), f if not isinstance(f, os.PathLike) else os.fspath(f))  # type: ignore[arg-type]


def load_random_states(f: str | os.PathLike[str] | BinaryIO | IO[bytes]) -> None:
    """Restore the random states :func:`save_random_states` saved.

    Args:
        f: A path, an fsspec URL or a binary file object.

    Raises:
        FileNotFoundError: Nothing at the path.
        CheckpointError: The file is not a random-state file, or holds a pickled object
            (it is never unpickled: a file cannot run code).
    """
    from epochal._io import load_torch
    from epochal.exceptions import CheckpointError
    from epochal.seeding import set_random_states

    source = f if not isinstance(f, os.PathLike) else os.fspath(f)
    states = load_torch(source)  # type: ignore[arg-type]
    if not isinstance(states, dict) or not {"python", "numpy", "torch"} <= set(states):
        raise CheckpointError(
            f"{source!r} is not a random-state file: expected a dict with 'python', 'numpy' "
            f"and 'torch' entries as written by save_random_states."
        )
    set_random_states(states)


def is_in_jupyter_notebook() -> bool:
    """Whether the code runs in a Jupyter kernel (IPython's ``ZMQInteractiveShell``, or
    Colab's ``Shell``). False when IPython is not installed or not running."""
    try:
        from IPython import get_ipython  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return False
    return type(get_ipython()).__name__ in ("ZMQInteractiveShell", "Shell")


@contextlib.contextmanager
def set_deterministic_debug_mode(mode: str | int | None) -> Iterator[None]:
    """A context manager setting :func:`torch.set_deterministic_debug_mode` inside its block,
    restoring the previous mode on exit (also after an exception).

    Args:
        mode: ``'default'``/``0``, ``'warn'``/``1`` or ``'error'``/``2``; None leaves the
            mode as it is.
    """
    if mode is None:
        yield
        return
    previous = torch.get_deterministic_debug_mode()
    torch.set_deterministic_debug_mode(mode)
    try:
        yield
    finally:
        torch.set_deterministic_debug_mode(previous)
