"""Start N ranks in-process (forked) on gloo and collect what each returns.

Forking is ~3x faster than spawning (no second torch import). Each rank runs
``fn(rank, world_size, *args)`` with torchrun's variables set and the default process group
initialised by :func:`epochal.distributed.start_process_group`; its return value comes back
through a file (``torch.save``), its exception as text.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch._dynamo  # DDP's first use imports it (~3 s): once here, not in every fork
import torch.multiprocessing as mp

RANK_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rank_environment(rank: int, world_size: int, port: int) -> dict[str, str]:
    """What torchrun would set for ``rank`` on one machine."""
    return {
        "RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_RANK": str(rank),
        "LOCAL_WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "OMP_NUM_THREADS": "1",
    }


def torchrun_environment() -> dict[str, str]:
    """``os.environ`` for a ``torchrun`` child: one thread per rank, the restart workaround
    (pytorch#135712: see docs/scaling-out.md), epochal importable, and no rank variables
    inherited from the test run."""
    root = Path(__file__).resolve().parents[2]
    environ = dict(os.environ)
    environ.update(
        OMP_NUM_THREADS="1",
        TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1",
        PYTHONPATH=os.pathsep.join([str(root / "src"), str(root / "adapters"), str(root)]),
    )
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        environ.pop(name, None)
    return environ


def _entry(
    index: int,
    fn: Callable[..., Any],
    world_size: int,
    port: int,
    out_dir: str,
    init: bool,
    args: tuple[Any, ...],
) -> None:
    os.environ.update(rank_environment(index, world_size, port))
    torch.set_num_threads(1)
    path = Path(out_dir) / f"rank{index}.pt"
    try:
        session = None
        if init:
            from epochal.distributed import detect_env, start_process_group

            env = detect_env()
            assert env is not None
            session = start_process_group(env, backend="gloo", timeout_s=RANK_TIMEOUT_S)
        try:
            result = fn(index, world_size, *args)
        finally:
            if session is not None:
                session.close()
        torch.save({"ok": True, "value": result}, path)
    except BaseException as exc:  # report every failure to the parent
        torch.save(
            {"ok": False, "type": type(exc).__name__, "text": traceback.format_exc()}, path
        )


def run_ranks(
    fn: Callable[..., Any],
    *args: Any,
    world_size: int = 2,
    init: bool = True,
    timeout_s: float = RANK_TIMEOUT_S,
) -> list[dict[str, Any]]:
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` forked ranks.

    Returns:
        One dict per rank: ``{"ok": True, "value": ...}`` or ``{"ok": False, "type": ...,
        "text": traceback}``.

    Raises:
        TimeoutError: Some rank was still running after ``timeout_s`` (the ranks are killed):
            a hang.
    """
    port = free_port()
    with tempfile.TemporaryDirectory() as out_dir:
        context = mp.start_processes(
            _entry,
            args=(fn, world_size, port, out_dir, init, args),
            nprocs=world_size,
            join=False,
            start_method="fork",
        )
        deadline = time.monotonic() + timeout_s
        try:
            while not context.join(timeout=max(0.1, deadline - time.monotonic())):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"ranks still running after {timeout_s} s (a hang)")
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
                    process.join()
        results = []
        for rank in range(world_size):
            path = Path(out_dir) / f"rank{rank}.pt"
            results.append(torch.load(path, weights_only=False))
        return results


def values(results: list[dict[str, Any]]) -> list[Any]:
    """Each rank's return value; fails with the ranks' tracebacks when one raised."""
    failed = [r["text"] for r in results if not r["ok"]]
    assert not failed, "\n".join(failed)
    return [r["value"] for r in results]
