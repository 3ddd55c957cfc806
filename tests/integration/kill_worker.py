"""Subprocess worker for the SIGKILL resume tests: trains a bundle, optionally killing itself.

    python -m tests.integration.kill_worker DIRECTORY EPOCHS [KILL]

KILL is one of ``epoch_begin:E`` (between epochs, as epoch E starts), ``step:E:S`` (mid-epoch,
after step S of epoch E), ``write:NAME_PREFIX:N`` (during the N-th atomic write whose name
starts with NAME_PREFIX, after the temporary file is written and before it replaces the old
one: e.g. ``write:state/:3`` or ``write:manifests/:2``).
"""

from __future__ import annotations

import os
import signal
import sys

from epochal import Callback, EarlyStopping, ModelBundle, StepLR
from tests.integration.bundle_helpers import loaders, network


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
                                      optimizer={"optim": "sgd", "lr": 0.1})
    train, valid = loaders(seeded_generator=False)
    bundle.train(train, valid, epochs=epochs, callbacks=callbacks, verbose=False,
                 lr_schedulers=[StepLR(step_size=2, gamma=0.5)])
    print("finished")


if __name__ == "__main__":
    main()
