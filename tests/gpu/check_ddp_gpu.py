#!/usr/bin/env python3
"""Device check of epochal's data parallelism on a one-GPU machine (not in CI).

Run from the repository root with the machine's own interpreter; nothing else is needed (no
nox, no network, no install); it takes well under 4 minutes::

    python3 tests/gpu/check_ddp_gpu.py                 # every check, one table
    python3 tests/gpu/check_ddp_gpu.py --wheels .whl   # pure-Python packages carried as wheels

Wheels and ``sys.path`` are handled as in ``tests/gpu/check_gpu.py`` (same ``--wheels``).
Ranks are started by PyTorch's own launcher, ``python3 -m torch.distributed.run`` (torchrun),
as users start them. NCCL allows one rank per GPU, so the NCCL checks run one rank
(``--standalone --nproc-per-node 1``) with ``Model(strategy='ddp')``: the whole distributed
path (process group, DDP wrapper, sharded loader, stop flag, reductions, rank-0 commits) on
one rank.

Checks:

1. ``resume`` (nccl; gloo on the CPU without CUDA): the backend is chosen automatically; a
   ``ModelBundle`` run of 3 epochs gets SIGTERM in the middle of epoch 2, commits mid-epoch
   and exits with the resume hint; the relaunch finishes; weights and epoch rows equal an
   uninterrupted run bit for bit (dropout draws on the device's RNG).
2. ``sync`` (CUDA only): the training steps of ``Model(strategy='ddp')`` run under
   ``torch.cuda.set_sync_debug_mode('error')`` (the per-step stop flag waits on a CPU gloo
   group, never on the GPU), and the syncs of whole epochs, counted in ``'warn'`` mode, are
   the same for 20 and 60 steps, and the same as one process without DDP.
3. ``step time`` (nccl; gloo on the CPU): per-step time of ``Model.fit_generator`` on one
   DDP rank against a hand-written one-rank DDP loop (the same sharded loader on the device,
   the loss summed on the device and read once per epoch), medians of interleaved rounds;
   prints the ratio (INFO; the target is at most 1.05).
4. ``equality`` (gloo, 2 ranks): 2 ranks of batch 4 equal one process of batch 8 within
   1e-6 (weights and epoch rows, 1,001 validation examples). epochal places gloo ranks on the
   CPU (NCCL is its CUDA backend), so this check's tensors are CPU tensors on any machine.

Exit status: 0 when no check failed (skipped and INFO rows are not failures), 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_gpu import ROOT, Row, _setup_path, _table  # wheels, sys.path, the table

EPOCHS = 3
SIGTERM_EPOCH, SIGTERM_STEP = 2, 10  # of 25 steps per epoch
ERROR_MODE_STEPS = 30
MAX_EPOCH_SYNCS = 16  # syncs allowed per epoch, independent of its length (as check_gpu.py)
LAUNCH_TIMEOUT_S = 150


class _Skip(Exception):
    pass


# ----------------------------------------------------------------------------- launching


def _torchrun(nproc: int, mode: str, out: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run this script's worker ``mode`` under torchrun on ``nproc`` local ranks."""
    environ = dict(os.environ, CUBLAS_WORKSPACE_CONFIG=":4096:8", PYTHONUNBUFFERED="1",
                   OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                 "MASTER_PORT", "TORCHELASTIC_RESTART_COUNT"):
        environ.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(nproc), __file__, "--worker", mode, "--out", out, *extra]
    done = subprocess.run(command, env=environ, capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT_S, check=False)
    if done.returncode != 0:
        # The worker's own exception line, not torchrun's ChildFailedError summary.
        lines = [line for line in (done.stderr + done.stdout).splitlines()
                 if re.match(r"^[\w.]*(Error|Exception|Interrupt)\b", line)
                 and "ChildFailedError" not in line]
        tail = lines[-1] if lines else f"exit status {done.returncode}"
        raise RuntimeError(f"torchrun ({mode}) failed: {tail[:200]}")
    return done


def _digits(n: int) -> tuple[Any, Any]:
    """``n`` random 28x28 images and labels (a fixed seed): the data of every check."""
    import torch

    generator = torch.Generator().manual_seed(0)
    return (torch.rand(n, 1, 28, 28, generator=generator),
            torch.randint(0, 10, (n,), generator=generator))


# ----------------------------------------------------------------------------- workers


