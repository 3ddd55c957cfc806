"""One training of the peak-memory section of ``bench_side_by_side.py``, in a fresh process.

Run by ``bench_side_by_side.peak_rss``, once per kind and round::

    python tests/benchmarks/rss_child.py KIND IMAGES EPOCHS NETWORK

(``KINDS``; the commit-memory section runs ``COMMIT_KINDS`` on the FC network, which commit
each epoch from a hand-written loop, a ``Model`` callback or a bundle, and
``WIDE_COMMIT_KINDS`` on the wide one: the bundle's commits on a local directory and on a
``RemoteLikeStore``, staged or captured.)

It imports only what its kind needs. The hand-written loop imports PyTorch and the seed's
networks, never epochal, so ``peak_kib`` (imports included) compares each kind with a process
that never loaded epochal. "hand-written, epochal imported" imports ``epochal``,
``ModelBundle`` and the storage, plotting and TensorBoard adapters (most of what a bundle's
process loads; a bundle's training loads a few small modules more, lazily) before training
the same hand-written loop: the reference for the rise, because the modules a process has loaded
decide where the allocator puts the training's blocks, which moves the rise by a few hundred
KiB (on the FC network, more than the difference between ``Model`` and the hand-written
loop). It prints one JSON line:

- ``peak_kib``: the process's peak RSS, in KiB (``VmHWM``; ``ru_maxrss`` would carry the
  parent's peak over ``exec``), imports included;
- ``before_training_kib``: the RSS after a warm-up training of the same kind on 64 images (it
  loads what the code imports lazily: PyTorch's optimizer machinery, the storage adapter);
- ``training_rise_kib``: the measured training's peak over ``before_training_kib`` (the
  kernel's peak mark is reset before it), or null where the mark cannot be reset.
"""

from __future__ import annotations

import copy
import json
import resource
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tests.seed_networks import fully_connected_network, train_one_epoch

BATCH = 32  # also the side-by-side benchmark's (it imports these)
LR = 0.1
KINDS = ("hand-written", "hand-written, epochal imported", "epochal Model",
         "epochal ModelBundle, synchronous", "epochal ModelBundle, background")
# The commit-memory section: each epoch committed by something other than a bundle, so that
# a background commit's cost can be told from the bundle's (pairs: background over synchronous
# of the same round).
COMMIT_KINDS = ("hand-written, epochal imported", "hand-written, background torch.save",
                "hand-written, epochal synchronous commits",
                "hand-written, epochal background commits", "epochal Model",
                "epochal Model, synchronous commits", "epochal Model, background commits",
                "epochal ModelBundle, synchronous", "epochal ModelBundle, background",
                "epochal ModelBundle, remote-like store, synchronous",
                "epochal ModelBundle, remote-like store, background",
                "epochal ModelBundle, remote-like store, background, captured")


# The wide network's share of the commit-memory section: the bundle's commits, where a
# snapshot (22.2 MiB) is far above the allocator's noise.
WIDE_COMMIT_KINDS = ("hand-written, epochal imported", "epochal ModelBundle, synchronous",
                     "epochal ModelBundle, background",
                     "epochal ModelBundle, remote-like store, synchronous",
                     "epochal ModelBundle, remote-like store, background",
                     "epochal ModelBundle, remote-like store, background, captured")


