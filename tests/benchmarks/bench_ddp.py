"""Benchmark (not a test): per-step time of 2-rank epochal training against a hand-written
2-rank DDP loop, in the same run.

Two ranks are forked on gloo (CPU). Each rank trains the seed's fully-connected network on
synthetic 784-feature data (SGD, per-rank batch 64) for one epoch, alternately (the order
switches every round) with a hand-written loop (its own ``DistributedDataParallel`` wrapper, the same shard loader, the
loss summed on the device and all-reduced once per epoch) and with ``Model.fit_generator``
under ``strategy='ddp'``; the script prints the median per-step times over the repeats and
the median of the per-round ratios (target: at most 1.05).

    PYTHONPATH=src:adapters:. python tests/benchmarks/bench_ddp.py [--repeats 5] [--n 16384]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tests.ddp.ranks import run_ranks, values

BATCH_SIZE = 64


def network() -> nn.Module:
    """The seed tutorial's fully-connected network (242,762 parameters)."""
    return nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def _hand_epoch(ddp: nn.Module, optimizer: torch.optim.Optimizer, loader: Any) -> int:
    loss_fn = nn.CrossEntropyLoss()
    total = torch.zeros((), dtype=torch.float64)
    steps = 0
    ddp.train()
    for x, y in loader:
        optimizer.zero_grad()
        loss = loss_fn(ddp(x), y)
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(x)
        steps += 1
    dist.all_reduce(total)
    return steps


def _rank(rank: int, world: int, n: int, repeats: int) -> dict[str, list[float]]:
    from epochal import Model
    from epochal.distributed import shard_loader, wrap_network

    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, 784, generator=generator),
                         torch.randint(0, 10, (n,), generator=generator))
    loader = DataLoader(data, batch_size=BATCH_SIZE, shuffle=True)
    torch.manual_seed(0)
    hand_net = wrap_network(network(), torch.device("cpu"))
    hand_opt = torch.optim.SGD(hand_net.parameters(), lr=0.01)
    shard = shard_loader(loader, rank=rank, world_size=world, seed=0, training=True)
    model = Model(network(), "sgd", "cross_entropy", strategy="ddp")
    steps = len(shard)

    def hand() -> float:
        dist.barrier()
        start = time.perf_counter()
        assert _hand_epoch(hand_net, hand_opt, shard) == steps
        return (time.perf_counter() - start) / steps

    def ours() -> float:
        dist.barrier()
        start = time.perf_counter()
        model.fit_generator(loader, epochs=1, verbose=False)
        return (time.perf_counter() - start) / steps

    times: dict[str, list[float]] = {"hand": [], "epochal": []}
    for repeat in range(repeats + 1):  # the first round warms up
        shard.set_epoch(repeat + 1)
        if repeat % 2:  # alternate which one runs first
            hand_s, ours_s = hand(), ours()
        else:
            ours_s, hand_s = ours(), hand()
        if repeat:
            times["hand"].append(hand_s)
            times["epochal"].append(ours_s)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=16384, help="training examples (all ranks)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = values(run_ranks(_rank, args.n, args.repeats, timeout_s=1800.0))
    hand = statistics.median(t for r in results for t in r["hand"])
    ours = statistics.median(t for r in results for t in r["epochal"])
    ratios = [o / h for r in results for h, o in zip(r["hand"], r["epochal"])]
    print(f"per step, 2 ranks, batch {BATCH_SIZE} per rank, median of {len(ratios)} "
          f"rank-rounds: hand-written DDP {hand * 1e3:.3f} ms, epochal {ours * 1e3:.3f} ms; "
          f"median per-round ratio {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}; target <= 1.05)")


if __name__ == "__main__":
    main()