def _resume_worker(args: argparse.Namespace) -> None:
    """One launch of check 1: train a bundle to epoch 3, or until the SIGTERM it sends."""
    import torch
    from tests.seed_networks import convolutional_network
    from torch.utils.data import DataLoader, TensorDataset

    from epochal import Callback, Model, ModelBundle

    warnings.filterwarnings("ignore", "Converting a tensor with requires_grad")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    x, y = _digits(2000)
    train = DataLoader(TensorDataset(x[:1600], y[:1600]), batch_size=64, shuffle=True)
    valid = DataLoader(TensorDataset(x[1600:], y[1600:]), batch_size=200)
    torch.manual_seed(0)
    model = Model(convolutional_network(), "adam", "cross_entropy", batch_metrics=["accuracy"],
                  strategy="ddp")
    bundle = ModelBundle(args.directory, model)

    class Terminate(Callback):
        def on_epoch_begin(self, epoch_number: int, logs: dict[str, Any]) -> None:
            self.epoch = epoch_number

        def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
            if self.epoch == SIGTERM_EPOCH and batch_number == SIGTERM_STEP:
                os.kill(os.getpid(), signal.SIGTERM)

    callbacks = [Terminate()] if args.sigterm else []
    message = None
    try:
        bundle.train(train, valid, epochs=EPOCHS, callbacks=callbacks, verbose=False)
    except SystemExit as stop:  # the preemption's exit, recorded for the parent
        message = str(stop.code)
    assert model._parallel is not None
    torch.save({
        "backend": model._parallel.session.backend,
        "device": str(model._parallel.session.device),
        "message": message,
        "weights": model.get_weight_copies(),
        "rows": bundle._stats_rows(),
    }, f"{args.out}.{model._parallel.rank}")


def _perf_worker(args: argparse.Namespace) -> None:
    """Checks 2 and 3 on one rank: host syncs of the training steps, then step times."""
    import torch

    from epochal.distributed import detect_env, start_process_group

    env = detect_env()
    assert env is not None, "not started by torchrun"
    start_process_group(env)  # nccl on CUDA, gloo without; the Models below adopt it
    result: dict[str, Any] = {}
    if torch.cuda.is_available():
        try:
            result["sync"] = _sync_counts()
        except Exception as exc:  # reported as the check's failure
            result["sync_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    result["times"] = _step_times(args.steps, args.rounds)
    result["backend"] = _backend()
    torch.save(result, f"{args.out}.0")


def _backend() -> str:
    import torch.distributed as dist

    return str(dist.get_backend()) if dist.is_initialized() else "none"


def _loader(n_steps: int, batch_size: int, device: Any) -> Any:
    from torch.utils.data import TensorDataset

    from epochal_adapters.data.fast_loader import TensorBatchLoader

    x, y = _digits(n_steps * batch_size)
    return TensorBatchLoader(TensorDataset(x, y), batch_size, shuffle=True, device=device)


def _sync_counts() -> dict[str, Any]:
    """Syncs per epoch of 20 and 60 steps (DDP rank and one process), and a 30-step pass
    under the 'error' mode."""
    import torch
    from tests.seed_networks import convolutional_network

    from epochal import Model
    from epochal.core.records import PassPhase, PhaseBegin, StepRecord

    device = torch.device("cuda", torch.cuda.current_device())
    counts: dict[str, Any] = {}
    for strategy in ("ddp", None):
        torch.manual_seed(0)
        model = Model(convolutional_network(), "adam", "cross_entropy",
                      batch_metrics=["accuracy"], device=None if strategy else device,
                      strategy=strategy)
        model.fit_generator(_loader(5, 64, device), epochs=1, verbose=False)  # warm-up
        for n in (20, 60):
            loader = _loader(n, 64, device)
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    model.fit_generator(loader, epochs=1, verbose=False)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            syncs = [w for w in caught if "synchroniz" in str(w.message)]
            counts[f"{strategy or 'one'}:{n}"] = len(syncs)
            counts[f"{strategy or 'one'}:{n}:at"] = sorted(
                {f"{os.path.basename(w.filename)}:{w.lineno}" for w in syncs})[:4]
        if strategy == "ddp":
            steps = ERROR_MODE_STEPS

            def on_phase(record: Any) -> None:
                if record.phase is PassPhase.TRAIN:
                    torch.cuda.set_sync_debug_mode("error")

            def on_step(record: Any) -> None:
                if record.phase is PassPhase.TRAIN and record.step == ERROR_MODE_STEPS:
                    torch.cuda.set_sync_debug_mode("default")

            subscriptions = [model.bus.subscribe(PhaseBegin, on_phase),
                             model.bus.subscribe(StepRecord, on_step)]
            try:
                torch.cuda.synchronize()
                model.fit_generator(_loader(steps, 64, device), epochs=1, verbose=False)
                counts["error_mode"] = "ok"
            except RuntimeError as exc:
                frames = [f for f in traceback.extract_tb(exc.__traceback__)
                          if "epochal" in f.filename or "torch" in f.filename]
                at = (f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}"
                      if frames else "?")
                counts["error_mode"] = f"sync at {at}: {str(exc).splitlines()[0][:80]}"
            finally:
                torch.cuda.set_sync_debug_mode("default")
                for subscription in subscriptions:
                    subscription.cancel()
    return counts


