"""Subprocess worker for the SIGKILL resume tests: trains a bundle, optionally killing itself.

    python -m tests.integration.kill_worker DIRECTORY EPOCHS [KILL]

KILL is one of ``epoch_begin:E`` (between epochs, as epoch E starts), ``step:E:S`` (mid-epoch,
after step S of epoch E), ``write:NAME_PREFIX:N`` (during the N-th atomic write whose name
starts with NAME_PREFIX, after the temporary file is written and before it replaces the old
one: e.g. ``write:state/:3`` or ``write:manifests/:2``).

With ``EPOCHAL_TEST_BACKGROUND_COMMITS=1`` in the environment the bundle writes its commits in
the background (``background_commits=True``), in both modes of this script.
"""

from __future__ import annotations

import os
import signal
import sys

from epochal import Callback, EarlyStopping, ModelBundle, StepLR
from tests.integration.bundle_helpers import loaders, network

BACKGROUND = os.environ.get("EPOCHAL_TEST_BACKGROUND_COMMITS") == "1"


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _Killer(Callback):
    def __init__(self, spec: str) -> None:
        super().__init__()
        parts = spec.split(":")
        self.kind = parts[0]
        self.epoch = int(parts[1]) if self.kind in ("epoch_begin", "step") else 0
        self.step = int(parts[2]) if self.kind == "step" else 0
        self.current = 0

    def on_epoch_begin(self, epoch_number, logs):
        self.current = epoch_number
        if self.kind == "epoch_begin" and epoch_number == self.epoch:
            _die()

    def on_train_batch_end(self, batch_number, logs):
        if self.kind == "step" and self.current == self.epoch and batch_number == self.step:
            _die()


def _kill_during_write(prefix: str, nth: int) -> None:
    real_replace = os.replace
    count = {"n": 0}

    def replace(src, dst, *args, **kwargs):
        name = str(dst).replace(os.sep, "/")
        if f"/{prefix}" in name or name.startswith(prefix):
            count["n"] += 1
            if count["n"] == nth:
                _die()  # the temporary file is complete; the rename never happens
        return real_replace(src, dst, *args, **kwargs)

    os.replace = replace


def main() -> None:
    directory, epochs = sys.argv[1], int(sys.argv[2])
    kill = sys.argv[3] if len(sys.argv) > 3 else ""
    callbacks = [EarlyStopping(monitor="val_loss", patience=50)]
    if kill.startswith("write:"):
        _, prefix, nth = kill.split(":")
        _kill_during_write(prefix, int(nth))
    elif kill:
        callbacks.append(_Killer(kill))
    bundle = ModelBundle.from_network(directory, network(), task="classif",
                                      optimizer={"optim": "sgd", "lr": 0.1},
                                      background_commits=BACKGROUND)
    train, valid = loaders(seeded_generator=False)
    bundle.train(train, valid, epochs=epochs, callbacks=callbacks, verbose=False,
                 lr_schedulers=[StepLR(step_size=2, gamma=0.5)])
    print("finished")


if __name__ == "__main__" and sys.argv[1:2] != ["--matrix"]:
    main()


# ---------------------------------------------------------------------- fault-injection matrix
#
#     python -m tests.integration.kill_worker --matrix BASE EPOCHS [FIRST [LAST]]
#         [--only delete] [--storage-options JSON] [--scratch DIR] [--pick K]
#         [--train-options JSON]
#
# One pre-imported process forks a child per kill point: the child trains with every storage
# operation counted and SIGKILLs itself right after operation N; a second forked child resumes.
# On local disk (BASE a path) the operations are each file write before its fsync, each fsync,
# rename, directory fsync and delete; on an object store (BASE a URL such as s3://bucket/run,
# with --storage-options) each upload and each delete the store performs.
# ``--only delete`` keeps the kill points right after each delete and right before each run of
# deletes (the pruning of superseded files), instead of every operation.
# ``--pick K`` runs only kill point number K modulo their count; ``--train-options`` are more
# keywords for ``ModelBundle.train`` (``keep_only_last_best``, ``save_every_epoch``).
# Prints one JSON line with the uninterrupted run's summary and operations, then one per kill
# point.

_EVENTS: list[str] = []


