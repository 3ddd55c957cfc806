"""Reading torchrun's environment: which rank this process is, among how many.

``torchrun`` (``torch.distributed.run``) starts each worker with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` and
``TORCHELASTIC_RESTART_COUNT`` set (torch's ``torch/distributed/run.py`` documentation). A
plain ``python train.py`` has none of them: :func:`detect_env` then returns None and nothing
distributed happens.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import attrs

from epochal.exceptions import DistributedError

__all__ = ["DistributedEnv", "detect_env"]

_REQUIRED = ("RANK", "WORLD_SIZE")


@attrs.frozen(kw_only=True)
class DistributedEnv:
    """Where this process sits in a distributed job.

    Attributes:
        rank: Global rank, ``0 <= rank < world_size``.
        world_size: Number of processes in the job (all nodes).
        local_rank: Rank on this machine; selects the GPU ``cuda:local_rank``.
        local_world_size: Processes on this machine.
        master_addr: Rendezvous host of the default ``env://`` init, or None.
        master_port: Rendezvous port, or None.
        restart_count: How many times torchrun's elastic agent restarted the workers (0 on
            the first attempt).
    """

    rank: int
    world_size: int
    local_rank: int = 0
    local_world_size: int = 1
    master_addr: str | None = None
    master_port: int | None = None
    restart_count: int = 0

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes checkpoints, logs, plots and progress."""
        return self.rank == 0


def _int(environ: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        if default is None:
            raise DistributedError(f"The environment variable {name} is missing.")
        return default
    try:
        return int(raw)
    except ValueError:
        raise DistributedError(
            f"The environment variable {name}={raw!r} is not an integer. torchrun sets it; "
            "when launching ranks by hand, set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and "
            "MASTER_PORT to integers (addresses aside)."
        ) from None


def detect_env(environ: Mapping[str, str] | None = None) -> DistributedEnv | None:
    """The torchrun environment of this process, or None when it runs alone.

    Args:
        environ: Variables to read; ``os.environ`` when None.

    Returns:
        A :class:`DistributedEnv` when ``RANK`` and ``WORLD_SIZE`` are both set, else None
        (``python train.py``). A ``WORLD_SIZE`` of 1 still returns an environment: the
        script was launched by torchrun and may be restarted by it.

    Raises:
        DistributedError: Only one of ``RANK``/``WORLD_SIZE`` is set, a value is not an
            integer, or the values are inconsistent (``rank`` outside ``[0, world_size)``,
            ``local_rank`` outside ``[0, local_world_size)``); the message names the variable.
    """
    env = os.environ if environ is None else environ
    present = [name for name in _REQUIRED if env.get(name, "") != ""]
    if not present:
        return None
    if len(present) != len(_REQUIRED):
        missing = [name for name in _REQUIRED if name not in present]
        raise DistributedError(
            f"{', '.join(present)} is set but {', '.join(missing)} is not. Launch with "
            "torchrun (which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), or "
            "unset RANK and WORLD_SIZE to run as one process."
        )
    rank = _int(env, "RANK")
    world_size = _int(env, "WORLD_SIZE")
    if world_size < 1 or not 0 <= rank < world_size:
        raise DistributedError(
            f"RANK={rank} and WORLD_SIZE={world_size}: expected WORLD_SIZE >= 1 and "
            "0 <= RANK < WORLD_SIZE. Check the launcher's settings."
        )
    local_rank = _int(env, "LOCAL_RANK", 0)
    local_world_size = _int(env, "LOCAL_WORLD_SIZE", max(local_rank + 1, 1))
    if not 0 <= local_rank < local_world_size:
        raise DistributedError(
            f"LOCAL_RANK={local_rank} and LOCAL_WORLD_SIZE={local_world_size}: expected "
            "0 <= LOCAL_RANK < LOCAL_WORLD_SIZE."
        )
    port_raw = env.get("MASTER_PORT")
    return DistributedEnv(
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        local_world_size=local_world_size,
        master_addr=env.get("MASTER_ADDR") or None,
        master_port=_int(env, "MASTER_PORT") if port_raw else None,
        restart_count=_int(env, "TORCHELASTIC_RESTART_COUNT", 0),
    )
