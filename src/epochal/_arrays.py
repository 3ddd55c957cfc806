"""Loaders from in-memory arrays and the collection of per-batch outputs as NumPy arrays.

The shell's helpers behind ``Model.fit``/``evaluate``/``predict`` on tensors and NumPy arrays:
a dataset over nested arrays, an order-keeping loader for evaluation, and the conversion of
collected outputs to NumPy.

Example:
    >>> import torch
    >>> from epochal._arrays import ArrayDataset, collect
    >>> dataset = ArrayDataset(torch.arange(6.0).reshape(3, 2), torch.tensor([0, 1, 0]))
    >>> len(dataset), dataset[1]
    (3, (tensor([2., 3.]), tensor(1)))
    >>> collect([torch.zeros(2), torch.ones(1)], concatenate=True)
    array([0., 0., 1.], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from epochal.core.batches import to_tensor
from epochal.exceptions import ConfigurationError

__all__ = [
    "ArrayDataset",
    "DeviceArg",
    "check_epochs",
    "check_parallel_devices",
    "check_positive",
    "collect",
    "concat",
    "devices_of",
    "loader_len",
    "ordered_loader",
    "single_device",
    "to_numpy",
    "validation_pair",
]


def check_positive(name: str, value: int | None, *, allow_none: bool = True) -> None:
    """Raise unless ``value`` is a positive int (or None when ``allow_none``).

    Raises:
        ConfigurationError: The message names the argument and the value given.
    """
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive int; got {value!r}.")


def check_epochs(epochs: int, initial_epoch: int) -> None:
    """Raise unless ``epochs`` is an int >= 0 and ``initial_epoch`` an int >= 1.

    ``epochs=0`` or ``epochs < initial_epoch`` is allowed: the training runs no epoch and
    returns ``[]``, as Poutyne's ``range(initial_epoch, epochs + 1)`` does.

    Raises:
        ConfigurationError: The message names the argument, the value given and the range.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigurationError(
            f"epochs must be an int >= 0 (the last epoch to run, inclusive; 0, or less than "
            f"initial_epoch, trains nothing and returns []); got {epochs!r}."
        )
    if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, int) or initial_epoch < 1:
        raise ConfigurationError(
            f"initial_epoch must be an int >= 1 (epochs are numbered from 1); got "
            f"{initial_epoch!r}. Poutyne runs an extra epoch numbered 0 for initial_epoch=0; "
            "epochal does not. Pass initial_epoch=1 to start a training, or k + 1 to continue "
            "one that finished epoch k."
        )


DeviceArg = torch.device | str | int
"""One device as ``Model(device=...)`` and ``Model.to`` take it."""

_SEVERAL_DEVICES = (
    "Here one device is expected; several devices (Poutyne's DataParallel mode) are taken by "
    "Model(device=[...]) and Model.to([...]). For several GPUs or machines, launching with "
    "torchrun and strategy='ddp' scales better (see docs/scaling-out.md)."
)


def check_parallel_devices(value: Any, devices: tuple[torch.device, ...]) -> None:
    """``torch.nn.parallel.data_parallel`` runs on CUDA devices only (it raises "device type
    could not be determined" at the first batch otherwise): say so before any work.

    Raises:
        ConfigurationError: One of ``devices`` is not a CUDA device.
    """
    others = sorted({str(device) for device in devices if device.type != "cuda"})
    if others:
        raise ConfigurationError(
            f"device={value!r} names several devices, which run the forward pass with "
            f"torch.nn.parallel.data_parallel, and that needs CUDA devices; {others} "
            "is not. Pass CUDA devices (e.g. ['cuda:0', 'cuda:1']) or one device."
        )


def devices_of(value: Any) -> tuple[DeviceArg, torch.device, tuple[torch.device, ...]]:
    """The devices ``value`` names, as Poutyne's ``Model.to`` reads them: ``(the device as
    given, as a torch.device, the other devices)``.

    A list (or tuple) names its first element as the main device and the rest as the other
    devices of ``torch.nn.parallel.data_parallel``; ``'all'`` names every CUDA device
    (``'cuda:0'`` first); anything else is one device (:func:`single_device`).

    Raises:
        ConfigurationError: An empty list, ``'all'`` where torch sees no CUDA device, or an
            element that is not a device torch knows.
    """
    if isinstance(value, str) and value == "all":
        count = torch.cuda.device_count()
        if count == 0:
            raise ConfigurationError(
                "device='all' asks for every CUDA device, and torch sees none on this machine; "
                "pass one device, e.g. device='cpu'."
            )
        value = [f"cuda:{index}" for index in range(count)]
    if isinstance(value, (list, tuple)):
        if not value:
            raise ConfigurationError(
                f"device={value!r} names no device; expected one, e.g. device='cuda:0', or "
                "a list of devices, e.g. ['cuda:0', 'cuda:1']."
            )
        given, target = single_device(value[0])
        others = tuple(single_device(device)[1] for device in value[1:])
        if others:
            check_parallel_devices(value, (target, *others))
        return given, target, others
    given, target = single_device(value)
    return given, target, ()


