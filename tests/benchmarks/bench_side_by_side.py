"""Benchmark (not a test): epochal side by side with a hand-written loop and its peers.

Everything runs in one process, on one CPU thread, in interleaved rounds (each round runs every
contender once, in a rotated order), and the table reports medians over the rounds of each
contender's time and of its per-round ratio (and difference) to the reference of that round.

Sections:

1. ``overhead``: per-step time of one training epoch over the same shuffling in-memory
   ``DataLoader`` (batch 32) on the one-layer, the seed's fully-connected and the seed's
   convolutional networks: the seed's hand-written loop (the reference), ``Model.fit_generator``
   with the display off and on (to a string buffer), Poutyne and PyTorch Lightning when they can
   be imported (skipped otherwise).
2. ``pipeline``: the seed tutorial's whole pipeline (one training epoch, validation, test) on
   60k MNIST-format images (Fashion-MNIST when Debian's ``dataset-fashion-mnist`` is installed,
   else synthetic): the seed's loop over ``DataLoader`` + ``ToTensor`` (the reference),
   ``Model`` over the same ``DataLoader``, ``Model`` over ``TensorBatchLoader``, and a
   hand-rolled loop at the limit (decoded once, index slicing, no per-step host sync).
3. ``commit``: what ``ModelBundle``'s per-epoch commit costs the training thread on a local
   directory and on a simulated remote store (a fixed delay per write), with synchronous and
   background commits, as a share of the epoch.
4. ``rss``: peak resident memory of a training run in a fresh process each: the hand-written
   loop (without and with epochal imported), ``Model``, and ``ModelBundle`` with synchronous
   and background commits, on the FC
   network and on a wide one (23 MB of weights, so that a snapshot stands out of the noise).

Writes ``bench-results/side_by_side.{md,json}`` (``--output`` to change) and prints the table.

    python tests/benchmarks/bench_side_by_side.py [--quick] [--sections overhead,pipeline,...]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))

import rss_child  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from epochal import Model, ModelBundle  # noqa: E402
from tests.seed_networks import (  # noqa: E402
    convolutional_network,
    evaluate_pass,
    fully_connected_network,
    train_one_epoch,
)

BATCH = rss_child.BATCH  # one batch size and learning rate for every section
LR = rss_child.LR


def one_layer_network() -> nn.Module:
    """A single linear layer on flattened 28x28 images (7,850 parameters)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))


NETWORKS: dict[str, Callable[[], nn.Module]] = {
    "one-layer": one_layer_network,
    "FC": fully_connected_network,
    "conv": convolutional_network,
}


# ---------------------------------------------------------------------------- measuring


def interleaved(contenders: dict[str, Callable[[], tuple[float, float]]], rounds: int,
                reference: str) -> dict[str, dict[str, float]]:
    """Run every contender once per round, rotating the order; medians of its wall and CPU
    seconds and of the per-round ratio and difference to ``reference``.

    Each contender returns ``(wall seconds, process CPU seconds)``. The CPU time is what the
    process itself spent: on a shared machine it is much steadier than the wall time, which
    also counts the time other processes held the cores."""
    names = list(contenders)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for name in names:  # warm-up: imports, allocator, lazy initialisation
        contenders[name]()
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            w, c = contenders[name]()
            wall[name].append(w)
            cpu[name].append(c)
    out = {}
    for name in names:
        out[name] = {
            "median_s": statistics.median(wall[name]),
            "ratio": statistics.median(s / h for s, h in zip(wall[name], wall[reference])),
            "diff_s": statistics.median(s - h for s, h in zip(wall[name], wall[reference])),
            "min_s": min(wall[name]),
            "cpu_median_s": statistics.median(cpu[name]),
            "cpu_ratio": statistics.median(s / h for s, h in zip(cpu[name], cpu[reference])),
            "cpu_diff_s": statistics.median(s - h for s, h in zip(cpu[name], cpu[reference])),
            "cpu_diff_interval_s": median_interval(
                [s - h for s, h in zip(cpu[name], cpu[reference])]),
        }
    return out


