"""Each rank's share of the data: an order that depends only on (seed, epoch), split by rank.

The global order of an epoch is ``randperm(n)`` from a generator seeded with
``seed + epoch`` (as ``torch.utils.data.DistributedSampler`` does), or ``0..n-1`` without
shuffling. Rank ``r`` of ``W`` takes positions ``r, r + W, r + 2W, ...`` of that order, so
batch ``k`` of every rank together hold positions ``kWb .. (k+1)Wb - 1``: W ranks with batch
``b`` see, step by step, the same examples as one process with batch ``W*b``.

Three ways to handle ``n`` not divisible by ``W`` (:data:`ShardMode`):

* ``'pad'`` (training default, ``DistributedSampler``'s default): the order is extended by
  wrapping around to ``ceil(n/W)*W`` positions; a few examples are seen twice per epoch.
* ``'drop'`` (training, ``DistributedSampler(drop_last=True)``): the order is cut to
  ``floor(n/W)*W`` positions; a few examples are skipped per epoch (different ones each epoch
  when shuffling).
* ``'exact'`` (evaluation): no padding, no dropping; shards differ in length by at most one
  example, so every example counts exactly once after the epoch reduction.

Training needs ``'pad'`` or ``'drop'``: under ``DistributedDataParallel`` every rank must run
the same number of backward passes, or the gradient all-reduce of the rank with one more batch
waits forever. Evaluation passes run without collectives per step (use the unwrapped network
and no per-step stop flag), so their shards may be uneven.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch.utils.data import (
    DataLoader,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

from epochal.exceptions import ConfigurationError, ShardingError

__all__ = [
    "ShardMode",
    "ShardSampler",
    "ShardedDataLoader",
    "ShardedTensorBatchLoader",
    "epoch_order",
    "shard_indices",
    "shard_loader",
    "shard_size",
]

ShardMode = Literal["pad", "drop", "exact"]
_MODES = ("pad", "drop", "exact")


def _check(rank: int, world_size: int, mode: str) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigurationError(
            f"rank must be in [0, world_size) with world_size >= 1; got rank={rank}, "
            f"world_size={world_size}."
        )
    if mode not in _MODES:
        raise ConfigurationError(f"mode must be one of {', '.join(_MODES)}; got {mode!r}.")


def epoch_order(n: int, *, seed: int, epoch: int, shuffle: bool) -> torch.Tensor:
    """The global order of an epoch's ``n`` examples.

    Args:
        n: Dataset size.
        seed: The job's data seed (the same on every rank).
        epoch: 1-based epoch (any int; only ``seed + epoch`` matters).
        shuffle: False gives ``0..n-1``.

    Returns:
        int64 indices, shape ``(n,)``, on the CPU; a permutation from a private generator
        seeded with ``seed + epoch`` (the global RNG is not touched).
    """
    if not shuffle:
        return torch.arange(n, dtype=torch.int64)
    generator = torch.Generator()
    generator.manual_seed(seed + epoch)
    return torch.randperm(n, generator=generator)


def shard_size(n: int, *, rank: int, world_size: int, mode: ShardMode) -> int:
    """How many examples rank ``rank`` gets from ``n`` (see the module docstring)."""
    _check(rank, world_size, mode)
    if mode == "pad":
        return -(-n // world_size)
    if mode == "drop":
        return n // world_size
    return n // world_size + (1 if rank < n % world_size else 0)


def shard_indices(
    n: int,
    *,
    rank: int,
    world_size: int,
    seed: int,
    epoch: int,
    shuffle: bool,
    mode: ShardMode,
) -> torch.Tensor:
    """Rank ``rank``'s dataset indices for ``epoch``, in the order it visits them.

    Returns:
        int64 indices, shape ``(shard_size(...),)``. The shards of all ranks, in ``'exact'``
        mode, partition ``0..n-1``.

    Raises:
        ConfigurationError: Bad rank/world size/mode; ``'pad'`` with ``n == 0``.
    """
    _check(rank, world_size, mode)
    order = epoch_order(n, seed=seed, epoch=epoch, shuffle=shuffle)
    if mode == "pad":
        total = -(-n // world_size) * world_size
        if total > n:
            if n == 0:
                raise ConfigurationError("Cannot pad the shards of an empty dataset.")
            repeats = -(-total // n)
            order = order.repeat(repeats)[:total]
    elif mode == "drop":
        order = order[: n // world_size * world_size]
    return order[rank::world_size]


class ShardSampler(Sampler[int]):
    """A sampler over one rank's shard, reshuffled by :meth:`set_epoch`.

    Args:
        n: Dataset size.
        rank: This rank.
        world_size: Number of ranks.
        seed: The job's data seed.
        shuffle: Random order (per epoch) or sequential.
        mode: ``'pad'``, ``'drop'`` or ``'exact'``.

    The epoch starts at 1; call :meth:`set_epoch` before each pass. ``skip`` (from
    :meth:`set_epoch`) leaves out the first examples of the shard, to resume mid-epoch.
    """

    def __init__(
        self,
        n: int,
        *,
        rank: int,
        world_size: int,
        seed: int,
        shuffle: bool,
        mode: ShardMode,
    ) -> None:
        _check(rank, world_size, mode)
        self.n = n
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.mode: ShardMode = mode
        self.epoch = 1
        self.skip = 0

    def set_epoch(self, epoch: int, *, skip: int = 0) -> None:
        """Select the epoch's order, leaving out the shard's first ``skip`` examples."""
        if skip < 0:
            raise ConfigurationError(f"skip must be >= 0; got {skip}.")
        self.epoch = epoch
        self.skip = skip

    def indices(self) -> torch.Tensor:
        """This epoch's remaining indices (after ``skip``)."""
        return shard_indices(
            self.n,
            rank=self.rank,
            world_size=self.world_size,
            seed=self.seed,
            epoch=self.epoch,
            shuffle=self.shuffle,
            mode=self.mode,
        )[self.skip :]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        size = shard_size(self.n, rank=self.rank, world_size=self.world_size, mode=self.mode)
        return max(0, size - self.skip)


