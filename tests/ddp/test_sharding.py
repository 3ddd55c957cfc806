"""Each rank's share of the data, and DDP training on it equal to one process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader, IterableDataset, TensorDataset, WeightedRandomSampler

from epochal.distributed import (
    ShardSampler,
    epoch_order,
    shard_indices,
    shard_loader,
    shard_size,
    wrap_network,
)
from epochal.exceptions import ConfigurationError, ShardingError
from epochal_adapters.data.fast_loader import TensorBatchLoader
from tests.ddp.ranks import run_ranks, values

pytestmark = pytest.mark.ddp


def _dataset(n: int) -> TensorDataset:
    return TensorDataset(torch.arange(n, dtype=torch.float32).unsqueeze(1), torch.arange(n))


class TestShardIndices:
    @given(n=st.integers(0, 60), world=st.integers(1, 5), seed=st.integers(0, 9),
           epoch=st.integers(1, 4), shuffle=st.booleans())
    def test_exact_shards_partition_the_dataset(
        self, n: int, world: int, seed: int, epoch: int, shuffle: bool
    ) -> None:
        """In 'exact' mode the ranks' shards hold every index exactly once."""
        shards = [
            shard_indices(n, rank=r, world_size=world, seed=seed, epoch=epoch,
                          shuffle=shuffle, mode="exact")
            for r in range(world)
        ]
        assert sorted(torch.cat(shards).tolist()) == list(range(n))
        assert [len(s) for s in shards] == [
            shard_size(n, rank=r, world_size=world, mode="exact") for r in range(world)
        ]

    @given(n=st.integers(1, 60), world=st.integers(1, 5), mode=st.sampled_from(["pad", "drop"]))
    def test_training_shards_have_equal_lengths(self, n: int, world: int, mode: Any) -> None:
        """'pad' and 'drop' give every rank the same number of examples."""
        lengths = {
            len(shard_indices(n, rank=r, world_size=world, seed=0, epoch=1, shuffle=True,
                              mode=mode))
            for r in range(world)
        }
        assert lengths == {-(-n // world) if mode == "pad" else n // world}

    def test_order_depends_only_on_seed_and_epoch(self) -> None:
        """The same (seed, epoch) gives the same order whatever the global RNG; epochs differ."""
        torch.manual_seed(1)
        first = epoch_order(50, seed=7, epoch=3, shuffle=True)
        torch.manual_seed(2)
        torch.rand(10)
        assert torch.equal(first, epoch_order(50, seed=7, epoch=3, shuffle=True))
        assert not torch.equal(first, epoch_order(50, seed=7, epoch=4, shuffle=True))

    def test_global_rng_is_not_touched(self) -> None:
        """Drawing a shard draws nothing from torch's global generator."""
        torch.manual_seed(3)
        state = torch.get_rng_state()
        shard_indices(20, rank=0, world_size=2, seed=1, epoch=1, shuffle=True, mode="pad")
        assert torch.equal(state, torch.get_rng_state())

    def test_bad_rank_and_mode_are_named(self) -> None:
        """A rank outside the world or an unknown mode is a configuration error."""
        with pytest.raises(ConfigurationError, match="rank must be in"):
            shard_size(10, rank=2, world_size=2, mode="exact")
        with pytest.raises(ConfigurationError, match="mode must be one of"):
            shard_size(10, rank=0, world_size=2, mode="wrap")  # type: ignore[arg-type]


class TestShardLoader:
    def test_ranks_batches_together_are_the_global_batches(self) -> None:
        """Batch k of W ranks with batch b holds the examples of global batch k of size W*b."""
        loader = DataLoader(_dataset(24), batch_size=3, shuffle=True)
        shards = [shard_loader(loader, rank=r, world_size=2, seed=5, training=True)
                  for r in range(2)]
        order = epoch_order(24, seed=5, epoch=2, shuffle=True)
        for shard in shards:
            shard.set_epoch(2)
        per_rank = [[y.tolist() for _, y in shard] for shard in shards]
        assert len(per_rank[0]) == len(per_rank[1]) == 4
        for k in range(4):
            assert sorted(per_rank[0][k] + per_rank[1][k]) == sorted(
                order[6 * k: 6 * (k + 1)].tolist())

    def test_exact_evaluation_shards_of_1001_count_each_example_once(self) -> None:
        """A sequential loader of 1,001 examples splits into 501 + 500, no duplicate."""
        loader = DataLoader(_dataset(1001), batch_size=32)
        shards = [shard_loader(loader, rank=r, world_size=2, seed=0, training=False)
                  for r in range(2)]
        seen = [int(i) for shard in shards for _, y in shard for i in y]
        assert sorted(seen) == list(range(1001))
        assert [len(s) for s in shards] == [16, 16]

    def test_loader_options_are_kept(self) -> None:
        """batch_size, drop_last and collate_fn of the user's loader carry over."""
        def collate(items: list[Any]) -> str:
            return f"{len(items)} items"

        loader = DataLoader(_dataset(11), batch_size=2, drop_last=True, collate_fn=collate)
        shard = shard_loader(loader, rank=1, world_size=2, seed=0, training=False)
        assert list(shard) == ["2 items", "2 items"]
        assert len(shard) == 2

    def test_skip_batches_resumes_mid_epoch(self) -> None:
        """set_epoch(e, skip_batches=k) yields the epoch's batches from the (k+1)-th on."""
        loader = DataLoader(_dataset(40), batch_size=4, shuffle=True)
        shard = shard_loader(loader, rank=0, world_size=2, seed=3, training=True)
        shard.set_epoch(2)
        full = [y.tolist() for _, y in shard]
        shard.set_epoch(2, skip_batches=3)
        assert [y.tolist() for _, y in shard] == full[3:]
        assert len(shard) == len(full) - 3

    def test_tensor_batch_loader_shard_matches_a_dataloader_shard(self) -> None:
        """A TensorBatchLoader shards into the same batches as the equivalent DataLoader."""
        dataset = _dataset(23)
        fast = shard_loader(TensorBatchLoader(dataset, 4, shuffle=True), rank=1,
                            world_size=2, seed=9, training=False)
        slow = shard_loader(DataLoader(dataset, batch_size=4, shuffle=True), rank=1,
                            world_size=2, seed=9, training=False)
        for shard in (fast, slow):
            shard.set_epoch(4, skip_batches=1)
        got = [[t.tolist() for t in batch] for batch in fast]
        assert got == [[t.tolist() for t in batch] for batch in slow]
        assert len(fast) == len(slow) == 2

    def test_unshardable_loaders_are_refused_with_the_reason(self) -> None:
        """Iterable datasets, custom samplers, replacement and foreign types are named."""
        class Stream(IterableDataset[int]):
            def __iter__(self) -> Iterator[int]:
                return iter(range(3))

        weighted = DataLoader(_dataset(4), batch_size=2,
                              sampler=WeightedRandomSampler([1.0] * 4, 4))
        cases = [
            (DataLoader(Stream(), batch_size=2), "IterableDataset"),
            (weighted, "WeightedRandomSampler"),
            (DataLoader(_dataset(4), batch_size=None), "batch_size=None"),
            (DataLoader(_dataset(4), sampler=torch.utils.data.RandomSampler(
                _dataset(4), replacement=True)), "replacement"),
            ([(1, 2)], "Cannot shard a list"),
        ]
        for loader, reason in cases:
            with pytest.raises(ShardingError, match=reason):
                shard_loader(loader, rank=0, world_size=2, seed=0, training=True)

    def test_training_refuses_uneven_shards_and_evaluation_refuses_padding(self) -> None:
        """'exact' for training would hang DDP; 'pad' for evaluation would double-count."""
        loader = DataLoader(_dataset(5), batch_size=2)
        with pytest.raises(ConfigurationError, match="equal lengths"):
            shard_loader(loader, rank=0, world_size=2, seed=0, training=True, mode="exact")
        with pytest.raises(ConfigurationError, match="twice"):
            shard_loader(loader, rank=0, world_size=2, seed=0, training=False, mode="pad")

    def test_sampler_length_follows_skip(self) -> None:
        """The sampler's length is the shard's, less the skipped examples."""
        sampler = ShardSampler(9, rank=0, world_size=2, seed=0, shuffle=False, mode="exact")
        assert list(sampler) == [0, 2, 4, 6, 8]
        sampler.set_epoch(1, skip=2)
        assert list(sampler) == [4, 6, 8] and len(sampler) == 3


# ---- 2 ranks with DDP on the shards == 1 process with the global batch --------------------

N, BATCH, EPOCHS, SEED = 48, 4, 2, 11


def _data() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(N, 5, generator=generator)
    y = (x.sum(1, keepdim=True) > 0).float()
    return TensorDataset(x, y)


def _network() -> torch.nn.Module:
    torch.manual_seed(123)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _train(network: torch.nn.Module, loader: Any) -> list[torch.Tensor]:
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for epoch in range(1, EPOCHS + 1):
        loader.set_epoch(epoch)
        for x, y in loader:
            optimizer.zero_grad()
            loss_fn(network(x), y).backward()
            optimizer.step()
    return [p.detach().clone() for p in network.parameters()]


def _ddp_rank(rank: int, world: int) -> list[torch.Tensor]:
    loader = shard_loader(DataLoader(_data(), batch_size=BATCH, shuffle=True), rank=rank,
                          world_size=world, seed=SEED, training=True)
    return _train(wrap_network(_network(), torch.device("cpu")), loader)


class TestDistributedTraining:
    def test_two_ranks_with_batch_b_equal_one_process_with_batch_2b(self) -> None:
        """DDP on the shards reaches the weights of one process on the global batches."""
        ranks = values(run_ranks(_ddp_rank))
        single = shard_loader(DataLoader(_data(), batch_size=2 * BATCH, shuffle=True), rank=0,
                              world_size=1, seed=SEED, training=True)
        expected = _train(_network(), single)
        for weights in ranks:
            for got, want in zip(weights, expected):
                torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
        assert not torch.equal(expected[0], _network()[0].weight)  # it did train
