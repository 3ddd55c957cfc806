"""A worker run under `torchrun --max-restarts` by tests/ddp/test_elastic.py: trains a bundle
on every rank; on the first attempt one rank may SIGKILL itself.

    python -m torch.distributed.run ... torchrun_bundle_worker.py DIRECTORY OUT KILL

KILL is ``none`` or a comma-separated list of kills, the i-th one applied in attempt i
(``TORCHELASTIC_RESTART_COUNT == i``), so one launch tests several: ``step:RANK:N`` (rank RANK
dies after its N-th training step of that attempt) or ``write:PREFIX:N`` (rank 0 dies during
its N-th atomic write of that attempt whose name starts with PREFIX, after the temporary file
is written and before it replaces the old one).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from epochal import Callback, ModelBundle
from epochal.distributed import detect_env

EPOCHS = 4


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _KillAtStep(Callback):
    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at
        self.count = 0

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        self.count += 1
        if self.count == self.at:
            _die()


def _kill_during_write(prefix: str, nth: int) -> None:
    real_replace = os.replace
    count = {"n": 0}

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        name = str(dst).replace(os.sep, "/")
        if f"/{prefix}" in name or name.startswith(prefix):
            count["n"] += 1
            if count["n"] == nth:
                _die()
        real_replace(src, dst, *args, **kwargs)

    os.replace = replace  # type: ignore[assignment]


def loaders() -> tuple[DataLoader[Any], DataLoader[Any]]:
    """The data of every run (the same as tests/ddp/test_bundle_ddp.py's)."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(96, 6, generator=generator)
    y = torch.randint(0, 3, (96,), generator=generator)
    train = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=4, shuffle=True)
    valid = DataLoader(TensorDataset(x[64:], y[64:]), batch_size=8)
    return train, valid


def main(directory: str, out: str, kill: str) -> None:
    env = detect_env()
    assert env is not None, "not started by torchrun"
    torch.set_num_threads(1)
    callbacks: list[Any] = []
    kills = [] if kill == "none" else kill.split(",")
    if env.restart_count < len(kills):
        kind, who, count = kills[env.restart_count].split(":")
        if kind == "step" and env.rank == int(who):
            callbacks.append(_KillAtStep(int(count)))
        elif kind == "write" and env.rank == 0:
            _kill_during_write(who, int(count))
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    bundle = ModelBundle.from_network(directory, network, task="classif")
    train, valid = loaders()
    rows = bundle.train(train, valid, epochs=EPOCHS, verbose=False, callbacks=callbacks)
    rows = bundle._stats_rows()  # every committed epoch (train returns this call's)
    torch.save(
        {"weights": bundle.model.get_weight_copies(), "rows": rows,
         "restarts": env.restart_count},
        f"{out}.{env.rank}",
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