def single_device(value: Any) -> tuple[DeviceArg, torch.device]:
    """The one device ``value`` names: ``(as given, as a torch.device)``.

    A one-element list gives its element (as in Poutyne, where it runs no ``DataParallel``).

    Raises:
        ConfigurationError: ``value`` is a list of several devices (or none), ``'all'``, or
            not a device torch knows; the message names the value and what to pass instead.
    """
    given = value
    if isinstance(value, (list, tuple)):
        if not value:
            raise ConfigurationError(
                f"device={value!r} names no device; expected one, e.g. device='cuda:0' or "
                "device='cpu' (or None to leave the network where it is)."
            )
        if len(value) > 1:
            raise ConfigurationError(
                f"device={value!r} names {len(value)} devices; expected one. "
                + _SEVERAL_DEVICES
            )
        given = value[0]
    if isinstance(given, str) and given == "all":
        raise ConfigurationError(
            f"device={value!r} asks for every GPU; expected one device. " + _SEVERAL_DEVICES
        )
    if isinstance(given, bool) or not isinstance(given, (torch.device, str, int)):
        raise ConfigurationError(
            f"device must be one device (a torch.device, a string such as 'cpu' or 'cuda:0', "
            f"or a CUDA index); got {given!r} ({type(given).__name__})."
        )
    try:
        target = torch.device(given)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"device={given!r} is not a device torch knows ({exc}); expected e.g. 'cpu', "
            "'cuda', 'cuda:0' or 'mps'."
        ) from exc
    return given, target


def loader_len(loader: Any) -> int | None:
    """The number of batches ``len(loader)`` gives, or None for a loader without ``len()``."""
    try:
        return len(loader)
    except TypeError:
        return None