class RemoteLikeStore:
    """A local directory written the way ``FsspecCheckpointStore`` writes ``s3://``: each
    file's bytes whole through ``write`` (no streaming ``open_write``), a staged file spooled
    to an anonymous local file and read back whole for its one ``write``
    (``StagedUpload``), or, with ``staged=False``, an ``open_staged`` that returns None (the
    store cannot stage: a background commit then captures the snapshot). Nothing is held in memory between writes, unlike a
    ``memory://`` store, so the peak shows what the commits hold."""

    open_write = None

    def __init__(self, inner: Any, *, staged: bool) -> None:
        self.inner = inner
        self.staged = staged

    def open_staged(self, name: str) -> Any:
        if not self.staged:
            return None
        from epochal_adapters.storage import StagedUpload

        return StagedUpload(lambda data: self.inner.write(name, data), url=self.url(name))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def wide_network() -> nn.Module:
    """A wide fully-connected network (5,823,498 parameters, 23 MB of weights): its snapshot
    dwarfs the allocator's noise, so the peak-memory table shows what a commit holds."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 2048), nn.ReLU(),
                         nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10))


RSS_NETWORKS = {"FC": fully_connected_network, "wide FC": wide_network}


def status_kib(field: str) -> int | None:
    """A field of ``/proc/self/status`` in KiB (``VmRSS``, ``VmHWM``), None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current RSS (Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _Commits:
    """Each epoch's weights and optimizer state written to ``folder`` at the epoch's end: by
    ``torch.save`` in a thread of its own (the previous one joined first), or by epochal's
    snapshot store, synchronously or in the background (``BackgroundCommits``)."""

    def __init__(self, kind: str, folder: str) -> None:
        self.folder = folder
        self.epochal = "epochal" in kind  # else the loop's own torch.save
        self.thread: threading.Thread | None = None
        self.rows: list[dict[str, Any]] = []
        self.snapshots: Any = None
        if self.epochal:
            from epochal._commit_writer import open_commits
            from epochal._snapshots import SnapshotStore
            from epochal_adapters.storage import FsspecCheckpointStore

            store = SnapshotStore(FsspecCheckpointStore(folder), describe=folder)
            self.snapshots = open_commits(store, background="background" in kind)

    def commit(self, epoch: int, network: nn.Module, optimizer: Any) -> None:
        if not self.epochal:
            self.finish()
            state = copy.deepcopy({"network": network.state_dict(),
                                   "optimizer": optimizer.state_dict()})
            path = Path(self.folder) / f"epoch_{epoch}.pt"
            self.thread = threading.Thread(target=torch.save, args=(state, path))
            self.thread.start()
            return
        from epochal._snapshots import Snapshot

        self.rows.append({"epoch": epoch, "loss": 0.5, "acc": 50.0})
        snapshot = Snapshot(epoch=epoch, global_step=epoch, network=network.state_dict(),
                            optimizer=optimizer.state_dict(), random_states=None,
                            log_rows=list(self.rows))
        self.snapshots.commit(snapshot, is_best=True, monitor="loss",
                              keep_only_last_best=False, save_every_epoch=False)

    def finish(self) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        wait = getattr(self.snapshots, "wait", None)  # BackgroundCommits only
        if wait is not None:
            wait()


def train_kind(kind: str, loader: Any, epochs: int, network_name: str) -> None:
    """One training of the given kind on a fresh network of ``RSS_NETWORKS``."""
    network = RSS_NETWORKS[network_name]()
    commits = kind.endswith(("commits", "torch.save"))
    if kind.startswith("hand-written"):
        optimizer = torch.optim.SGD(network.parameters(), lr=LR)
        with tempfile.TemporaryDirectory() as folder:
            committer = _Commits(kind, folder) if commits else None
            for epoch in range(1, epochs + 1):
                train_one_epoch(network, optimizer, nn.CrossEntropyLoss(), loader)
                if committer is not None:
                    committer.commit(epoch, network, optimizer)
            if committer is not None:
                committer.finish()
    elif kind == "epochal Model" or kind.startswith("epochal Model,"):  # not ModelBundle
        from epochal import Callback, Model

        model = Model(network, "sgd", "cross_entropy", batch_metrics=["accuracy"])
        with tempfile.TemporaryDirectory() as folder:
            callbacks = []
            if commits:
                committer = _Commits(kind, folder)

                class Commit(Callback):
                    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
                        committer.commit(epoch, network, model.optimizer)

                callbacks.append(Commit())
            model.fit_generator(loader, epochs=epochs, verbose=False, callbacks=callbacks)
            if commits:
                committer.finish()
    else:
        import epochal_adapters.plots as plots
        from epochal import ModelBundle

        plots.plot_history = lambda *a, **k: []  # the curves are not part of the training
        with tempfile.TemporaryDirectory() as folder:
            store: Any = folder
            if "remote-like" in kind:
                from epochal_adapters.storage import FsspecCheckpointStore

                store = RemoteLikeStore(FsspecCheckpointStore(folder),
                                        staged=not kind.endswith("captured"))
            bundle = ModelBundle.from_network(
                store, network, loss_function="cross_entropy", batch_metrics=["accuracy"],
                monitoring=False, background_commits="background" in kind)
            bundle.train(loader, epochs=epochs, verbose=False)


def main(kind: str, images: int, epochs: int, network_name: str) -> None:
    """Warm up, reset the peak mark, train ``epochs`` epochs on ``images`` random images, print
    the JSON line (see the module docstring)."""
    kinds = sorted(set(KINDS) | set(COMMIT_KINDS))
    if kind not in kinds or network_name not in RSS_NETWORKS:
        raise SystemExit(f"unknown kind {kind!r} or network {network_name!r}; kinds: {kinds}, "
                         f"networks: {sorted(RSS_NETWORKS)}")
    if kind.startswith("hand-written,"):  # every hand-written kind but the plain loop
        import tensorboard.compat.proto.event_pb2  # noqa: F401

        import epochal_adapters.plots
        import epochal_adapters.storage
        import epochal_adapters.tensorboard  # noqa: F401
        from epochal import Model, ModelBundle  # noqa: F401
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = TensorDataset(torch.rand(images, 1, 28, 28), torch.randint(0, 10, (images,)))
    warm = TensorDataset(data.tensors[0][:64], data.tensors[1][:64])
    train_kind(kind, DataLoader(warm, batch_size=BATCH, shuffle=True), 1, network_name)
    setup_peak = status_kib("VmHWM") or 0
    reset = reset_peak_rss()
    before = status_kib("VmRSS") or 0
    train_kind(kind, DataLoader(data, batch_size=BATCH, shuffle=True), epochs, network_name)
    hwm = status_kib("VmHWM") if reset else None
    peak = max(setup_peak, hwm or 0) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_kib": peak, "before_training_kib": before,
                      "training_rise_kib": (hwm - before) if hwm is not None else None}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