class ShardedDataLoader:
    """One rank's shard of a user's ``DataLoader``: same dataset, batch size, collate
    function, ``drop_last``, workers and pinning; a :class:`ShardSampler` instead of the
    sampler.

    Call :meth:`set_epoch` before iterating each epoch (the order depends only on the seed and
    the epoch; a resumed run calls it with the batches already done).

    Attributes:
        loader: The sharded ``DataLoader`` (its length follows the sampler's).
        sampler: Its :class:`ShardSampler`.
        batch_size: Examples per batch.
    """

    def __init__(self, source: DataLoader[Any], sampler: ShardSampler) -> None:
        self.source = source
        self.sampler = sampler
        assert source.batch_size is not None
        self.batch_size: int = source.batch_size
        self.drop_last = source.drop_last
        self.loader = _rebuild(source, sampler)

    def set_epoch(self, epoch: int, *, skip_batches: int = 0) -> None:
        """Select ``epoch``'s order and start after its first ``skip_batches`` batches."""
        self.sampler.set_epoch(epoch, skip=skip_batches * self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)


def _rebuild(source: DataLoader[Any], sampler: Sampler[int]) -> DataLoader[Any]:
    return DataLoader(
        source.dataset,
        batch_size=source.batch_size,
        sampler=sampler,
        num_workers=source.num_workers,
        collate_fn=source.collate_fn,
        pin_memory=source.pin_memory,
        drop_last=source.drop_last,
        timeout=source.timeout,
        worker_init_fn=source.worker_init_fn,
        multiprocessing_context=source.multiprocessing_context if source.num_workers else None,
        generator=source.generator,
        prefetch_factor=source.prefetch_factor if source.num_workers else None,
        persistent_workers=source.persistent_workers,
        pin_memory_device=source.pin_memory_device,
    )


def _loader_shuffle(loader: DataLoader[Any]) -> bool:
    """Whether the user's loader shuffles; raises for what cannot be sharded."""
    what = f"This {type(loader).__name__}"
    if isinstance(loader.dataset, IterableDataset):
        raise ShardingError(
            f"{what} reads an IterableDataset ({type(loader.dataset).__name__}), which has no "
            "indices to split between ranks. Shard it yourself (e.g. by "
            "torch.distributed.get_rank() inside __iter__), or use a map-style dataset."
        )
    if loader.batch_size is None:
        raise ShardingError(
            f"{what} has batch_size=None (a custom batch_sampler, or automatic batching "
            "disabled); epochal can shard only loaders built with batch_size and shuffle=True "
            "or False. Pass such a loader, or a DistributedSampler-based one of your own with "
            "strategy=None."
        )
    sampler = loader.sampler
    if type(sampler) is SequentialSampler:
        return False
    if type(sampler) is RandomSampler:
        if sampler.replacement or sampler._num_samples is not None:
            raise ShardingError(
                f"{what} samples with replacement or a fixed num_samples; only a plain "
                "shuffle (RandomSampler without replacement) can be sharded exactly."
            )
        return True
    raise ShardingError(
        f"{what} uses the sampler {type(sampler).__name__}; epochal shards loaders built "
        "with shuffle=True (RandomSampler) or shuffle=False (SequentialSampler). Use one of "
        "those, or shard the data yourself."
    )


