"""A worker script run under `torchrun` by tests/ddp/test_env.py: one exact evaluation pass."""

from __future__ import annotations

import json
import sys

import torch
from torch.utils.data import DataLoader, TensorDataset

from epochal.core.loop import EpochSetup, run_epoch
from epochal.core.records import EpochRecord, PassPhase
from epochal.distributed import (
    agree_seed,
    detect_env,
    reduce_pass,
    shard_loader,
    start_process_group,
    wrap_network,
)


def main(out_path: str) -> None:
    env = detect_env()
    assert env is not None, "not started by torchrun"
    session = start_process_group(env, timeout_s=60)
    torch.manual_seed(0)
    network = wrap_network(torch.nn.Linear(3, 1), session.device)
    data = TensorDataset(torch.randn(1001, 3), torch.randn(1001, 1))
    seed = agree_seed()
    shard = shard_loader(DataLoader(data, batch_size=50, shuffle=True), rank=env.rank,
                         world_size=env.world_size, seed=seed, training=False)
    shard.set_epoch(1)
    setup = EpochSetup(network=network.module, loss_function=torch.nn.MSELoss())
    *_, record = run_epoch(setup, shard, phase=PassPhase.VALID, epoch=1, clock=lambda: 0.0)
    assert isinstance(record, EpochRecord)
    reduced = reduce_pass(record, batch_metric_names=())
    with open(f"{out_path}.{env.rank}", "w") as out:
        json.dump({"rank": env.rank, "world": env.world_size, "local": record.samples,
                   "samples": reduced.samples, "loss": reduced.loss}, out)
    # Both ranks leave the group together: a rank that destroyed it while its peer was still
    # writing was seen to abort in gloo's teardown ("terminate called without an active
    # exception") in bursts on this machine.
    torch.distributed.barrier()
    session.close()


if __name__ == "__main__":
    main(sys.argv[1])