def _step_times(steps: int, rounds: int) -> dict[str, dict[str, float]]:
    """Median per-step seconds of epochal (one DDP rank) and a hand-written DDP loop, per
    network, over interleaved rounds after one warm-up round."""
    import torch
    from tests.seed_networks import convolutional_network, fully_connected_network

    cuda = torch.cuda.is_available()
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    loader = _loader(steps, 64, device)
    times: dict[str, dict[str, float]] = {}
    for name, make in (("fc", fully_connected_network), ("conv", convolutional_network)):
        times[name] = _time_network(make, loader, device, steps, rounds)
    return times


def _time_network(make: Callable[[], Any], loader: Any, device: Any, steps: int,
                  rounds: int) -> dict[str, float]:
    """Median per-step seconds of both loops on one network (see :func:`_step_times`)."""
    import torch
    from torch import nn

    from epochal import Model
    from epochal.distributed import shard_loader, wrap_network

    cuda = device.type == "cuda"
    torch.manual_seed(0)
    hand_net = wrap_network(make(), device)
    hand_opt = torch.optim.Adam(hand_net.parameters(), lr=1e-3)
    loss_function = nn.CrossEntropyLoss()
    shard = shard_loader(loader, rank=0, world_size=1, seed=0, training=True)
    torch.manual_seed(0)
    model = Model(make(), "adam", "cross_entropy", strategy="ddp")

    def hand_epoch(epoch: int) -> None:
        shard.set_epoch(epoch)
        hand_net.train()
        total = torch.zeros((), dtype=torch.float64, device=device)
        for x, y in shard:
            hand_opt.zero_grad()
            loss = loss_function(hand_net(x), y)
            loss.backward()
            hand_opt.step()
            total += loss.detach() * len(x)
        float(total)  # read once per epoch, as epochal does

    def ours_epoch(epoch: int) -> None:
        model.fit_generator(loader, epochs=1, verbose=False)

    measured: dict[str, list[float]] = {"hand": [], "epochal": []}
    for round_ in range(rounds + 1):  # round 0 warms up (cuDNN choices, allocator)
        order = [("hand", hand_epoch), ("epochal", ours_epoch)]
        if round_ % 2:
            order.reverse()
        for label, run in order:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            run(round_ + 1)
            if cuda:
                torch.cuda.synchronize()
            if round_:
                measured[label].append((time.perf_counter() - start) / steps)
    return {label: statistics.median(v) for label, v in measured.items()}


def _equal_worker(args: argparse.Namespace) -> None:
    """Check 4 on each of 2 ranks: the application starts a gloo group, Model adopts it."""
    import torch

    from epochal.distributed import detect_env, start_process_group

    env = detect_env()
    assert env is not None, "not started by torchrun"
    torch.set_num_threads(1)
    start_process_group(env, backend="gloo")
    model, history = _equal_fit(4, strategy="ddp")
    torch.save({"weights": model.get_weight_copies(), "rows": history},
               f"{args.out}.{env.rank}")


def _equal_fit(batch_size: int, strategy: str | None = None) -> tuple[Any, list[dict[str, Any]]]:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from epochal import Model

    generator = torch.Generator().manual_seed(1)
    x = torch.randn(64 + 1001, 6, generator=generator)
    y = torch.randint(0, 3, (64 + 1001,), generator=generator)
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    model = Model(network, "sgd", "cross_entropy", batch_metrics=["accuracy"],
                  epoch_metrics=["f1"], strategy=strategy, device="cpu")
    train = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=batch_size)
    valid = DataLoader(TensorDataset(x[64:], y[64:]), batch_size=50)
    history = model.fit_generator(train, valid, epochs=3, verbose=False)
    return model, history