def _count_operations(kill_after: int | None) -> None:
    """Wrap the os functions the store uses; die right after operation ``kill_after``."""
    real_fsync, real_replace, real_remove = os.fsync, os.replace, os.remove

    def event(kind: str) -> None:
        _EVENTS.append(kind)
        if kill_after is not None and len(_EVENTS) == kill_after:
            _die()

    def fsync(fd):
        event("write")  # the bytes are written; the fsync has not happened yet
        real_fsync(fd)
        event("fsync")

    def replace(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        event(f"rename {os.path.basename(str(dst))}")

    def remove(path, *args, **kwargs):
        real_remove(path, *args, **kwargs)
        event(f"delete {os.path.basename(str(path))}")

    os.fsync, os.replace, os.remove = fsync, replace, remove


def _count_remote_operations(kill_after: int | None) -> None:
    """Wrap the store's uploads and delete requests (every one: files, the probe and the
    sweep of a killed probe's file); die right after operation ``kill_after``."""
    from epochal_adapters.storage import FsspecCheckpointStore

    real_upload = FsspecCheckpointStore._write_remote
    real_remove = FsspecCheckpointStore._rm_remote

    def event(kind: str, store, path: str) -> None:
        name = path[len(store._root) + 1:]
        _EVENTS.append(f"{kind} ._probe" if name.startswith("._probe-") else f"{kind} {name}")
        if kill_after is not None and len(_EVENTS) == kill_after:
            _die()

    def upload(self, path, data):
        real_upload(self, path, data)
        event("upload", self, path)

    def remove(self, path):
        real_remove(self, path)
        event("delete", self, path)

    FsspecCheckpointStore._write_remote = upload
    FsspecCheckpointStore._rm_remote = remove


def _is_remote(directory: str) -> bool:
    return "://" in directory and not directory.startswith("file://")


def _train_child(directory: str, epochs: int, kill_after: int | None, *, scratch: str,
                 options: dict | None = None, plots: bool = True,
                 summary: bool = False, train_options: dict | None = None) -> int:
    """Fork a child that trains (killed after operation ``kill_after``); its exit status.

    The child writes the operations it counted to ``scratch/ops.txt`` and, with ``summary``,
    the directory's summary to ``scratch/summary.json``. ``plots=False`` skips drawing the
    curves (0.4 s of a 0.5 s run; resumed children only need the training files, which the
    test compares)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            if not plots:
                import epochal_adapters.plots

                epochal_adapters.plots.plot_history = lambda *args, **kwargs: []
            bundle = ModelBundle.from_network(directory, network(), task="classif",
                                              optimizer={"optim": "sgd", "lr": 0.1},
                                              monitor_metric="val_loss", monitor_mode="min",
                                              storage_options=options,
                                              background_commits=BACKGROUND)
            train, valid = loaders(seeded_generator=False)
            if _is_remote(directory):
                _count_remote_operations(kill_after)
            else:
                _count_operations(kill_after)
            # TensorBoard's event files are derived logs written by TensorBoard's own thread
            # (names with a timestamp and pid): not training files, and their writes would be
            # counted as kill points at unpredictable moments. Their resume behaviour is
            # tested in test_bundle_tensorboard.py.
            bundle.train(train, valid, epochs=epochs, verbose=False,
                         lr_schedulers=[StepLR(step_size=2, gamma=0.5)],
                         **{"keep_only_last_best": True, "disable_tensorboard": True,
                            **(train_options or {})})
            count = len(_EVENTS)
            with open(os.path.join(scratch, "ops.txt"), "w", encoding="utf-8") as f:
                f.write(str(count) + "\n" + "\n".join(_EVENTS))
            if summary:
                import json

                with open(os.path.join(scratch, "summary.json"), "w", encoding="utf-8") as f:
                    json.dump(_summary(directory, options), f)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _summary(directory: str, options: dict | None) -> dict:
    """SHA-256 of the last weights, log.tsv rows without ``time``, and the training files
    (probe and plot files left out), read through the bundle's store."""
    import csv
    import hashlib
    import io

    import torch

    from epochal_adapters.storage import FsspecCheckpointStore

    store = FsspecCheckpointStore(directory, options)
    weights = torch.load(io.BytesIO(store.read("checkpoint.ckpt")), weights_only=True)
    digest = hashlib.sha256()
    for key in sorted(weights):
        digest.update(key.encode())
        digest.update(weights[key].numpy().tobytes())
    rows = [{k: v for k, v in r.items() if k != "time"}
            for r in csv.DictReader(io.StringIO(store.read("log.tsv").decode("utf-8")),
                                    delimiter="\t")]
    # Every file, temporary ones (which names() skips) included: a leftover is a difference.
    if _is_remote(directory):
        import fsspec

        fs, root = fsspec.core.url_to_fs(directory, **(options or {}))
        fs.invalidate_cache()
        files = [str(p)[len(root.rstrip("/")) + 1:] for p in fs.find(root)]
    else:
        files = []
        for root, _dirs, names in os.walk(directory):
            files.extend(os.path.relpath(os.path.join(root, name), directory).replace(os.sep, "/")
                         for name in names)
    files = [n for n in files if not n.startswith(("plots/", "tensorboard/"))]
    return {"weights": digest.hexdigest(), "rows": rows, "files": sorted(files)}


def _kill_points(events: list[str], only: str | None) -> list[int]:
    """Kill after these operations (1-based): all, or with ``only='delete'`` each delete and
    the operation right before each run of deletes."""
    if only is None:
        return list(range(1, len(events) + 1))
    if only != "delete":
        raise SystemExit(f"--only takes 'delete'; got {only!r}")
    points = set()
    for n, kind in enumerate(events, start=1):
        if kind.startswith("delete"):
            points.add(n)
            if n > 1 and not events[n - 2].startswith("delete"):
                points.add(n - 1)
    return sorted(points)


def matrix(base: str, epochs: int, first: int, last: int | None, *, only: str | None = None,
           options: dict | None = None, scratch: str | None = None, pick: int | None = None,
           train_options: dict | None = None) -> None:
    import json
    import tempfile
    import time

    import torch

    torch.set_num_threads(1)
    remote = _is_remote(base)
    scratch = scratch or (tempfile.mkdtemp(prefix="kill-matrix-") if remote else base)
    join = (lambda name: f"{base.rstrip('/')}/{name}") if remote else (
        lambda name: os.path.join(base, name))
    # One uncounted training first, on local disk: it loads the data and imports everything a
    # training imports lazily (the optimizer pulls in torch._dynamo: seconds, in every child
    # otherwise). No remote filesystem is opened in this process: each child opens its own.
    warm = ModelBundle.from_network(os.path.join(scratch, "warm-up"), network(), task="classif")
    warm.train(*loaders(seeded_generator=False), epochs=1, verbose=False)

    def child(name: str, directory: str, kill_after: int | None, **kwargs) -> tuple[int, str]:
        own = os.path.join(scratch, f"{name}.scratch")
        os.makedirs(own, exist_ok=True)
        return _train_child(directory, epochs, kill_after, scratch=own, options=options,
                            train_options=train_options, **kwargs), own

    code, own = child("reference", join("reference"), None, summary=True)
    assert code == 0, "the uninterrupted run failed"
    with open(os.path.join(own, "ops.txt"), encoding="utf-8") as f:
        f.readline()
        events = f.read().splitlines()
    with open(os.path.join(own, "summary.json"), encoding="utf-8") as f:
        reference = json.load(f)
    points = [n for n in _kill_points(events, only)
              if n >= first and (last is None or n <= last)]
    if pick is not None:  # one point, chosen by a number of any size (a Hypothesis draw)
        points = [points[pick % len(points)]]
    print(json.dumps({"reference": reference, "operations": events, "points": points}),
          flush=True)
    for n in points:
        directory = join(f"kill_{n}")
        started = time.perf_counter()
        killed, _ = child(f"kill_{n}", directory, n)
        middle = time.perf_counter()
        resumed, own = child(f"resume_{n}", directory, None, plots=False, summary=True)
        result = {"kill_after": n, "killed": killed, "resumed": resumed,
                  "seconds": [round(middle - started, 3), round(time.perf_counter() - middle, 3)]}
        if resumed == 0:
            with open(os.path.join(own, "summary.json"), encoding="utf-8") as f:
                result.update(json.load(f))
        print(json.dumps(result), flush=True)


def _matrix_main(argv: list[str]) -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="kill_worker --matrix")
    parser.add_argument("base")
    parser.add_argument("epochs", type=int)
    parser.add_argument("first", type=int, nargs="?", default=1)
    parser.add_argument("last", type=int, nargs="?", default=None)
    parser.add_argument("--only", choices=["delete"], default=None)
    parser.add_argument("--storage-options", type=json.loads, default=None)
    parser.add_argument("--scratch", default=None)
    parser.add_argument("--pick", type=int, default=None)
    parser.add_argument("--train-options", type=json.loads, default=None)
    args = parser.parse_args(argv)
    matrix(args.base, args.epochs, args.first, args.last, only=args.only,
           options=args.storage_options, scratch=args.scratch, pick=args.pick,
           train_options=args.train_options)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--matrix":
    _matrix_main(sys.argv[2:])
