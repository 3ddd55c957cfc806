"""Benchmark (not a test): TensorBatchLoader against DataLoader + ToTensor on the seed pipeline.

One training epoch + validation + test of the seed's fully-connected network,
SGD lr 0.1, batch 32, on CPU, 60k MNIST-format training images split 80/20, 10k test images.
Uses the real Fashion-MNIST files when Debian's ``dataset-fashion-mnist`` is installed, else
60k synthetic uint8 images. Both loaders run the same hand-written loop in the same process;
the script prints median wall times over the repeats and their ratio, and asserts that losses
and accuracies are identical.

    python tests/benchmarks/bench_loader.py [--repeats 3] [--target 2.5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from epochal_adapters.data import TensorBatchLoader, load_dataset, train_valid_split, write_idx

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
BATCH_SIZE = 32


def network() -> nn.Module:
    """The seed tutorial's fully-connected network (242,762 parameters)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256), nn.ReLU(),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )  # fmt: skip


def datasets(root: Path) -> tuple[str, Dataset[Any], Dataset[Any], Dataset[Any]]:
    if (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        train_full, info = load_dataset("fashion-mnist", root, train=True, data_dir=FASHION_MNIST)
        test, _ = load_dataset("fashion-mnist", root, train=False, download=False)
        source = str(info)
    else:
        rng = np.random.default_rng(0)
        raw = root / "MNIST" / "raw"
        for prefix, count in (("train", 60_000), ("t10k", 10_000)):
            labels = rng.integers(0, 10, count, dtype=np.uint8)
            noise = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
            images = np.where(np.arange(28)[None, :, None] < 3 * labels[:, None, None], noise, 0)
            write_idx(raw / f"{prefix}-images-idx3-ubyte", images.astype(np.uint8))
            write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        train_full, _ = load_dataset("mnist", root, train=True, download=False)
        test, _ = load_dataset("mnist", root, train=False, download=False)
        source = "synthetic 60k/10k uint8 images (dataset-fashion-mnist not installed)"
    train, valid = train_valid_split(train_full, 0.8, seed=42)
    return source, train, valid, test


def run_epoch(net: nn.Module, optimizer: torch.optim.Optimizer | None,
              batches: Iterable[Any]) -> tuple[float, float]:  # fmt: skip
    """The hand-written loop: one pass, sample-weighted mean loss and accuracy (percent)."""
    loss_fn = nn.CrossEntropyLoss()
    training = optimizer is not None
    net.train(training)
    loss_sum, correct, seen = 0.0, 0, 0
    with torch.set_grad_enabled(training):
        for x, y in batches:
            scores = net(x)
            loss = loss_fn(scores, y)
            if optimizer is not None:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            loss_sum += loss.item() * len(y)
            correct += int((scores.argmax(1) == y).sum())
            seen += len(y)
    return loss_sum / seen, 100.0 * correct / seen


Loaders = Callable[[torch.Generator], tuple[Iterable[Any], Iterable[Any], Iterable[Any]]]


def pipeline(make_loaders: Loaders) -> tuple[float, list[float]]:
    """Seeded end-to-end run (loader construction included); returns (seconds, results)."""
    torch.manual_seed(0)
    net = network()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    started = time.perf_counter()
    train, valid, test = make_loaders(torch.Generator().manual_seed(0))
    results = [*run_epoch(net, optimizer, train), *run_epoch(net, None, valid),
               *run_epoch(net, None, test)]  # fmt: skip
    return time.perf_counter() - started, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target", type=float, default=2.5, help="minimum speed-up to pass")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: steady timings on a shared machine)")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        source, train, valid, test = datasets(Path(folder))
        print(f"data: {source}; train/valid/test = {len(train)}/{len(valid)}/{len(test)}")  # type: ignore[arg-type]
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, batch {BATCH_SIZE}")

        def with_dataloader(g: torch.Generator) -> Any:
            return (DataLoader(train, BATCH_SIZE, shuffle=True, generator=g),
                    DataLoader(valid, BATCH_SIZE), DataLoader(test, BATCH_SIZE))  # fmt: skip

        def with_tensor_batches(g: torch.Generator) -> Any:
            return (TensorBatchLoader(train, BATCH_SIZE, shuffle=True, generator=g),
                    TensorBatchLoader(valid, BATCH_SIZE), TensorBatchLoader(test, BATCH_SIZE))  # fmt: skip

        times: dict[str, list[float]] = {"DataLoader+ToTensor": [], "TensorBatchLoader": []}
        outcomes: dict[str, list[float]] = {}
        for repeat in range(args.repeats):
            for name, make in (("DataLoader+ToTensor", with_dataloader),
                               ("TensorBatchLoader", with_tensor_batches)):  # fmt: skip
                seconds, results = pipeline(make)
                times[name].append(seconds)
                if name in outcomes:
                    assert outcomes[name] == results, f"{name} is not deterministic"
                outcomes[name] = results
                print(f"  repeat {repeat + 1}: {name:<20} {seconds:6.2f} s  "
                      f"train loss {results[0]:.6f} acc {results[1]:.2f}  "
                      f"valid loss {results[2]:.6f} acc {results[3]:.2f}  "
                      f"test loss {results[4]:.6f} acc {results[5]:.2f}")  # fmt: skip

    reference, fast = (statistics.median(times[n]) for n in times)
    ratio = reference / fast
    print(f"median DataLoader+ToTensor: {reference:.2f} s")
    print(f"median TensorBatchLoader:   {fast:.2f} s")
    print(f"speed-up: {ratio:.2f}x (target >= {args.target}x)")
    assert outcomes["DataLoader+ToTensor"] == outcomes["TensorBatchLoader"], (
        "losses/accuracies differ", outcomes)  # fmt: skip
    print("losses and accuracies: identical")
    assert ratio >= args.target, f"speed-up {ratio:.2f}x is below the {args.target}x target"


if __name__ == "__main__":
    main()
