"""Process group setup, devices, DDP wrapping and the plain state dict."""

from __future__ import annotations

import time
from typing import Any

import pytest
import torch
import torch.distributed as dist

from epochal.distributed import (
    DistributedEnv,
    agree_seed,
    broadcast_object,
    check_world_size,
    detect_env,
    device_for,
    plain_state_dict,
    restart_caveat,
    start_process_group,
    unwrap_network,
    wrap_network,
)
from epochal.exceptions import ConfigurationError, DistributedError
from tests.ddp.ranks import run_ranks, values

pytestmark = pytest.mark.ddp


def _group_facts(rank: int, world: int) -> dict[str, Any]:
    env = detect_env()
    assert env is not None
    again = start_process_group(env)  # the group exists: adopted, not re-created
    total = torch.tensor([rank + 1.0])
    dist.all_reduce(total)
    return {
        "backend": again.backend,
        "owns": again.owns_group,
        "device": str(again.device),
        "sum": float(total),
        "plan": broadcast_object({"from": rank}),
        "drawn_seed": (torch.manual_seed(rank), agree_seed())[1],
        "given_seed": agree_seed(7 + rank),
    }


def _wrapped_state(rank: int, world: int) -> dict[str, Any]:
    torch.manual_seed(0)
    plain = torch.nn.Linear(3, 2)
    wrapped = wrap_network(plain, torch.device("cpu"))
    return {
        "same": unwrap_network(wrapped) is plain,
        "rewrap": wrap_network(wrapped, torch.device("cpu")) is wrapped,
        "keys": sorted(plain_state_dict(wrapped)),
        "wrapped_keys": sorted(wrapped.state_dict()),
    }


def _lonely_rank(rank: int, world: int) -> str:
    env = DistributedEnv(rank=0, world_size=2, master_addr="127.0.0.1", master_port=0)
    import os

    from tests.ddp.ranks import free_port

    os.environ["MASTER_PORT"] = str(free_port())
    os.environ["WORLD_SIZE"] = "2"
    start = time.monotonic()
    try:
        start_process_group(env, backend="gloo", timeout_s=2)
    except DistributedError as exc:
        return f"{time.monotonic() - start:.1f}|{exc}"
    return "joined"


class TestStartProcessGroup:
    def test_two_ranks_join_and_an_existing_group_is_adopted(self) -> None:
        """Both ranks join on gloo; a second start adopts the application's group."""
        facts = values(run_ranks(_group_facts))
        for fact in facts:
            assert fact["backend"] == "gloo"
            assert fact["owns"] is False
            assert fact["device"] == "cpu"
            assert fact["sum"] == 3.0
            assert fact["plan"] == {"from": 0}
            assert fact["given_seed"] == 7
        assert facts[0]["drawn_seed"] == facts[1]["drawn_seed"]

    def test_a_missing_peer_gives_a_clear_error_within_the_timeout(self) -> None:
        """A rank whose peer never comes raises DistributedError after its timeout."""
        (result,) = values(run_ranks(_lonely_rank, world_size=1, init=False))
        elapsed, message = result.split("|", 1)
        assert float(elapsed) < 15
        assert "Rank 0 of 2 could not join the process group" in message
        assert "MASTER_ADDR" in message

    def test_a_non_positive_timeout_is_rejected(self) -> None:
        """timeout_s <= 0 is a configuration error, raised before any rendezvous."""
        with pytest.raises(ConfigurationError, match="timeout_s"):
            start_process_group(DistributedEnv(rank=0, world_size=1), timeout_s=0)


class TestWrapping:
    def test_checkpoint_keys_are_the_plain_networks(self) -> None:
        """The plain state dict has no 'module.' prefix; unwrap returns the same object."""
        (fact, _) = values(run_ranks(_wrapped_state))
        assert fact["same"] and fact["rewrap"]
        assert fact["keys"] == ["bias", "weight"]
        assert fact["wrapped_keys"] == ["module.bias", "module.weight"]

    def test_wrapping_without_a_group_is_an_error(self) -> None:
        """wrap_network outside a process group says to start one."""
        with pytest.raises(DistributedError, match="start_process_group"):
            wrap_network(torch.nn.Linear(1, 1), torch.device("cpu"))

    def test_unwrap_of_a_plain_network_is_itself(self) -> None:
        """A network that was never wrapped is returned as is."""
        net = torch.nn.Linear(1, 1)
        assert unwrap_network(net) is net


class TestDevice:
    def test_cpu_when_gloo_is_asked(self) -> None:
        """A gloo group places every rank on the CPU."""
        env = DistributedEnv(rank=1, world_size=2, local_rank=1, local_world_size=2)
        assert device_for(env, "gloo") == torch.device("cpu")


class TestCheckWorldSize:
    def test_same_size_passes_and_a_change_is_named(self) -> None:
        """Equal sizes pass; a change raises naming both sizes unless allowed."""
        check_world_size(2, 2)
        check_world_size(None, 4)
        check_world_size(2, 1, allow_change=True)
        with pytest.raises(DistributedError, match=r"written by 2 rank.*this run has 1"):
            check_world_size(2, 1)


class TestRestartCaveat:
    def test_warns_only_for_restartable_jobs_without_the_workaround(self) -> None:
        """The #135712 caveat appears for restartable jobs unless the variable is set."""
        first = DistributedEnv(rank=0, world_size=2)
        restarted = DistributedEnv(rank=0, world_size=2, restart_count=1)
        assert restart_caveat(first, {}) is None
        text = restart_caveat(first, {"TORCHELASTIC_MAX_RESTARTS": "3"})
        assert text is not None and "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in text
        assert restart_caveat(restarted, {}) is not None
        assert restart_caveat(restarted, {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}) is None