def _no_shuffle(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """DataLoader keywords for an evaluation loader: the user's, except ``shuffle``
    (evaluation and prediction keep the data order, as in Poutyne)."""
    return {k: v for k, v in dict(options or {}).items() if k != "shuffle"}


def ordered_loader(
    dataset: Any,
    batch_size: int,
    num_workers: int,
    collate_fn: Callable[..., Any] | None,
    dataloader_kwargs: Mapping[str, Any] | None,
) -> torch.utils.data.DataLoader[Any]:
    """A DataLoader for evaluation or prediction: the data order kept, the user's keywords
    winning over ours (but ``shuffle``)."""
    check_positive("batch_size", batch_size, allow_none=False)
    options: dict[str, Any] = {"batch_size": batch_size, "num_workers": num_workers}
    if collate_fn is not None:
        options["collate_fn"] = collate_fn
    return torch.utils.data.DataLoader(dataset, **{**options, **_no_shuffle(dataloader_kwargs)})


def concat(outputs: list[Any], *, numpy: bool = True) -> Any:
    """Per-batch outputs concatenated along the batch dimension (0-dim outputs stacked),
    keeping the nesting of tuples, lists and dicts.

    Args:
        outputs: One output per batch, all with the same structure.
        numpy: Convert the tensors to NumPy arrays (on the CPU); else keep tensors where
            they are.
    """
    first = outputs[0]
    if isinstance(first, torch.Tensor):
        joined = torch.stack(outputs) if first.dim() == 0 else torch.cat(outputs, dim=0)
        return joined.cpu().numpy() if numpy else joined
    if isinstance(first, (tuple, list)):
        return type(first)(
            concat([o[i] for o in outputs], numpy=numpy) for i in range(len(first))
        )
    if isinstance(first, Mapping):
        return {k: concat([o[k] for o in outputs], numpy=numpy) for k in first}
    return outputs


def to_numpy(obj: Any) -> Any:
    """Every tensor in ``obj`` (nested tuples, lists, dicts) as a NumPy array on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu().numpy()
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_numpy(o) for o in obj)
    if isinstance(obj, Mapping):
        return {k: to_numpy(v) for k, v in obj.items()}
    return obj


def collect(outputs: list[Any], concatenate: bool, *, convert_to_numpy: bool = True) -> Any:
    """Per-batch outputs, concatenated along the batch dimension or one per batch, as NumPy
    arrays (``convert_to_numpy``) or as the tensors the network returned."""
    if concatenate:
        return concat(outputs, numpy=convert_to_numpy)
    return to_numpy(outputs) if convert_to_numpy else outputs


def _is_number_list(obj: Any) -> bool:
    while isinstance(obj, (list, tuple)) and obj:
        obj = obj[0]
    return isinstance(obj, (int, float, bool)) and not isinstance(obj, torch.Tensor)


def _cast_floats(obj: Any, dtype: torch.dtype) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(dtype) if obj.is_floating_point() and obj.dtype != dtype else obj
    if isinstance(obj, (tuple, list)):
        return type(obj)(_cast_floats(o, dtype) for o in obj)
    if isinstance(obj, Mapping):
        return {k: _cast_floats(v, dtype) for k, v in obj.items()}
    return obj


class ArrayDataset(torch.utils.data.Dataset[Any]):
    """Examples ``i`` of nested tensors/arrays (tuples, lists, dicts), for ``fit(x, y)``.

    Args:
        *parts: The inputs, then the targets (tensors, NumPy arrays, or tuples/lists/dicts
            of them), all with the same first dimension.
        names: A name per part for messages (default ``x``, ``y``, ...).
        float_dtype: When given, floating inputs and targets are cast to it once, here (as
            Keras does): NumPy's float64 arrays then train a float32 network.

    Raises:
        TypeError: A part is a Python list of numbers, or not an array at all; the message
            says what to pass.
        ValueError: The parts hold different numbers of examples.
    """

    def __init__(
        self,
        *parts: Any,
        names: tuple[str, ...] = ("x", "y"),
        float_dtype: torch.dtype | None = None,
    ) -> None:
        for i, part in enumerate(parts):
            if _is_number_list(part):
                name = names[i] if i < len(names) else f"part {i}"
                raise TypeError(
                    f"{name} is a Python {type(part).__name__} of numbers; expected a tensor or "
                    f"a NumPy array (tuples/lists/dicts of them for several inputs). Pass "
                    f"np.asarray({name}, dtype=np.float32) (or np.int64 for class targets) or "
                    f"torch.tensor({name})."
                )
        self.parts = [to_tensor(p) for p in parts]
        if float_dtype is not None:
            self.parts = [_cast_floats(p, float_dtype) for p in self.parts]
        lengths = {self._len(p) for p in self.parts if p is not None}
        if len(lengths) != 1:
            raise ValueError(
                f"x and y must have the same number of examples (first dimension); got "
                f"{sorted(lengths)}."
            )
        self.length = lengths.pop()

    @classmethod
    def _len(cls, obj: Any) -> int:
        if isinstance(obj, torch.Tensor):
            return int(obj.shape[0])
        if isinstance(obj, (tuple, list)):
            return cls._len(obj[0])
        if isinstance(obj, Mapping):
            return cls._len(next(iter(obj.values())))
        raise TypeError(
            f"expected tensors or NumPy arrays (or tuples/lists/dicts of them); got "
            f"{type(obj).__name__}. Convert the data with np.asarray(...) or torch.tensor(...)."
        )

    @classmethod
    def _index(cls, obj: Any, i: int) -> Any:
        if isinstance(obj, torch.Tensor):
            return obj[i]
        if isinstance(obj, (tuple, list)):
            return type(obj)(cls._index(o, i) for o in obj)
        if isinstance(obj, Mapping):
            return {k: cls._index(v, i) for k, v in obj.items()}
        return obj

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Any:
        items = tuple(self._index(p, i) for p in self.parts)
        return items if len(items) > 1 else items[0]




def validation_pair(validation_data: Any, *, owner: str = "fit") -> tuple[Any, Any]:
    """``validation_data`` as ``(x_val, y_val)``, checked before any training step.

    Args:
        validation_data: What the caller passed (a tuple or list of two parts expected).
        owner: The method, for the message (``'fit'``, ``'ModelBundle.train_data'``).

    Returns:
        The pair.

    Raises:
        ConfigurationError: Not a pair (e.g. ``validation_data=x_val`` without targets): the
            message names ``validation_data`` and what to pass.
    """
    if isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
        return validation_data[0], validation_data[1]
    kind = type(validation_data).__name__
    size = (f" of length {len(validation_data)}"
            if isinstance(validation_data, (tuple, list)) else "")
    raise ConfigurationError(
        f"{owner}: validation_data must be an (x_val, y_val) pair; got a {kind}{size}. "
        "Pass validation_data=(x_val, y_val): validation needs the targets to compute val_loss."
    )
