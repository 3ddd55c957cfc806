"""`TensorBatchLoader`: a drop-in for ``DataLoader`` on datasets that fit in memory.

``DataLoader`` + ``ToTensor`` on MNIST builds a PIL image per example, converts it back to a
tensor and stacks 32 of them per batch: most of an MLP's epoch goes there. This loader decodes
the dataset once into tensors and serves each batch by one index gather plus one vectorised
transform, optionally on the training device.

It reproduces ``DataLoader(dataset, batch_size, shuffle=..., drop_last=..., generator=g)``
(``num_workers=0``, default sampler and collate) exactly: the same batches, in the same order,
bit-identical, and the same random numbers drawn from ``g`` (or from the global RNG when ``g``
is None) at the same moments, so that training randomness after an epoch is unchanged.
What ``DataLoader`` draws per ``iter()`` in torch 2.x
(``torch/utils/data/dataloader.py`` and ``sampler.py``):

1. ``_BaseDataLoaderIter.__init__`` (at ``iter()``): ``_base_seed``, one int64 from the
   loader's generator, or from the global RNG when it is None (drawn even without workers).
2. ``RandomSampler.__iter__`` (lazily, at the first ``next()``): with a generator,
   ``randperm(n, generator)``; without one, one int64 from the global RNG seeds a private
   generator that draws the permutation.
3. Then, once the permutation is used up, ``randperm(n)[:0]`` (``num_samples % n == 0``): a
   second permutation from the same generator, before the last batch when that batch is partial
   and ``drop_last`` is False, else at the ``next()`` that ends the epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset, default_collate
from torchvision.datasets import MNIST
from torchvision.transforms import Compose, Normalize, ToTensor

__all__ = ["TensorBatchLoader", "to_tensor_batch"]

BatchTransform = Callable[[Tensor], Tensor]


def to_tensor_batch(images: Tensor) -> Tensor:
    """``torchvision.transforms.ToTensor`` for a whole batch of uint8 grayscale images.

    Bit-identical to stacking ``ToTensor()(PIL image)`` per image: both compute
    ``uint8.to(default dtype).div(255)`` element by element.

    Args:
        images: uint8 pixel values 0..255.

    Shapes:
        images: ``(batch, height, width)``
        returned: ``(batch, 1, height, width)``

    Returns:
        Floats in [0, 1], of ``torch.get_default_dtype()``, on ``images``' device.
    """
    return images.unsqueeze(1).to(dtype=torch.get_default_dtype()).div(255)


class _ToTensorThenNormalize:
    """``Compose([ToTensor(), Normalize(mean, std)])`` for a batch (elementwise, so exact)."""

    def __init__(self, normalize: Normalize) -> None:
        self.normalize = normalize

    def __call__(self, images: Tensor) -> Tensor:
        batch: Tensor = self.normalize(to_tensor_batch(images))
        return batch


def _batch_transform(transform: object) -> BatchTransform | None:
    """The batched equivalent of a per-image transform, or None when there is none we know."""
    if type(transform) is ToTensor:
        return to_tensor_batch
    if isinstance(transform, Compose) and type(transform) is Compose:
        steps = list(transform.transforms)
        if len(steps) == 1 and type(steps[0]) is ToTensor:
            return to_tensor_batch
        if len(steps) == 2 and type(steps[0]) is ToTensor and type(steps[1]) is Normalize:
            return _ToTensorThenNormalize(steps[1])
    return None


def _unwrap_subsets(dataset: Dataset[Any]) -> tuple[Dataset[Any], Tensor | None]:
    """The dataset under any nesting of ``Subset``s, and the composed indices into it."""
    indices: Tensor | None = None
    while isinstance(dataset, Subset):
        outer = torch.as_tensor(dataset.indices, dtype=torch.int64)
        indices = outer if indices is None else outer[indices]
        dataset = dataset.dataset
    return dataset, indices


def _decode_mnist_fields(
    dataset: Dataset[Any],
) -> tuple[list[Tensor], list[BatchTransform | None]] | None:
    """Read ``.data``/``.targets`` directly when ``dataset[i]`` is provably ToTensor + int."""
    base, indices = _unwrap_subsets(dataset)
    if not isinstance(base, MNIST) or type(base).__getitem__ is not MNIST.__getitem__:
        return None  # e.g. QMNIST, or a subclass with its own __getitem__
    if base.target_transform is not None:
        return None
    transform = _batch_transform(base.transform)
    if transform is None:
        return None
    images: Tensor = base.data
    labels = torch.as_tensor(base.targets).to(torch.int64)
    if images.dtype != torch.uint8 or images.ndim != 3:
        return None
    if len(images) != len(labels):
        raise ValueError(
            f"{type(base).__name__} at {base.root} has {len(images)} images but {len(labels)} "
            "labels; the image and label files must hold the same number of examples."
        )
    if indices is not None:
        images, labels = images[indices], labels[indices]
    return [images.contiguous(), labels.contiguous()], [transform, None]


def _decode_by_iteration(dataset: Dataset[Any]) -> tuple[list[Tensor], bool]:
    """Iterate the dataset once and collate everything (transforms run once, here)."""
    size = len(dataset)  # type: ignore[arg-type]
    samples = [dataset[i] for i in range(size)]
    if not samples:
        return [], True
    collated = default_collate(samples)
    if isinstance(collated, Tensor):
        return [collated], False
    if isinstance(collated, Sequence) and all(isinstance(f, Tensor) for f in collated):
        return list(collated), True
    raise TypeError(
        "TensorBatchLoader serves examples that are a tensor or a tuple/list of tensors and "
        f"numbers; this dataset's examples collate to {type(collated).__name__}. Use DataLoader."
    )


class TensorBatchLoader:
    """Serves batches of an in-memory dataset exactly as ``DataLoader`` would, much faster.

    For torchvision's MNIST family (``MNIST``, ``FashionMNIST``, ``KMNIST``, ``EMNIST``), or
    ``Subset``s of them, whose transform is ``ToTensor()`` (optionally followed by
    ``Normalize``) and without ``target_transform``, the uint8 images are read straight from
    ``.data``/``.targets`` and ``ToTensor`` runs on each whole batch. Any other map-style
    dataset is iterated once and collated: its transform then runs once, not per epoch, so it
    must be deterministic (no random augmentation).

    Args:
        dataset: A sized map-style dataset that fits in memory.
        batch_size: Examples per batch.
        shuffle: Reshuffle every epoch, drawing the same random numbers as ``DataLoader``.
        drop_last: Drop the last batch when it is smaller than ``batch_size``.
        generator: RNG for the shuffle; None uses the global RNG (as ``DataLoader`` does).
        device: Where to keep the decoded data (moved once); batches come out there.

    Shapes:
        MNIST with ``ToTensor``: each batch is ``[x, y]`` with ``x: (batch, 1, 28, 28)`` float
        and ``y: (batch,)`` int64, a list like ``DataLoader``'s default collate gives.

    Raises:
        ValueError: ``batch_size`` is not a positive int, or ``shuffle`` with an empty dataset
            (as ``RandomSampler``).
        TypeError: The examples are not tensors or tuples/lists of tensors and numbers.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> train_set = TensorDataset(torch.zeros(70, 1, 28, 28), torch.arange(70) % 10)
        >>> g = torch.Generator().manual_seed(0)
        >>> loader = TensorBatchLoader(train_set, 32, shuffle=True, generator=g)
        >>> [tuple(x.shape) for x, y in loader]
        [(32, 1, 28, 28), (32, 1, 28, 28), (6, 1, 28, 28)]
        >>> len(loader)
        3

        Pass ``device="cuda"`` to keep the decoded data on the GPU: batches then come out
        there with no host-to-device copy per step.
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        batch_size: int = 1,
        shuffle: bool = False,
        *,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.generator = generator
        self._size = len(dataset)  # type: ignore[arg-type]
        if self.shuffle and self._size == 0:
            raise ValueError("Cannot shuffle an empty dataset (num_samples must be positive).")
        decoded = _decode_mnist_fields(dataset)
        self.decoded_directly = decoded is not None
        if decoded is not None:
            self._fields, self._transforms = decoded
            self._as_list = True
        else:
            self._fields, self._as_list = _decode_by_iteration(dataset)
            self._transforms = [None] * len(self._fields)
        self.device = torch.device("cpu")
        if device is not None:
            self.to(device)

    def to(self, device: torch.device | str) -> TensorBatchLoader:
        """Move the decoded data to ``device`` once; later batches are gathered there.

        Args:
            device: Target device, e.g. ``"cuda"`` or ``torch.device("cuda", 1)``.

        Returns:
            This loader (for chaining).
        """
        self.device = torch.device(device)
        self._fields = [field.to(self.device) for field in self._fields]
        return self

    def __len__(self) -> int:
        """Number of batches per epoch, as ``len(DataLoader)``."""
        if self.drop_last:
            return self._size // self.batch_size
        return (self._size + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[Any]:
        # _BaseDataLoaderIter.__init__ draws _base_seed now, even with num_workers=0.
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        return self._epoch()

    def _gather(self, index: Tensor | slice) -> Any:
        parts: list[Tensor] = []
        for field, transform in zip(self._fields, self._transforms):
            part = field[index] if isinstance(index, slice) else field.index_select(0, index)
            if transform is not None:
                part = transform(part)  # a new tensor
            elif isinstance(index, slice):
                part = part.clone()  # a slice is a view: never hand out the cache itself
            parts.append(part)
        return parts if self._as_list else parts[0]

    def _epoch(self) -> Iterator[Any]:
        size, batch = self._size, self.batch_size
        stop = size - size % batch if self.drop_last else size
        starts = range(0, stop, batch)
        if not self.shuffle:
            for start in starts:
                yield self._gather(slice(start, min(start + batch, size)))
            return
        # RandomSampler.__iter__, run at the first next().
        generator = self.generator
        if generator is None:
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            private = torch.Generator()
            private.manual_seed(seed)
            order = torch.randperm(size, generator=private)
        else:
            order = torch.randperm(size, generator=generator)
        order = order.to(self.device)
        partial_last = not self.drop_last and size % batch != 0
        last = len(starts) - 1
        for position, start in enumerate(starts):
            if partial_last and position == last:
                self._draw_tail_permutation()
            yield self._gather(order[start : start + batch])
        if not partial_last:
            self._draw_tail_permutation()

    def _draw_tail_permutation(self) -> None:
        """RandomSampler's trailing ``randperm(n)[:0]``; invisible with a private generator."""
        if self.generator is not None:
            torch.randperm(self._size, generator=self.generator)

    def __repr__(self) -> str:
        return (
            f"TensorBatchLoader(examples={self._size}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, device={self.device})"
        )
