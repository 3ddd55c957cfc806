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
#     python -m tests.integration.kill_worker --matrix DIRECTORY EPOCHS [FIRST [LAST]]
#
# One pre-imported process forks a child per kill point: the child trains with every storage
# operation counted (each file write before its fsync, each fsync, rename, directory fsync
# and delete) and SIGKILLs itself right after operation N; a second forked child resumes.
# Prints one JSON line per kill point, then the number of operations of an uninterrupted run.

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


def _train_child(directory: str, epochs: int, kill_after: int | None, plots: bool = True) -> int:
    """Fork a child that trains (killed after operation ``kill_after``); its exit status.

    ``plots=False`` skips drawing the curves (0.4 s of a 0.5 s run; resumed children only
    need the training files, which the test compares)."""
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
                                              background_commits=BACKGROUND)
            train, valid = loaders(seeded_generator=False)
            _count_operations(kill_after)
            bundle.train(train, valid, epochs=epochs, verbose=False, keep_only_last_best=True,
                         lr_schedulers=[StepLR(step_size=2, gamma=0.5)])
            with open(os.path.join(directory, "..", f"{os.path.basename(directory)}.ops"),
                      "w") as f:
                f.write(str(len(_EVENTS)) + "\n" + "\n".join(_EVENTS))
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


def _summary(directory: str) -> dict:
    import csv
    import hashlib

    import torch

    weights = torch.load(os.path.join(directory, "checkpoint.ckpt"), weights_only=True)
    digest = hashlib.sha256()
    for key in sorted(weights):
        digest.update(key.encode())
        digest.update(weights[key].numpy().tobytes())
    with open(os.path.join(directory, "log.tsv"), encoding="utf-8") as f:
        rows = [{k: v for k, v in r.items() if k != "time"}
                for r in csv.DictReader(f, delimiter="\t")]
    files = []
    for root, _dirs, names in os.walk(directory):
        for name in names:
            if name.startswith("_probe-") or root.endswith("plots"):
                continue
            files.append(os.path.relpath(os.path.join(root, name), directory))
    return {"weights": digest.hexdigest(), "rows": rows, "files": sorted(files)}


def matrix(base: str, epochs: int, first: int, last: int | None) -> None:
    import json

    import torch

    torch.set_num_threads(1)
    # One uncounted training first: it loads the data and imports everything a training
    # imports lazily (the optimizer pulls in torch._dynamo: seconds, in every child otherwise).
    warm = ModelBundle.from_network(os.path.join(base, "warm-up"), network(), task="classif")
    warm.train(*loaders(seeded_generator=False), epochs=1, verbose=False)
    reference = os.path.join(base, "reference")
    assert _train_child(reference, epochs, None) == 0
    with open(reference + ".ops", encoding="utf-8") as f:
        total = int(f.readline())
        events = f.read().splitlines()
    print(json.dumps({"reference": _summary(reference), "operations": events}), flush=True)
    stop = total if last is None else min(last, total)
    for n in range(first, stop + 1):
        directory = os.path.join(base, f"kill_{n}")
        import time

        started = time.perf_counter()
        killed = _train_child(directory, epochs, n)
        middle = time.perf_counter()
        resumed = _train_child(directory, epochs, None, plots=False)
        result = {"kill_after": n, "killed": killed, "resumed": resumed,
                  "seconds": [round(middle - started, 3), round(time.perf_counter() - middle, 3)]}
        if resumed == 0:
            result.update(_summary(directory))
        print(json.dumps(result), flush=True)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--matrix":
    matrix(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 1,
           int(sys.argv[5]) if len(sys.argv) > 5 else None)