def median_interval(values: list[float]) -> tuple[float, float]:
    """A distribution-free 95% confidence interval of the median of ``values``: the order
    statistics of ranks ``floor(n/2 - 0.98 sqrt(n))`` and ``ceil(1 + n/2 + 0.98 sqrt(n))``
    (1-based; the normal approximation of the binomial count of values below the median, as in
    Conover, *Practical Nonparametric Statistics*, section 3.2). With fewer than 6 values it
    is the range."""
    ordered = sorted(values)
    n = len(ordered)
    if n < 6:
        return ordered[0], ordered[-1]
    half = 0.98 * n ** 0.5
    low = max(1, math.floor(n / 2 - half))
    high = min(n, math.ceil(1 + n / 2 + half))
    return ordered[low - 1], ordered[high - 1]


class _Stopwatch:
    """Wall and process CPU time since it was made."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def _timed(run: Callable[[], Any]) -> tuple[float, float]:
    watch = _Stopwatch()
    run()
    return watch.read()


# ---------------------------------------------------------------------------- section 1


def _poutyne_runner() -> Callable[[nn.Module, Iterable[Any]], None] | None:
    try:
        import poutyne
    except Exception:
        return None

    def run(network: nn.Module, loader: Iterable[Any]) -> None:
        model = poutyne.Model(network, torch.optim.SGD(network.parameters(), lr=LR),
                              nn.CrossEntropyLoss(), batch_metrics=["accuracy"])
        model.fit_generator(loader, epochs=1, verbose=False)

    return run


def _lightning_runner() -> Callable[[nn.Module, Iterable[Any]], None] | None:
    try:
        import pytorch_lightning as pl
    except Exception:
        try:
            import lightning.pytorch as pl  # type: ignore[no-redef]
        except Exception:
            return None
    import logging

    for name in ("pytorch_lightning", "lightning", "lightning.pytorch",
                 "lightning_fabric", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)

    class Module(pl.LightningModule):
        def __init__(self, network: nn.Module) -> None:
            super().__init__()
            self.network = network
            self.loss = nn.CrossEntropyLoss()

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            y_pred = self.network(x)
            loss = self.loss(y_pred, y)
            self.log("acc", (y_pred.argmax(1) == y).float().mean() * 100, on_epoch=True)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=LR)

    def run(network: nn.Module, loader: Iterable[Any]) -> None:
        trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0)
        trainer.fit(Module(network), loader)

    return run


def overhead(rounds: int, steps: int, networks: list[str] | None = None) -> dict[str, Any]:
    torch.manual_seed(0)
    n = steps * BATCH
    data = TensorDataset(torch.rand(n, 1, 28, 28), torch.randint(0, 10, (n,)))

    def loader() -> DataLoader[Any]:
        return DataLoader(data, batch_size=BATCH, shuffle=True,
                          generator=torch.Generator().manual_seed(1))

    def hand(network: nn.Module) -> tuple[float, float]:
        optimizer = torch.optim.SGD(network.parameters(), lr=LR)
        batches = loader()
        return _timed(lambda: train_one_epoch(network, optimizer, nn.CrossEntropyLoss(), batches))

    def ours(network: nn.Module, verbose: bool) -> tuple[float, float]:
        model = Model(network, torch.optim.SGD(network.parameters(), lr=LR),
                      nn.CrossEntropyLoss(), batch_metrics=["accuracy"])
        batches = loader()
        options = {"file": io.StringIO()} if verbose else None
        return _timed(lambda: model.fit_generator(batches, epochs=1, verbose=verbose,
                                                  progress_options=options))

    peers = {"Poutyne": _poutyne_runner(), "Lightning": _lightning_runner()}
    results: dict[str, Any] = {"steps": steps, "rounds": rounds, "networks": {},
                               "skipped": [k for k, v in peers.items() if v is None]}
    for net_name, make in NETWORKS.items():
        if networks and net_name not in networks:
            continue
        torch.manual_seed(0)
        # Every contender trains this one network, epoch after epoch: the same tensors at the
        # same addresses (copies placed elsewhere in memory run a step a few percent faster
        # or slower, which drowned the differences measured here). A step's cost does not
        # depend on the weights' values.
        base = make()
        contenders: dict[str, Callable[[], tuple[float, float]]] = {
            "hand-written": lambda base=base: hand(base),
            "epochal": lambda base=base: ours(base, False),
            "epochal, display on": lambda base=base: ours(base, True),
        }
        for peer, run in peers.items():
            if run is not None:
                contenders[peer] = (lambda run=run, base=base: _timed(
                    lambda: run(base, loader())))
        measured = interleaved(contenders, rounds, "hand-written")
        for value in measured.values():
            value["us_per_step"] = value["median_s"] / steps * 1e6
            value["diff_us_per_step"] = value["diff_s"] / steps * 1e6
            value["cpu_diff_us_per_step"] = value["cpu_diff_s"] / steps * 1e6
            value["cpu_diff_interval_us_per_step"] = [
                t / steps * 1e6 for t in value["cpu_diff_interval_s"]]
        results["networks"][net_name] = measured
        _progress(f"overhead {net_name}: " + ", ".join(
            f"{k} {v['diff_us_per_step']:+.1f} us (CPU {v['cpu_diff_us_per_step']:+.1f})"
            for k, v in measured.items()))
    return results


# ---------------------------------------------------------------------------- section 2


def _datasets(root: Path, limit: int | None) -> tuple[str, Any, Any, Any]:
    from bench_loader import datasets
    from torch.utils.data import Subset

    source, train, valid, test = datasets(root)
    if limit is not None:
        source += f"; first {limit} training and {limit // 6} test images (--quick)"
        train = Subset(train, range(int(limit * 0.8)))
        valid = Subset(valid, range(limit - int(limit * 0.8)))
        test = Subset(test, range(limit // 6))
    return source, train, valid, test


def _decoded(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The images as floats (ToTensor: uint8 / 255) and labels, decoded once."""
    from epochal_adapters.data.fast_loader import _unwrap_subsets, to_tensor_batch

    base, indices = _unwrap_subsets(dataset)
    images, labels = base.data, torch.as_tensor(base.targets).to(torch.int64)
    if indices is not None:
        images, labels = images[indices], labels[indices]
    return to_tensor_batch(images), labels


