"""Benchmark (not a test): per-step time of Model.fit_generator vs the hand-written loop.

The seed's fully-connected network, batch 32, CPU, SGD lr 0.1; both train the same number of
steps on the same batches in the same process, alternating, and the script prints medians
and the ratio epochal / hand-written. Two loaders: pre-built batches (isolates the training
loop's own overhead) and a shuffling DataLoader over a TensorDataset (what users run).

Run: ``nox -s bench`` or ``python tests/benchmarks/bench_model_overhead.py [--steps N]``.
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import statistics
import sys
import time
import warnings

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from epochal import Model
from tests.seed_networks import fully_connected_network, train_one_epoch


def _hand(network, batches):
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    start = time.perf_counter()
    train_one_epoch(network, optimizer, nn.CrossEntropyLoss(), batches)
    return time.perf_counter() - start


def _epochal(network, batches, verbose):
    model = Model(network, torch.optim.SGD(network.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                  batch_metrics=["accuracy"])
    options = {"file": io.StringIO()} if verbose else None
    start = time.perf_counter()
    model.fit_generator(batches, epochs=1, verbose=verbose, progress_options=options)
    return time.perf_counter() - start


def main() -> None:
    # The seed's loop converts the loss with float(loss), as the tutorial does; PyTorch warns.
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="training steps per run")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)  # a quieter, more repeatable measure on a shared machine
    torch.manual_seed(0)
    n = args.steps * 32
    x = torch.rand(n, 1, 28, 28)
    y = torch.randint(0, 10, (n,))
    prebuilt = [(x[i : i + 32], y[i : i + 32]) for i in range(0, n, 32)]
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    network = fully_connected_network()
    print(f"Model.fit_generator vs hand-written loop: FC net (242,762 params), batch 32, "
          f"{args.steps} steps, CPU, 1 thread, {args.repeats} alternating repeats")
    print(f"{'loader':<22}{'hand ms/step':>14}{'epochal ms/step':>17}{'ratio':>8}")
    for name, batches, verbose in [
        ("pre-built batches", prebuilt, False),
        ("pre-built, progress", prebuilt, True),
        ("DataLoader", loader, False),
    ]:
        hand, ours = [], []
        _hand(copy.deepcopy(network), batches)  # warm-up
        _epochal(copy.deepcopy(network), batches, verbose)
        for _ in range(args.repeats):
            hand.append(_hand(copy.deepcopy(network), batches))
            ours.append(_epochal(copy.deepcopy(network), batches, verbose))
        ratios = [o / h for o, h in zip(ours, hand)]
        h_ms = statistics.median(hand) / args.steps * 1e3
        o_ms = statistics.median(ours) / args.steps * 1e3
        print(f"{name:<22}{h_ms:>14.4f}{o_ms:>17.4f}{statistics.median(ratios):>8.3f}")
    print("target: ratio <= 1.05 (median of per-repeat ratios)")


if __name__ == "__main__":
    main()
