"""The distributed layer: run the same script under ``torchrun`` on several ranks.

One job per module:

* :mod:`~epochal.distributed.env`: read torchrun's environment (``detect_env``);
* :mod:`~epochal.distributed.group`: the process group, each rank's device, DDP wrapping and
  the plain state dict;
* :mod:`~epochal.distributed.sharding`: each rank's share of a loader, in an order that
  depends only on (seed, epoch);
* :mod:`~epochal.distributed.reduction`: global epoch values from one all-reduce per pass;
* :mod:`~epochal.distributed.consensus`: stop decisions taken at the same step on every rank;
* :mod:`~epochal.distributed.signals`: SIGTERM/SIGINT to a preemption flag;
* :mod:`~epochal.distributed.failure`: an exception inside one rank's step, told to the
  others through the rendezvous store (they raise ``PeerFailedError`` instead of waiting).
"""

from __future__ import annotations

from epochal.distributed.consensus import (
    StopConsensus,
    StopFlagCarrier,
    StopReason,
    StopVerdict,
)
from epochal.distributed.env import DistributedEnv, detect_env
from epochal.distributed.group import (
    DEFAULT_TIMEOUT_S,
    DistributedSession,
    agree_seed,
    broadcast_object,
    check_world_size,
    default_backend,
    device_for,
    plain_state_dict,
    restart_caveat,
    start_process_group,
    unwrap_network,
    wrap_network,
)
from epochal.distributed.reduction import (
    ReducibleState,
    check_reducible,
    reduce_pass,
    sum_epoch_metric_states,
)
from epochal.distributed.sharding import (
    ShardedDataLoader,
    ShardedTensorBatchLoader,
    ShardMode,
    ShardSampler,
    epoch_order,
    shard_indices,
    shard_loader,
    shard_size,
)
from epochal.distributed.signals import PreemptionGuard, resume_hint

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DistributedEnv",
    "DistributedSession",
    "PreemptionGuard",
    "ReducibleState",
    "ShardMode",
    "ShardSampler",
    "ShardedDataLoader",
    "ShardedTensorBatchLoader",
    "StopConsensus",
    "StopFlagCarrier",
    "StopReason",
    "StopVerdict",
    "agree_seed",
    "broadcast_object",
    "check_reducible",
    "check_world_size",
    "default_backend",
    "detect_env",
    "device_for",
    "epoch_order",
    "plain_state_dict",
    "reduce_pass",
    "restart_caveat",
    "resume_hint",
    "shard_indices",
    "shard_loader",
    "shard_size",
    "start_process_group",
    "sum_epoch_metric_states",
    "unwrap_network",
    "wrap_network",
]