def _limit_pass(network: nn.Module, optimizer: torch.optim.Optimizer | None, x: torch.Tensor,
                y: torch.Tensor, generator: torch.Generator | None) -> tuple[float, float]:
    """The hand-rolled loop at the limit: index slicing, sums kept on the device."""
    loss_function = nn.CrossEntropyLoss()
    training = optimizer is not None
    network.train(training)
    order = torch.randperm(len(x), generator=generator) if generator is not None else None
    loss_sum = torch.zeros((), dtype=torch.float64)
    hits = torch.zeros((), dtype=torch.int64)
    with torch.set_grad_enabled(training):
        for start in range(0, len(x), BATCH):
            if order is not None:
                index = order[start:start + BATCH]
                xb, yb = x[index], y[index]
            else:
                xb, yb = x[start:start + BATCH], y[start:start + BATCH]
            scores = network(xb)
            loss = loss_function(scores, yb)
            if optimizer is not None:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            loss_sum += loss.detach() * len(yb)
            hits += (scores.argmax(1) == yb).sum()
    return float(loss_sum) / len(x), 100.0 * int(hits) / len(x)


def pipeline(rounds: int, limit: int | None) -> dict[str, Any]:
    from epochal_adapters.data import TensorBatchLoader

    results: dict[str, Any] = {"rounds": rounds, "networks": {}}
    with tempfile.TemporaryDirectory() as folder:
        source, train, valid, test = _datasets(Path(folder), limit)
        results["data"] = source
        results["sizes"] = [len(train), len(valid), len(test)]

        def seed_loop(make: Callable[[], nn.Module]) -> tuple[float, float]:
            torch.manual_seed(0)
            network = make()
            optimizer = torch.optim.SGD(network.parameters(), lr=LR)
            watch = _Stopwatch()
            g = torch.Generator().manual_seed(0)
            train_one_epoch(network, optimizer, nn.CrossEntropyLoss(),
                            DataLoader(train, BATCH, shuffle=True, generator=g))
            evaluate_pass(network, DataLoader(valid, BATCH), nn.CrossEntropyLoss())
            evaluate_pass(network, DataLoader(test, BATCH), nn.CrossEntropyLoss())
            return watch.read()

        def with_model(make: Callable[[], nn.Module], loader: Any) -> tuple[float, float]:
            torch.manual_seed(0)
            network = make()
            model = Model(network, torch.optim.SGD(network.parameters(), lr=LR),
                          nn.CrossEntropyLoss(), batch_metrics=["accuracy"])
            watch = _Stopwatch()
            g = torch.Generator().manual_seed(0)
            model.fit_generator(loader(train, BATCH, shuffle=True, generator=g),
                                loader(valid, BATCH), epochs=1, verbose=False)
            model.evaluate_generator(loader(test, BATCH), verbose=False)
            return watch.read()

        def at_the_limit(make: Callable[[], nn.Module]) -> tuple[float, float]:
            torch.manual_seed(0)
            network = make()
            optimizer = torch.optim.SGD(network.parameters(), lr=LR)
            watch = _Stopwatch()
            decoded = [_decoded(d) for d in (train, valid, test)]
            g = torch.Generator().manual_seed(0)
            _limit_pass(network, optimizer, *decoded[0], g)
            _limit_pass(network, None, *decoded[1], None)
            _limit_pass(network, None, *decoded[2], None)
            return watch.read()

        for net_name in ("FC", "conv"):
            make = NETWORKS[net_name]
            measured = interleaved({
                "seed loop, DataLoader+ToTensor": lambda make=make: seed_loop(make),
                "epochal, DataLoader+ToTensor": lambda make=make: with_model(make, DataLoader),
                "epochal, TensorBatchLoader": (
                    lambda make=make: with_model(make, TensorBatchLoader)),
                "hand-rolled limit": lambda make=make: at_the_limit(make),
            }, rounds, "seed loop, DataLoader+ToTensor")
            fast = measured["epochal, TensorBatchLoader"]["median_s"]
            results["networks"][net_name] = {
                "contenders": measured,
                "fast_over_limit": fast / measured["hand-rolled limit"]["median_s"],
                "fast_over_limit_cpu": (measured["epochal, TensorBatchLoader"]["cpu_median_s"]
                                        / measured["hand-rolled limit"]["cpu_median_s"]),
            }
            _progress(f"pipeline {net_name}: " + ", ".join(
                f"{k} {v['median_s']:.2f} s" for k, v in measured.items()))
    return results


