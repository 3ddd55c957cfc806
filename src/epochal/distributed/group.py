"""The process group, each rank's device, and DistributedDataParallel wrapping.

A driver calls, once per run::

    env = detect_env()
    if env is not None:
        session = start_process_group(env)          # or reuses the application's group
        network = wrap_network(network, session.device)
    ...
    state = plain_state_dict(network)                # what checkpoints hold, on every rank

Backends: ``nccl`` when CUDA is available, else ``gloo`` (PyTorch's recommendation in
``torch.distributed``'s documentation).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from typing import Any

import attrs
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from epochal.distributed.consensus import StopFlagCarrier
from epochal.distributed.env import DistributedEnv
from epochal.exceptions import ConfigurationError, DistributedError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DistributedSession",
    "agree_seed",
    "broadcast_object",
    "check_world_size",
    "default_backend",
    "device_for",
    "plain_state_dict",
    "restart_caveat",
    "start_process_group",
    "unwrap_network",
    "wrap_network",
]

DEFAULT_TIMEOUT_S = 300.0
"""Collective and rendezvous timeout: a rank that waits longer raises instead of hanging."""

_SHARE_STORE_VAR = "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"


@attrs.frozen(kw_only=True)
class DistributedSession:
    """A started (or adopted) process group and this rank's place in it.

    Attributes:
        env: The torchrun environment.
        backend: ``'nccl'`` or ``'gloo'`` (the group's actual backend).
        device: Where this rank's network and batches live (``cuda:LOCAL_RANK`` or cpu).
        owns_group: True when :func:`start_process_group` created the group (and
            :meth:`close` destroys it); False when the application had initialised it.
    """

    env: DistributedEnv
    backend: str
    device: torch.device
    owns_group: bool

    @property
    def rank(self) -> int:
        """Global rank."""
        return self.env.rank

    @property
    def world_size(self) -> int:
        """Number of ranks."""
        return self.env.world_size

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the only writer)."""
        return self.env.rank == 0

    def close(self) -> None:
        """Destroy the process group if this session created it (else leave it alone)."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def default_backend() -> str:
    """``'nccl'`` when CUDA is available, else ``'gloo'``."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def device_for(env: DistributedEnv, backend: str | None = None) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` with CUDA (and not a gloo-only group), else
    the CPU.

    Raises:
        DistributedError: ``LOCAL_RANK`` names a GPU this machine does not have.
    """
    if backend == "gloo" or not torch.cuda.is_available():
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if env.local_rank >= count:
        raise DistributedError(
            f"LOCAL_RANK={env.local_rank} but this machine has {count} GPU(s). Launch at most "
            f"{count} processes per node (torchrun --nproc-per-node {count})."
        )
    return torch.device("cuda", env.local_rank)


def restart_caveat(env: DistributedEnv, environ: Mapping[str, str] | None = None) -> str | None:
    """A warning text when this launch may hit torch's elastic restart bug, else None.

    PyTorch issue #135712: when torchrun's agent restarts workers, the rendezvous TCP store it
    shares with them can still hold the previous attempt's addresses, and a restarted gloo
    group then waits on dead peers. Setting ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` in the
    environment of ``torchrun`` gives each attempt its own store.

    Args:
        env: This rank's environment.
        environ: Variables to read; ``os.environ`` when None.

    Returns:
        None when the variable is set to 1 or the job cannot be restarted (a first attempt
        with ``TORCHELASTIC_MAX_RESTARTS`` unset or 0); else a one-paragraph message.
    """
    environ = os.environ if environ is None else environ
    if environ.get(_SHARE_STORE_VAR, "") == "1":
        return None
    max_restarts = environ.get("TORCHELASTIC_MAX_RESTARTS", "0")
    if env.restart_count == 0 and max_restarts in ("", "0"):
        return None
    return (
        "torchrun may restart these workers, and restarted workers can wait forever on the "
        "previous attempt's addresses (PyTorch issue #135712). Launch with "
        f"{_SHARE_STORE_VAR}=1 set, e.g. `{_SHARE_STORE_VAR}=1 torchrun --max-restarts 3 ...`."
    )


def start_process_group(
    env: DistributedEnv,
    *,
    backend: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> DistributedSession:
    """Join the job's process group (``env://`` rendezvous) unless the application already did.

    Args:
        env: This rank's environment (from :func:`~epochal.distributed.env.detect_env`).
        backend: ``'nccl'``, ``'gloo'``, or None for :func:`default_backend`.
        timeout_s: Seconds a rendezvous or collective may wait before raising (> 0).

    Returns:
        The session. With CUDA, ``torch.cuda.set_device`` has been called for this rank.

    Raises:
        ConfigurationError: ``timeout_s`` is not positive.
        DistributedError: The group could not start (unreachable ``MASTER_ADDR``, a peer
            that never came, a timeout), or an existing group's rank or size differs from
            the environment. The message names the cause and, after a torchrun restart, the
            #135712 workaround.
    """
    if not timeout_s > 0:
        raise ConfigurationError(f"timeout_s must be > 0 seconds; got {timeout_s!r}.")
    if dist.is_initialized():
        rank, size = dist.get_rank(), dist.get_world_size()
        if (rank, size) != (env.rank, env.world_size):
            raise DistributedError(
                f"The application's process group has rank {rank} of {size}, but the "
                f"environment says RANK={env.rank} of WORLD_SIZE={env.world_size}. Initialise "
                "the group from the same environment, or let epochal initialise it."
            )
        actual = str(dist.get_backend())
        return DistributedSession(
            env=env, backend=actual, device=_select_device(env, actual), owns_group=False
        )
    chosen = backend or default_backend()
    if chosen not in ("nccl", "gloo"):
        raise ConfigurationError(f"backend must be 'nccl' or 'gloo'; got {chosen!r}.")
    device = _select_device(env, chosen)
    try:
        dist.init_process_group(
            backend=chosen,
            init_method="env://",
            rank=env.rank,
            world_size=env.world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    except Exception as exc:  # rendezvous errors come as RuntimeError, ValueError, DistStoreError
        caveat = restart_caveat(env) if env.restart_count > 0 else None
        raise DistributedError(
            f"Rank {env.rank} of {env.world_size} could not join the process group "
            f"(backend {chosen}, MASTER_ADDR={env.master_addr}, MASTER_PORT={env.master_port}, "
            f"timeout {timeout_s:g} s): {exc}. Check that every rank was started with the same "
            "MASTER_ADDR/MASTER_PORT and can reach it."
            + (f" {caveat}" if caveat else "")
        ) from exc
    return DistributedSession(env=env, backend=chosen, device=device, owns_group=True)


def _select_device(env: DistributedEnv, backend: str) -> torch.device:
    device = device_for(env, backend)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def wrap_network(network: torch.nn.Module, device: torch.device, **ddp_options: Any) -> Any:
    """Move ``network`` to ``device`` and wrap it in ``DistributedDataParallel``.

    An already wrapped network is returned as is. Needs an initialised process group.

    Args:
        network: The plain network.
        device: This rank's device (``session.device``).
        **ddp_options: Passed to ``DistributedDataParallel`` (e.g.
            ``find_unused_parameters=True``).

    Returns:
        The DDP wrapper; ``unwrap_network(wrapper) is network``.

    Raises:
        DistributedError: No process group is initialised.
    """
    if isinstance(network, DistributedDataParallel):
        return network
    if not dist.is_initialized():
        raise DistributedError(
            "wrap_network needs an initialised process group; call start_process_group first."
        )
    network.to(device)
    device_ids = [device] if device.type == "cuda" else None
    return DistributedDataParallel(network, device_ids=device_ids, **ddp_options)


def unwrap_network(network: torch.nn.Module) -> torch.nn.Module:
    """The plain network inside ``DistributedDataParallel`` (or ``DataParallel``) wrappers
    and :class:`~epochal.distributed.StopFlagCarrier`."""
    while isinstance(network, (DistributedDataParallel, torch.nn.DataParallel, StopFlagCarrier)):
        inner = network.module
        assert isinstance(inner, torch.nn.Module)
        network = inner
    return network


def plain_state_dict(network: torch.nn.Module) -> dict[str, Any]:
    """The unwrapped network's ``state_dict`` (keys without DDP's ``module.`` prefix), so a
    checkpoint written by N ranks loads into one process and the other way around."""
    return unwrap_network(network).state_dict()


def broadcast_object(obj: Any, *, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (pickled; for small things such as the resume
    plan rank 0 read from the store). Without a process group, ``obj`` itself."""
    if not dist.is_initialized():
        return obj
    holder = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def agree_seed(seed: int | None = None) -> int:
    """The data seed every rank uses for its shards' order.

    Args:
        seed: The application's seed; None draws one on rank 0 from torch's global generator
            (one int64: seeded by ``set_seeds``, so reproducible) and sends it to every rank.

    Returns:
        The same non-negative int on every rank (store it in snapshots, since a resume must
        reuse it). Without a process group, ``seed`` or the drawn value.
    """
    if seed is None:
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    agreed = broadcast_object(seed, src=0)
    assert isinstance(agreed, int)
    return agreed


def check_world_size(saved: int | None, current: int, *, allow_change: bool = False) -> None:
    """Check that a snapshot written by ``saved`` ranks can resume on ``current`` ranks.

    Weights and optimizer state are world-size independent (plain state dicts), but an exact
    mid-epoch resume replays the data shards, which depend on the world size.

    Args:
        saved: World size recorded in the snapshot (None: unknown, accepted).
        current: World size of this run.
        allow_change: Accept a change (an epoch-boundary snapshot resumed on another number
            of ranks: the next epochs shard differently, so the run is not bit-identical).

    Raises:
        DistributedError: The sizes differ and ``allow_change`` is False.
    """
    if saved is None or saved == current or allow_change:
        return
    raise DistributedError(
        f"This snapshot was written by {saved} rank(s) and this run has {current}. Resume "
        f"with the same number of ranks (torchrun --nproc-per-node ... so that WORLD_SIZE is "
        f"{saved}), or resume from an epoch-boundary snapshot with the world-size change "
        "allowed (the data order then differs from the original run)."
    )