def shard_loader(
    loader: Any,
    *,
    rank: int,
    world_size: int,
    seed: int,
    training: bool,
    mode: ShardMode | None = None,
) -> ShardedDataLoader | ShardedTensorBatchLoader:
    """This rank's shard of a user's loader.

    Args:
        loader: A ``DataLoader`` (with ``shuffle=True/False`` and a ``batch_size``) or a
            ``TensorBatchLoader``.
        rank: This rank.
        world_size: Number of ranks.
        seed: The job's data seed, the same on every rank (see
            :func:`~epochal.distributed.group.broadcast_object`).
        training: True for the training loader (shards of equal length), False for
            evaluation (exact shards).
        mode: Override: ``'pad'`` or ``'drop'`` for training (default ``'pad'``), ``'exact'``
            for evaluation (the default and only choice there).

    Returns:
        A loader with ``set_epoch(epoch, skip_batches=0)``, ``__iter__`` and ``__len__``.

    Raises:
        ShardingError: The loader cannot be sharded (an ``IterableDataset``, a custom
            sampler or batch sampler, sampling with replacement, an unknown loader type).
        ConfigurationError: ``mode='exact'`` for training (uneven shards would hang the
            gradient all-reduce), or padding/dropping for evaluation.
    """
    if mode is None:
        mode = "pad" if training else "exact"
    if training and mode == "exact":
        raise ConfigurationError(
            "Training shards must have equal lengths (mode 'pad' or 'drop'): with uneven "
            "shards one rank runs a backward pass the others never join, and DDP waits forever."
        )
    if not training and mode != "exact":
        raise ConfigurationError(
            f"Evaluation shards are exact (mode 'exact'); {mode!r} would count some examples "
            "twice or not at all in the epoch metrics."
        )
    # A TensorBatchLoader's module is loaded when the user has one; not importing it
    # otherwise spares torchvision's import.
    fast_loader = sys.modules.get("epochal_adapters.data.fast_loader")
    if fast_loader is not None and isinstance(loader, fast_loader.TensorBatchLoader):
        return ShardedTensorBatchLoader(
            loader, rank=rank, world_size=world_size, seed=seed, mode=mode
        )
    if not isinstance(loader, DataLoader):
        raise ShardingError(
            f"Cannot shard a {type(loader).__name__}: epochal shards torch DataLoaders and "
            "TensorBatchLoaders. Pass one of those, or give each rank its own data and "
            "disable sharding."
        )
    shuffle = _loader_shuffle(loader)
    sampler = ShardSampler(
        len(loader.dataset),  # type: ignore[arg-type]
        rank=rank,
        world_size=world_size,
        seed=seed,
        shuffle=shuffle,
        mode=mode,
    )
    return ShardedDataLoader(loader, sampler)


class ShardedTensorBatchLoader:
    """One rank's shard of a :class:`~epochal_adapters.data.fast_loader.TensorBatchLoader`:
    batches gathered from its decoded tensors (on its device) by this rank's indices.

    Draws nothing from any global or loader generator (the order comes from the seed and the
    epoch alone).
    """

    def __init__(
        self, loader: Any, *, rank: int, world_size: int, seed: int, mode: ShardMode
    ) -> None:
        self.source = loader
        self.batch_size: int = loader.batch_size
        self.drop_last: bool = loader.drop_last
        self.sampler = ShardSampler(
            len(loader.dataset),
            rank=rank,
            world_size=world_size,
            seed=seed,
            shuffle=loader.shuffle,
            mode=mode,
        )

    def set_epoch(self, epoch: int, *, skip_batches: int = 0) -> None:
        """Select ``epoch``'s order and start after its first ``skip_batches`` batches."""
        self.sampler.set_epoch(epoch, skip=skip_batches * self.batch_size)

    def __len__(self) -> int:
        size = len(self.sampler)
        if self.drop_last:
            return size // self.batch_size
        return -(-size // self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        indices = self.sampler.indices().to(self.source.device)
        batch = self.batch_size
        stop = len(indices) - len(indices) % batch if self.drop_last else len(indices)
        for start in range(0, stop, batch):
            yield self.source._gather(indices[start : start + batch])