# ---------------------------------------------------------------------------- section 3


class _DelayedStore:
    """A local store whose every write and delete first waits ``delay_s`` (a remote round
    trip, as an S3 PUT costs); reads and listings are local."""

    def __init__(self, inner: Any, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s

    def write(self, name: str, data: bytes) -> None:
        time.sleep(self.delay_s)
        self.inner.write(name, data)

    # No streaming: each file arrives whole through ``write``, one delayed upload, as
    # FsspecCheckpointStore does on S3 (``None`` also keeps ``__getattr__`` from handing out
    # the local store's ``open_write``, which would skip the delay).
    open_write = None

    def open_staged(self, name: str) -> Any:
        """Staged as ``FsspecCheckpointStore`` stages a remote object: a local spool file,
        published by one delayed ``write``."""
        from epochal_adapters.storage import StagedUpload

        return StagedUpload(lambda data: self.write(name, data), url=self.url(name))

    def delete(self, name: str) -> None:
        time.sleep(self.delay_s)
        self.inner.delete(name)

    def url(self, name: str) -> str:
        return "simulated-remote://" + name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@contextlib.contextmanager
def _commit_timer() -> Iterator[list[float]]:
    """Time the bundle callback's ``on_epoch_end`` (the commit on the training thread)."""
    import epochal._bundle_callback as bundle_callback

    spent: list[float] = []
    original = bundle_callback.BundleCallback.on_epoch_end

    def timed(self: Any, epoch: int, logs: dict[str, Any]) -> None:
        start = time.perf_counter()
        original(self, epoch, logs)
        spent.append(time.perf_counter() - start)

    bundle_callback.BundleCallback.on_epoch_end = timed  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        bundle_callback.BundleCallback.on_epoch_end = original  # type: ignore[method-assign]


def commit_cost(images: int, epochs: int, delay_s: float) -> dict[str, Any]:
    from epochal_adapters.storage import FsspecCheckpointStore

    torch.manual_seed(0)
    x, y = torch.rand(images, 1, 28, 28), torch.randint(0, 10, (images,))
    data = TensorDataset(x, y)
    results: dict[str, Any] = {"images": images, "epochs": epochs, "remote_delay_s": delay_s,
                               "cases": {}}
    for store_name in ("local disk", f"simulated remote ({delay_s * 1000:.0f} ms per write)"):
        for background in (False, True):
            with tempfile.TemporaryDirectory() as folder:
                store: Any = FsspecCheckpointStore(folder)
                if store_name != "local disk":
                    store = _DelayedStore(store, delay_s)
                torch.manual_seed(0)
                bundle = ModelBundle.from_network(
                    store, fully_connected_network(), optimizer={"optim": "sgd", "lr": LR},
                    loss_function="cross_entropy", batch_metrics=["accuracy"],
                    monitoring=False, background_commits=background)
                loader = DataLoader(data, batch_size=BATCH, shuffle=True)
                import epochal_adapters.plots as plots

                real_plot, plots.plot_history = plots.plot_history, lambda *a, **k: []
                try:
                    with _commit_timer() as spent:
                        start = time.perf_counter()
                        rows = bundle.train(loader, epochs=epochs, verbose=False,
                                            disable_tensorboard=True)  # not the commit
                        total = time.perf_counter() - start
                finally:
                    plots.plot_history = real_plot
                snapshot_bytes = sum(p.stat().st_size for p in Path(folder).rglob("*.state"))
            epoch_s = statistics.median(float(r["time"]) for r in rows)
            on_thread = statistics.median(spent)
            key = f"{store_name}, {'background' if background else 'synchronous'}"
            results["cases"][key] = {
                "epoch_s": epoch_s,
                "commit_on_training_thread_s": on_thread,
                "share_of_epoch": on_thread / epoch_s,
                "train_call_s": total,
                "state_files_kept_bytes": snapshot_bytes,  # the bundle keeps the last two
            }
            _progress(f"commit {key}: {on_thread * 1e3:.1f} ms per epoch "
                      f"({100 * on_thread / epoch_s:.2f}% of {epoch_s:.2f} s)")
    return results


# ---------------------------------------------------------------------------- section 4

RSS_CHILD = Path(__file__).with_name("rss_child.py")  # one training per fresh process


def peak_rss(images: int, epochs: int, network_name: str = "FC", rounds: int = 5,
             kinds: tuple[str, ...] = rss_child.KINDS) -> dict[str, Any]:
    """Each kind's peak RSS, in ``rounds`` interleaved rounds of fresh processes: medians,
    with each kind's per-round peak over the hand-written loop's (no epochal imported; the
    section's first kind when it has no plain loop) and rise over the rise of the
    hand-written loop with epochal imported, of the same round (the rise of a run moves by a
    few hundred KiB from one process to the next, and with the modules loaded: see
    ``rss_child``). Each kind named "..., background" or "... background commits" also gets
    its rise over its synchronous counterpart's of the same round (``rise_over_synchronous``).
    """
    results: dict[str, Any] = {"network": network_name, "images": images, "epochs": epochs,
                               "rounds": rounds, "runs": {}}
    # A fixed mmap threshold: glibc then maps every block over 128 KiB on its own and returns
    # it when freed, so the peak shows the memory alive at once, not the allocator's history
    # (its adaptive threshold otherwise keeps freed snapshot-sized blocks in the heap).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}
    measured: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for _ in range(rounds):
        for kind in kinds:
            out = subprocess.run(
                [sys.executable, str(RSS_CHILD), kind, str(images), str(epochs), network_name],
                capture_output=True, text=True, env=env, check=True,
            )
            measured[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
    hand = measured.get("hand-written", measured[kinds[0]])
    reference = measured["hand-written, epochal imported"]  # for the rise
    for kind, runs in measured.items():
        rises = [r["training_rise_kib"] for r in runs]
        row: dict[str, Any] = {
            "peak_kib": statistics.median(r["peak_kib"] for r in runs),
            "over_hand_kib": statistics.median(
                r["peak_kib"] - h["peak_kib"] for r, h in zip(runs, hand)),
            "training_rise_kib": None, "per_round": runs,
        }
        if None not in rises and None not in (h["training_rise_kib"] for h in reference):
            over = [r["training_rise_kib"] - h["training_rise_kib"]
                    for r, h in zip(runs, reference)]
            row.update(training_rise_kib=statistics.median(rises),
                       rise_over_reference_kib=statistics.median(over),
                       rise_over_reference_range_kib=[min(over), max(over)])
        synchronous = _synchronous_counterpart(kind)
        if synchronous in measured and row["training_rise_kib"] is not None:
            over = [r["training_rise_kib"] - s["training_rise_kib"]
                    for r, s in zip(runs, measured[synchronous])]
            row.update(rise_over_synchronous_kib=statistics.median(over),
                       rise_over_synchronous_range_kib=[min(over), max(over)])
        results["runs"][kind] = row
    network = rss_child.RSS_NETWORKS[network_name]()
    weights = sum(t.numel() * t.element_size() for t in network.state_dict().values())
    results["weights_bytes"] = weights
    with tempfile.TemporaryDirectory() as folder:  # one snapshot of this run's kind
        torch.manual_seed(0)
        tiny = TensorDataset(torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,)))
        bundle = ModelBundle.from_network(folder, network, loss_function="cross_entropy",
                                          batch_metrics=["accuracy"], monitoring=False)
        import epochal_adapters.plots as plots

        real_plot, plots.plot_history = plots.plot_history, lambda *a, **k: []
        try:
            bundle.train(DataLoader(tiny, batch_size=BATCH), epochs=1, verbose=False)
        finally:
            plots.plot_history = real_plot
        results["snapshot_bytes"] = sum(p.stat().st_size for p in Path(folder).rglob("*.state"))
    _progress(f"peak RSS ({network_name}): " + ", ".join(
        f"{k} {v['peak_kib'] / 1024:.0f} MiB" for k, v in results["runs"].items()))
    return results


