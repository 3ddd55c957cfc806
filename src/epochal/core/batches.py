"""Pure helpers on batches: unpacking, moving to a device, batch size, forward call.

Inputs may be tensors, NumPy arrays, tuples/lists (spread as positional arguments of the
network, as in Poutyne) and dicts (passed as one argument), nested.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch

from epochal.exceptions import EmptyLoaderError

__all__ = [
    "cycle_batches",
    "forward",
    "infer_batch_size",
    "skip_batches",
    "split_batch",
    "to_device",
    "to_tensor",
]


def to_tensor(obj: Any) -> Any:
    """Convert NumPy arrays (nested in tuples, lists, dicts) to tensors; leave the rest."""
    if isinstance(obj, torch.Tensor):
        return obj
    if type(obj).__module__ == "numpy" and hasattr(obj, "__array__") and hasattr(obj, "shape"):
        return torch.from_numpy(obj) if obj.shape != () else torch.as_tensor(obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(to_tensor(o) for o in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_tensor(o) for o in obj)
    if isinstance(obj, Mapping):
        return {k: to_tensor(v) for k, v in obj.items()}
    return obj


def to_device(obj: Any, device: torch.device | None) -> Any:
    """Move every tensor in ``obj`` (nested tuples, lists, dicts; NumPy arrays are converted)
    to ``device``. ``device=None`` converts without moving. Copies are non-blocking where the
    source is pinned, so no host sync is forced."""
    if isinstance(obj, torch.Tensor):
        if device is None or obj.device == device:
            return obj
        return obj.to(device, non_blocking=True)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(to_device(o, device) for o in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if type(obj).__module__ == "numpy" and hasattr(obj, "shape"):
        return to_device(to_tensor(obj), device)
    return obj


def split_batch(batch: Any, *, has_ground_truth: bool = True) -> tuple[Any, Any]:
    """Split a loader's batch into ``(x, y)``.

    Args:
        batch: ``(x, y)`` (a 2-sequence) when ``has_ground_truth``; else ``x`` alone.
        has_ground_truth: Whether the batch holds targets.

    Returns:
        ``(x, y)``; ``y`` is ``None`` without ground truth.

    Raises:
        ValueError: ``has_ground_truth`` and the batch is not a 2-sequence.
    """
    if not has_ground_truth:
        return batch, None
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    kind = type(batch).__name__
    size = f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""
    raise ValueError(
        f"A batch must be an (x, y) pair; got a {kind}{size}. Make the loader yield (inputs, "
        "targets), or use predict_generator(..., has_ground_truth=False) for inputs alone."
    )


def _first_len(obj: Any) -> int | None:
    if isinstance(obj, torch.Tensor) or (
        type(obj).__module__ == "numpy" and hasattr(obj, "shape")
    ):
        return int(obj.shape[0]) if len(obj.shape) > 0 else None
    if isinstance(obj, (tuple, list)):
        for item in obj:
            found = _first_len(item)
            if found is not None:
                return found
    if isinstance(obj, Mapping):
        for item in obj.values():
            found = _first_len(item)
            if found is not None:
                return found
    return None


def infer_batch_size(x: Any, y: Any) -> int:
    """Number of examples in a batch: the first dimension of the first tensor or array found
    in ``x``, then in ``y`` (depth-first). Warns and returns 1 when none is found (Poutyne's
    convention), so that means are then per batch, not per example."""
    size = _first_len(x)
    if size is None:
        size = _first_len(y)
    if size is None:
        warnings.warn(
            "epochal could not infer the batch size (no tensor or array in the batch); each "
            "batch is weighted as one example in the epoch means.",
            stacklevel=3,
        )
        return 1
    return size


def forward(network: torch.nn.Module, x: Any) -> Any:
    """Call the network: a tuple or list ``x`` is spread as positional arguments, anything
    else is passed as one argument."""
    if isinstance(x, (tuple, list)):
        return network(*x)
    return network(x)


def cycle_batches(loader: Iterable[Any], steps: int | None, *, what: str) -> Iterator[Any]:
    """Yield ``steps`` batches from ``loader``, starting a new pass whenever it runs out; all
    of one pass when ``steps`` is None. Each new pass calls ``iter(loader)`` once, as a plain
    ``for`` loop would (so a shuffling DataLoader draws the same random numbers).

    Raises:
        EmptyLoaderError: The loader yields no batch at all.
    """
    if steps is not None and steps <= 0:
        return
    produced = 0
    while True:
        produced_this_pass = 0
        for batch in loader:
            yield batch
            produced += 1
            produced_this_pass += 1
            if steps is not None and produced >= steps:
                return
        if produced_this_pass == 0:
            if produced > 0 or iter(loader) is loader:
                raise EmptyLoaderError(
                    f"The {what} loader is exhausted: it is a one-shot iterator (e.g. a Python "
                    "generator), which can be read only once. Pass a re-iterable loader (a "
                    "DataLoader, a list of batches), or an endless generator with "
                    "steps_per_epoch (validation_steps, steps) set."
                )
            raise EmptyLoaderError(
                f"The {what} loader yielded no batch. Expected at least one batch; check the "
                "dataset's length, batch_size and drop_last."
            )
        if steps is None:
            return

def skip_batches(
    batches: Iterable[Any], count: int, *, then: Callable[[], None] | None = None
) -> Iterator[Any]:
    """The batches after the first ``count`` (drawn and dropped), calling ``then()`` once they
    are dropped, before the first batch is yielded."""
    iterator = iter(batches)
    for _ in range(count):
        next(iterator, None)
    if then is not None:
        then()
    yield from iterator
