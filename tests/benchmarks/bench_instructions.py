"""Benchmark (not a test): instructions per training step, counted by valgrind's callgrind.

Wall and CPU times on a shared machine move by tens of microseconds per step from run to run
(see ``docs/performance.md``); the number of instructions a step executes does not. For each
contender (the seed's hand-written loop, ``Model.fit_generator`` with the display off and on)
and each network, a child process runs under ``valgrind --tool=callgrind
--instr-atstart=no``: it builds the data and the network, trains one warm-up epoch without
instrumentation, then counts the instructions of one epoch of N steps (instrumentation is
switched on and off around it by callgrind's client requests, through a 3-line C library
compiled here). Two epoch lengths (N and 2N) are counted; their difference divided by N is
the cost of one step, without what an epoch costs once (``fit_generator``'s setup, the
loader's start). Children run two at a time: counts do not depend on the load.

The conversion to microseconds uses the hand-written loop's own rate on this machine (its
wall time per step, measured here without valgrind, over its instructions per step): an
estimate, since epochal's extra instructions are interpreter code, not the network's kernels.

Needs ``valgrind`` (with ``valgrind/callgrind.h``) and a C compiler.

    PYTHONPATH=src:adapters:. python tests/benchmarks/bench_instructions.py [--steps 100]
        [--networks one-layer,FC]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

_LIBRARY = """#include <valgrind/callgrind.h>
void measure_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void measure_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT("measured"); }
"""

CONTENDERS = ("hand-written", "epochal", "epochal, display on")
NETWORKS = ("one-layer", "FC")


def _epoch_runner(contender: str, network_name: str, steps: int) -> Any:
    """A function that trains one epoch of ``steps`` steps (the side-by-side benchmark's
    data, network, loader and loop)."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from epochal import Model
    from tests.benchmarks.bench_side_by_side import BATCH, LR
    from tests.benchmarks.bench_side_by_side import NETWORKS as MAKERS
    from tests.seed_networks import train_one_epoch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    n = steps * BATCH
    data = TensorDataset(torch.rand(n, 1, 28, 28), torch.randint(0, 10, (n,)))
    network = MAKERS[network_name]()

    def loader() -> DataLoader[Any]:
        return DataLoader(data, batch_size=BATCH, shuffle=True,
                          generator=torch.Generator().manual_seed(1))

    if contender == "hand-written":
        optimizer = torch.optim.SGD(network.parameters(), lr=LR)
        return lambda: train_one_epoch(network, optimizer, nn.CrossEntropyLoss(), loader())
    model = Model(network, torch.optim.SGD(network.parameters(), lr=LR),
                  nn.CrossEntropyLoss(), batch_metrics=["accuracy"])
    verbose = contender.endswith("display on")
    options = {"file": io.StringIO()} if verbose else None
    return lambda: model.fit_generator(loader(), epochs=1, verbose=verbose,
                                       progress_options=options)


def _child(library: str, contender: str, network_name: str, steps: int) -> None:
    import ctypes

    warnings.filterwarnings("ignore")
    measure = ctypes.CDLL(library)
    run = _epoch_runner(contender, network_name, steps)
    run()  # warm-up, not counted
    measure.measure_start()
    run()
    measure.measure_stop()


def _count(library: str, out_dir: str, contender: str, network_name: str, steps: int) -> int:
    tag = re.sub(r"\W+", "_", f"{network_name}_{contender}_{steps}")
    out = Path(out_dir) / f"callgrind.{tag}"
    environ = {**os.environ, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "adapters"),
                                              str(ROOT)])}
    subprocess.run(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
         sys.executable, __file__, "--child", library, contender, network_name, str(steps)],
        env=environ, capture_output=True, text=True, check=True, timeout=1800,
    )
    dumps = [p for p in Path(out_dir).glob(f"callgrind.{tag}*") if p.name != out.name]
    for dump in dumps:  # the dump taken at measure_stop
        match = re.search(r"^totals: (\d+)", dump.read_text(), re.MULTILINE)
        if match and int(match.group(1)) > 0:
            return int(match.group(1))
    raise RuntimeError(f"no counted dump for {tag} in {out_dir}")


def _wall_per_step(network_name: str, steps: int, rounds: int = 5) -> float:
    """The hand-written loop's median wall seconds per step, without valgrind."""
    run = _epoch_runner("hand-written", network_name, steps)
    run()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="N: epochs of N and 2N steps")
    parser.add_argument("--networks", default="one-layer",
                        help="comma-separated, among one-layer,FC (FC takes about 6 minutes "
                        "per count under callgrind on a 2-core machine)")
    parser.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
    if args.child:
        library, contender, network_name, steps = args.child
        _child(library, contender, network_name, int(steps))
        return
    for tool in ("valgrind", "cc"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed; this benchmark needs valgrind and a C "
                         "compiler (Debian: apt-get install valgrind gcc)")
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "measure.c"
        source.write_text(_LIBRARY)
        library = str(Path(work) / "libmeasure.so")
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", library, str(source)],
                       check=True)
        networks = [n.strip() for n in args.networks.split(",") if n.strip()]
        if set(networks) - set(NETWORKS):
            parser.error(f"unknown networks {sorted(set(networks) - set(NETWORKS))}; choose "
                         f"among {', '.join(NETWORKS)}")
        jobs = [(c, n, s) for n in networks for c in CONTENDERS
                for s in (args.steps, 2 * args.steps)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            counts = dict(zip(jobs, pool.map(lambda job: _count(library, work, *job), jobs)))
    sys.path[:0] = [str(ROOT / "src"), str(ROOT / "adapters"), str(ROOT)]
    print(f"Instructions per training step (callgrind; epochs of {args.steps} and "
          f"{2 * args.steps} steps, batch 32)\n")
    print("| network | contender | instructions per step | over hand-written | "
          "once per epoch | estimated µs over hand-written |")
    print("|---|---|---:|---:|---:|---:|")
    for network_name in networks:
        per_step = {c: (counts[(c, network_name, 2 * args.steps)]
                        - counts[(c, network_name, args.steps)]) / args.steps
                    for c in CONTENDERS}
        hand = per_step["hand-written"]
        seconds_per_instruction = _wall_per_step(network_name, 4 * args.steps) / hand
        for contender in CONTENDERS:
            once = counts[(contender, network_name, args.steps)] - args.steps * per_step[contender]
            extra = per_step[contender] - hand
            print(f"| {network_name} | {contender} | {per_step[contender]:,.0f} | "
                  f"{extra:+,.0f} | {once:,.0f} | {extra * seconds_per_instruction * 1e6:+.1f} |")
        print(f"\n{network_name}: hand-written step {hand:,.0f} instructions, "
              f"{seconds_per_instruction * 1e9:.3f} ns per instruction on this machine.\n")


if __name__ == "__main__":
    main()