def _synchronous_counterpart(kind: str) -> str | None:
    """The kind that commits the same way but synchronously ("..., background torch.save":
    the same loop committing nothing), None for kinds that commit nothing in the background."""
    if kind.endswith("background torch.save"):
        return "hand-written, epochal imported"
    if "background" in kind:
        return kind.removesuffix(", captured").replace("background", "synchronous")
    return None


# ---------------------------------------------------------------------------- profile


def profile(out: Path, steps: int) -> list[str]:
    """pyinstrument profiles of ``Model.fit_generator`` (FC network, display off and on) and of
    the hand-written loop on the same batches; written as text next to the table."""
    try:
        from pyinstrument import Profiler
    except Exception:
        _progress("pyinstrument is not installed: no profile written")
        return []
    torch.manual_seed(0)
    n = steps * BATCH
    data = TensorDataset(torch.rand(n, 1, 28, 28), torch.randint(0, 10, (n,)))
    written = []
    for name, verbose in (("hand-written", None), ("epochal", False), ("epochal-display", True)):
        network = fully_connected_network()
        loader = DataLoader(data, batch_size=BATCH, shuffle=True)
        optimizer = torch.optim.SGD(network.parameters(), lr=LR)
        model = Model(network, optimizer, nn.CrossEntropyLoss(), batch_metrics=["accuracy"])
        options = {"file": io.StringIO()} if verbose else None
        profiler = Profiler(interval=0.0001)
        with profiler:
            if verbose is None:
                train_one_epoch(network, optimizer, nn.CrossEntropyLoss(), loader)
            else:
                model.fit_generator(loader, epochs=1, verbose=verbose, progress_options=options)
        path = out / f"profile_fc_{name}.txt"
        path.write_text(profiler.output_text(unicode=True, color=False, show_all=False),
                        encoding="utf-8")
        written.append(str(path))
    _progress("profiles: " + ", ".join(written))
    return written