# ----------------------------------------------------------------------------- checks


def _without_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "time"} for row in rows]


def check_resume(cuda: bool) -> Row:
    """Check 1: SIGTERM mid-epoch 2, relaunch, bit-identical to an uninterrupted run."""
    import torch

    setting = "nccl, 1 rank" if cuda else "gloo, 1 rank (cpu)"
    with tempfile.TemporaryDirectory() as tmp:
        whole, cut = os.path.join(tmp, "whole"), os.path.join(tmp, "cut")
        _torchrun(1, "resume", os.path.join(tmp, "whole.pt"), "--directory", whole)
        _torchrun(1, "resume", os.path.join(tmp, "cut.pt"), "--directory", cut, "--sigterm")
        _torchrun(1, "resume", os.path.join(tmp, "resumed.pt"), "--directory", cut)
        full = torch.load(os.path.join(tmp, "whole.pt.0"), weights_only=False)
        stopped = torch.load(os.path.join(tmp, "cut.pt.0"), weights_only=False)
        resumed = torch.load(os.path.join(tmp, "resumed.pt.0"), weights_only=False)
    expected_backend = "nccl" if cuda else "gloo"
    if full["backend"] != expected_backend:
        return ("1 resume", setting, "FAIL", f"backend {full['backend']}",
                f"expected {expected_backend} chosen automatically")
    message = stopped["message"] or ""
    # The stop flag is read one step later, also on one rank.
    hint = f"at epoch {SIGTERM_EPOCH}, step {SIGTERM_STEP + 1};"
    if hint not in message:
        return ("1 resume", setting, "FAIL", "no mid-epoch stop",
                f"expected a message with '{hint}'; got {message[:80]!r}")
    differ = [k for k in full["weights"] if not torch.equal(full["weights"][k],
                                                            resumed["weights"][k])]
    same_rows = _without_time(full["rows"]) == _without_time(resumed["rows"])
    if differ or not same_rows:
        return ("1 resume", setting, "FAIL", f"{len(differ)} tensors differ",
                f"rows equal: {same_rows}; SIGTERM at epoch {SIGTERM_EPOCH} step "
                f"{SIGTERM_STEP}, relaunched to epoch {EPOCHS}")
    return ("1 resume", setting, "PASS", "bit-identical",
            f"{len(full['weights'])} tensors and {len(full['rows'])} rows on "
            f"{full['device']}; SIGTERM at epoch {SIGTERM_EPOCH} step {SIGTERM_STEP}, "
            "mid-epoch commit, relaunch")


def check_perf(cuda: bool, steps: int, rounds: int) -> list[Row]:
    """Checks 2 and 3 from one torchrun launch."""
    import torch

    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        _torchrun(1, "perf", os.path.join(tmp, "perf.pt"), "--steps", str(steps),
                  "--rounds", str(rounds))
        result = torch.load(os.path.join(tmp, "perf.pt.0"), weights_only=False)
    backend = result["backend"]
    if not cuda:
        rows.append(("2 sync", "nccl", "SKIP", "-",
                     "no CUDA device (torch.cuda.is_available() is False): CUDA-only check"))
    elif "sync_error" in result:
        rows.append(("2 sync", backend, "FAIL", "error", result["sync_error"]))
    else:
        counts = result["sync"]
        bounded = counts["ddp:20"] == counts["ddp:60"] <= MAX_EPOCH_SYNCS
        no_more = counts["ddp:60"] <= counts["one:60"]
        rows.append((
            "2 sync (count)", backend, "PASS" if bounded and no_more else "FAIL",
            f"{counts['ddp:20']} / {counts['ddp:60']} syncs",
            f"DDP epochs of 20 / 60 steps (one process: {counts['one:20']} / "
            f"{counts['one:60']}), limit {MAX_EPOCH_SYNCS}; at "
            f"{', '.join(counts['ddp:60:at']) or 'none'}",
        ))
        ok = counts["error_mode"] == "ok"
        rows.append(("2 sync (error mode)", backend, "PASS" if ok else "FAIL", "30 steps",
                     "no sync between the pass's start and its last step" if ok
                     else counts["error_mode"]))
    for name, measured in result["times"].items():
        ours, hand = measured["epochal"], measured["hand"]
        rows.append((
            f"3 step time {name}", backend, "INFO", f"{ours * 1e3:.3f} vs {hand * 1e3:.3f} ms",
            f"ratio {ours / hand:.3f} (epochal / hand-written DDP, 1 rank, target <= 1.05), "
            f"median of {rounds} interleaved rounds x {steps} steps, batch 64",
        ))
    return rows


