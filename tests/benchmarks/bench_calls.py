"""Benchmark (not a test): Python calls and tensor operations per training step, counted.

Counts are independent of the machine's load: the number of Python function calls
(``sys.setprofile`` 'call' events, plus 'c_call' events for built-ins and C functions) and of
PyTorch dispatcher operations (``TorchDispatchMode``) per step of one training epoch on the
one-layer network, batch 32, for the seed's hand-written loop and ``Model.fit_generator`` with
the display off and on (on a string buffer, and on a stream that says it is a terminal).
A count per step is the difference between epochs of 2N and N steps, divided by N, so what
happens once per epoch cancels out.

    python tests/benchmarks/bench_calls.py [--steps 200]
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from epochal import Model  # noqa: E402
from tests.seed_networks import train_one_epoch  # noqa: E402

BATCH = 32


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Ops(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.count += 1
        return func(*args, **(kwargs or {}))


def _counted(run: Callable[[], Any]) -> tuple[int, int, int]:
    """(Python calls, C calls, tensor operations) made by ``run()`` (run twice)."""
    counts = {"call": 0, "c_call": 0}

    def tracer(frame: Any, event: str, arg: Any) -> None:
        if event in counts:
            counts[event] += 1

    sys.setprofile(tracer)
    try:
        run()
    finally:
        sys.setprofile(None)
    ops = _Ops()  # counted in a second run: the mode's own Python calls are not counted above
    with ops:
        run()
    return counts["call"], counts["c_call"], ops.count


def contenders(steps: int) -> dict[str, Callable[[], Any]]:
    torch.manual_seed(0)
    n = steps * BATCH
    data = TensorDataset(torch.rand(n, 1, 28, 28), torch.randint(0, 10, (n,)))

    def network() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))

    def loader() -> DataLoader[Any]:
        return DataLoader(data, batch_size=BATCH, shuffle=True,
                          generator=torch.Generator().manual_seed(1))

    def hand() -> Callable[[], Any]:
        net = network()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        batches = loader()
        return lambda: train_one_epoch(net, optimizer, nn.CrossEntropyLoss(), batches)

    def ours(file: Any) -> Callable[[], Any]:
        net = network()
        model = Model(net, torch.optim.SGD(net.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      batch_metrics=["accuracy"])
        batches = loader()
        options = {"file": file} if file is not None else None
        return lambda: model.fit_generator(batches, epochs=1, verbose=file is not None,
                                           progress_options=options)

    return {
        "hand-written": hand(),
        "epochal": ours(None),
        "epochal, display on (string buffer)": ours(io.StringIO()),
        "epochal, display on (terminal)": ours(_Terminal()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    short, long = contenders(args.steps), contenders(2 * args.steps)
    print("| contender | Python calls/step | C calls/step | tensor ops/step |")
    print("|---|---:|---:|---:|")
    for name in short:
        short[name]()  # warm-up
        long[name]()
        a = _counted(short[name])
        b = _counted(long[name])
        per = [(y - x) / args.steps for x, y in zip(a, b)]
        print(f"| {name} | {per[0]:.1f} | {per[1]:.1f} | {per[2]:.1f} |")


if __name__ == "__main__":
    main()