# ---------------------------------------------------------------------------- report


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "load_average_at_start": [round(v, 2) for v in load]}


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# epochal side-by-side benchmark", "",
        f"Command: `{report['command']}`  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} on {m['torch_threads']} "
        f"thread, Python {m['python']}; load average at start {m['load_average_at_start']}, "
        f"at end {report.get('load_average_at_end')}.  ",
        f"Rounds are interleaved; values are medians over rounds ({report['mode']} mode).", "",
    ]
    if "overhead" in report:
        o = report["overhead"]
        lines += [
            f"## Per-step time, one training epoch of {o['steps']} steps, batch {BATCH} "
            f"({o['rounds']} rounds)", "",
            "Same shuffling in-memory DataLoader; the reference is the seed's hand-written "
            "loop (which calls `float()` on the loss and the accuracy every step).", "",
            "| network | contender | µs/step | over hand-written (µs/step) | ratio "
            "| CPU: over hand-written (µs/step) | CPU: 95% interval | CPU ratio |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for net, measured in o["networks"].items():
            for name, v in measured.items():
                low, high = v["cpu_diff_interval_us_per_step"]
                lines.append(f"| {net} | {name} | {v['us_per_step']:.1f} | "
                             f"{v['diff_us_per_step']:+.1f} | {v['ratio']:.3f} | "
                             f"{v['cpu_diff_us_per_step']:+.1f} | {low:+.1f} .. {high:+.1f} | "
                             f"{v['cpu_ratio']:.3f} |")
        if o["skipped"]:
            lines += ["", f"Not installed, skipped: {', '.join(o['skipped'])}."]
        lines.append("")
    if "pipeline" in report:
        p = report["pipeline"]
        lines += [
            f"## Seed pipeline: one training epoch, validation and test ({p['rounds']} rounds)",
            "", f"Data: {p['data']}; train/valid/test = {'/'.join(map(str, p['sizes']))}.", "",
            "| network | contender | seconds | ratio to the seed loop | CPU seconds "
            "| CPU ratio |", "|---|---|---:|---:|---:|---:|",
        ]
        for net, entry in p["networks"].items():
            for name, v in entry["contenders"].items():
                lines.append(f"| {net} | {name} | {v['median_s']:.2f} | {v['ratio']:.3f} | "
                             f"{v['cpu_median_s']:.2f} | {v['cpu_ratio']:.3f} |")
        lines += ["", "epochal with TensorBatchLoader over the hand-rolled limit (wall, CPU): "
                  + ", ".join(f"{net} {e['fast_over_limit']:.3f}x, {e['fast_over_limit_cpu']:.3f}x"
                              for net, e in p["networks"].items()), ""]
    if "commit" in report:
        c = report["commit"]
        lines += [
            f"## ModelBundle commit per epoch (FC network, {c['images']} images, "
            f"{c['epochs']} epochs)", "",
            "Time the bundle's epoch-end commit keeps the training thread (median over epochs).",
            "", "| store, commits | ms per epoch on the training thread | share of the epoch "
            "| epoch (s) | state files kept (bytes) |", "|---|---:|---:|---:|---:|",
        ]
        for name, v in c["cases"].items():
            lines.append(f"| {name} | {v['commit_on_training_thread_s'] * 1e3:.1f} | "
                         f"{100 * v['share_of_epoch']:.2f}% | {v['epoch_s']:.2f} | "
                         f"{v['state_files_kept_bytes']} |")
        lines.append("")
    for r in report.get("rss", []):
        lines += [
            f"## Peak resident memory ({r['network']} network, {r['images']} images, "
            f"{r['epochs']} epochs, a fresh process each, medians of {r.get('rounds', 1)} "
            "interleaved rounds)", "",
            f"Weights: {r['weights_bytes']} bytes; one snapshot (state file): "
            f"{r.get('snapshot_bytes', 'n/a')} bytes.", "",
            "Peak: the process's peak RSS, imports included, and its difference to the "
            "hand-written loop's (no epochal imported). Rise: after a warm-up training "
            "of the same kind on 64 images, the peak RSS of the measured training over the RSS "
            "before it (the kernel's peak mark reset in between), and its difference to the "
            "rise of the hand-written loop with epochal imported (the same modules loaded).", "",
            "| run | peak RSS (MiB) | peak over hand-written (MiB) | rise during training "
            "(MiB) | rise over hand-written, epochal imported (MiB) | lowest..highest round "
            "(MiB) | in snapshots |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        snapshot = r.get("snapshot_bytes") or 0
        for name, v in r["runs"].items():
            rise = v.get("training_rise_kib")
            over = v.get("rise_over_reference_kib")
            share = f"{over * 1024 / snapshot:+.2f}" if over is not None and snapshot else "n/a"
            low, high = v.get("rise_over_reference_range_kib") or (None, None)
            spread = f"{low / 1024:+.1f}..{high / 1024:+.1f}" if low is not None else "n/a"
            lines.append(
                f"| {name} | {v['peak_kib'] / 1024:.1f} | {v['over_hand_kib'] / 1024:+.1f} | "
                + (f"{rise / 1024:.1f} | {over / 1024:+.1f} | {spread} | {share} |"
                   if over is not None else "n/a | n/a | n/a | n/a |"))
        lines.append("")
    for r in report.get("rss_commits", []):
        snapshot = r.get("snapshot_bytes") or 0
        lines += [
            f"## What a background commit costs ({r['network']} network, {r['images']} images, "
            f"{r['epochs']} epochs, a fresh process each, medians of {r.get('rounds', 1)} "
            "interleaved rounds)", "",
            f"One snapshot (state file): {snapshot} bytes. Rise as in the peak-memory "
            "section; each background kind also against its synchronous counterpart of the "
            "same round (for \"background torch.save\": the same loop committing nothing).", "",
            "| run | rise during training (MiB) | rise over hand-written, epochal imported "
            "(MiB) | background over synchronous (MiB) | lowest..highest round (MiB) | "
            "in snapshots |", "|---|---:|---:|---:|---:|---:|",
        ]
        for name, v in r["runs"].items():
            over = v.get("rise_over_synchronous_kib")
            low, high = v.get("rise_over_synchronous_range_kib") or (None, None)
            reference = v.get("rise_over_reference_kib")
            lines.append(
                f"| {name} | {v['training_rise_kib'] / 1024:.1f} | "
                f"{reference / 1024:+.1f} | "
                + (f"{over / 1024:+.2f} | {low / 1024:+.2f}..{high / 1024:+.2f} | "
                   f"{over * 1024 / snapshot:.2f} |" if over is not None and snapshot
                   else "| | |"))
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
    warnings.filterwarnings("ignore", category=UserWarning, module="pytorch_lightning")
    warnings.filterwarnings("ignore", category=UserWarning, module="lightning")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds, steps and images: a few minutes")
    parser.add_argument("--sections", default="overhead,pipeline,commit,rss")
    parser.add_argument("--rounds", type=int, default=None, help="default 9 (quick: 3)")
    parser.add_argument("--output", default="bench-results")
    parser.add_argument("--networks", default="",
                        help="overhead section: a comma-separated subset of one-layer,FC,conv")
    parser.add_argument("--profile", action="store_true",
                        help="also write pyinstrument profiles of the FC epoch (hand-written, "
                        "epochal with the display off and on)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rounds = args.rounds or (3 if args.quick else 9)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - {"overhead", "pipeline", "commit", "rss", "rss-commits"}
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose among overhead, pipeline, "
                     "commit, rss, rss-commits (not in the default: what a background commit "
                     "costs without a bundle, FC network, about 11 minutes)")
    report: dict[str, Any] = {
        "command": " ".join(["python", "tests/benchmarks/bench_side_by_side.py", *sys.argv[1:]]),
        "mode": "quick" if args.quick else "full", "machine": machine(),
    }
    if "overhead" in sections:
        chosen = [n.strip() for n in args.networks.split(",") if n.strip()]
        if set(chosen) - set(NETWORKS):
            parser.error(f"unknown networks {sorted(set(chosen) - set(NETWORKS))}; choose "
                         f"among {', '.join(NETWORKS)}")
        report["overhead"] = overhead(rounds, 200 if args.quick else 600, chosen or None)
    if "pipeline" in sections:
        report["pipeline"] = pipeline(rounds, 12_000 if args.quick else None)
    if "commit" in sections:
        report["commit"] = commit_cost(12_000 if args.quick else 60_000, 3, 0.05)
    if "rss" in sections:
        rss_rounds = 1 if args.quick else 5
        report["rss"] = [peak_rss(12_000 if args.quick else 60_000, 2, "FC", rss_rounds),
                         peak_rss(3_000 if args.quick else 6_000, 2, "wide FC", rss_rounds)]
    if "rss-commits" in sections:
        commit_rounds = 1 if args.quick else 5
        report["rss_commits"] = [
            peak_rss(12_000 if args.quick else 60_000, 2, "FC", commit_rounds,
                     rss_child.COMMIT_KINDS),
            peak_rss(3_000 if args.quick else 6_000, 2, "wide FC", commit_rounds,
                     rss_child.WIDE_COMMIT_KINDS),
        ]
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if args.profile:
        report["profiles"] = profile(out, 200 if args.quick else 600)
    report["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    text = markdown(report)
    (out / "side_by_side.md").write_text(text + "\n", encoding="utf-8")
    (out / "side_by_side.json").write_text(json.dumps(report, indent=2) + "\n",
                                           encoding="utf-8")
    print(text)
    print(f"written: {out / 'side_by_side.md'}, {out / 'side_by_side.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