def check_equality() -> Row:
    """Check 4: 2 gloo ranks of batch 4 == 1 process of batch 8 within 1e-6."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        _torchrun(2, "equal", os.path.join(tmp, "equal.pt"))
        ranks = [torch.load(os.path.join(tmp, f"equal.pt.{r}"), weights_only=False)
                 for r in range(2)]
    model, history = _equal_fit(8)
    expected = model.get_weight_copies()
    worst = 0.0
    for rank in ranks:
        for key, value in expected.items():
            worst = max(worst, float((rank["weights"][key] - value).abs().max()))
        for row, want in zip(rank["rows"], history):
            for key in want:
                if key != "time":
                    worst = max(worst, abs(float(row[key]) - float(want[key])))
    rows_ok = all(len(rank["rows"]) == len(history) for rank in ranks)
    status = "PASS" if worst <= 1e-6 and rows_ok else "FAIL"
    return ("4 equality", "gloo, 2 ranks (cpu)", status, f"max |diff| {worst:.2g}",
            "2 ranks x batch 4 vs 1 process x batch 8, 3 epochs, 1,001 validation examples; "
            "gloo ranks run on the CPU (epochal's CUDA backend is nccl)")


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", default=None, help="folder of pure-Python .whl files")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--directory", help=argparse.SUPPRESS)
    parser.add_argument("--sigterm", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=0,
                        help="timed steps per round (default 100 on CUDA, 30 on the CPU)")
    parser.add_argument("--rounds", type=int, default=0,
                        help="timed rounds (default 7 on CUDA, 3 on the CPU)")
    args = parser.parse_args()
    wheels = _setup_path(args.wheels)
    workers: dict[str, Callable[[argparse.Namespace], None]] = {
        "resume": _resume_worker, "perf": _perf_worker, "equal": _equal_worker,
    }
    if args.worker is not None:
        workers[args.worker](args)
        return 0

    import torch

    started = time.perf_counter()
    rows: list[Row] = []
    cuda = torch.cuda.is_available()
    if cuda:
        what = (f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}, "
                f"torch {torch.__version__}")
    else:
        what = f"CPU only, torch {torch.__version__}"
    print(f"epochal DDP device check: {what}, Python {sys.version.split()[0]}; "
          f"wheels: {', '.join(wheels) or 'none'}; repository {ROOT}", flush=True)
    if not cuda:
        print("NO CUDA DEVICE: torch.cuda.is_available() is False on this machine. Check 2 "
              "needs CUDA and is skipped; checks 1 and 3 run with gloo on the CPU instead of "
              "nccl, check 4 as everywhere. Nothing here proves the NCCL path.", flush=True)

    def attempt(name: str, setting: str, check: Callable[[], Any]) -> None:
        try:
            result = check()
            rows.extend(result if isinstance(result, list) else [result])
        except _Skip as skip:
            rows.append((name, setting, "SKIP", "-", str(skip)))
        except Exception as exc:
            rows.append((name, setting, "FAIL", type(exc).__name__,
                         str(exc).splitlines()[0][:140] if str(exc) else ""))
        print(f"  ... {name} done at {time.perf_counter() - started:.0f} s", flush=True)

    backend = "nccl" if cuda else "gloo"
    steps = args.steps or (100 if cuda else 30)
    rounds = args.rounds or (7 if cuda else 3)
    attempt("1 resume", backend, lambda: check_resume(cuda))
    attempt("2-3 sync, step time", backend, lambda: check_perf(cuda, steps, rounds))
    attempt("4 equality", "gloo", check_equality)

    print()
    print(_table(rows))
    failed = [r for r in rows if r[2] == "FAIL"]
    print(f"\n{len(rows)} rows, {len(failed)} failed, "
          f"{sum(r[2] == 'SKIP' for r in rows)} skipped, {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
