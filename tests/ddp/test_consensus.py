"""Stop decisions reach every rank within two steps, at one stop point, without a hang."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from epochal.core.loop import EpochSetup, run_epoch
from epochal.core.records import EpochRecord, PassPhase, StepRecord
from epochal.distributed import (
    PreemptionGuard,
    StopConsensus,
    StopFlagCarrier,
    StopReason,
    StopVerdict,
    shard_loader,
    unwrap_network,
    wrap_network,
)
from epochal.exceptions import PeerFailedError
from tests.ddp.ranks import run_ranks, values

pytestmark = pytest.mark.ddp

DECIDE_AT = 3


class CallbackFailure(RuntimeError):
    """What a user's callback raised."""


def _carried_setup(
    plain: torch.nn.Module, carried: bool, **setup: Any
) -> tuple[EpochSetup, StopConsensus, StopFlagCarrier | None]:
    """A training setup over ``plain`` on 2 ranks: DDP of the network and a separate flag, or
    (``carried``) DDP of a StopFlagCarrier and the flag in the gradients."""
    carrier = StopFlagCarrier(plain) if carried else None
    network = wrap_network(carrier if carrier is not None else plain, torch.device("cpu"))
    loss: Any = torch.nn.MSELoss()
    if carrier is not None:
        loss = carrier.carry(loss, network)
    optimizer = torch.optim.SGD(plain.parameters(), lr=0.01)
    return (EpochSetup(network=network, loss_function=loss, optimizer=optimizer, **setup),
            StopConsensus(carrier=carrier), carrier)


def _train_pass(
    rank: int, world: int, decider: int, kind: str, carried: bool = False
) -> dict[str, Any]:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    shard = shard_loader(DataLoader(data, batch_size=4, shuffle=True), rank=rank,
                         world_size=world, seed=0, training=True)
    shard.set_epoch(1)
    setup, consensus, _ = _carried_setup(torch.nn.Linear(4, 1), carried)
    consensus.start_pass()
    start = time.monotonic()
    epoch_record = None
    for record in run_epoch(setup, shard, phase=PassPhase.TRAIN, epoch=1, clock=time.monotonic,
                            hooks=consensus):
        if isinstance(record, StepRecord):
            try:  # the driver publishes the record; a callback on `decider` decides
                if rank == decider and record.step == DECIDE_AT:
                    if kind == "error":
                        raise CallbackFailure("boom")
                    consensus.request(StopReason[kind])
            except CallbackFailure as exc:
                consensus.fail(exc)
        else:
            epoch_record = record
    verdict = consensus.finish_pass()
    assert isinstance(epoch_record, EpochRecord) and verdict is not None
    raised = None
    try:
        verdict.raise_if_failed()
    except (CallbackFailure, PeerFailedError) as exc:
        raised = (type(exc).__name__, getattr(exc, "failed_rank", None))
    return {
        "steps": epoch_record.steps,
        "complete": epoch_record.complete,
        "verdict_step": verdict.step,
        "reason": verdict.reason.name,
        "failed_rank": verdict.failed_rank,
        "raised": raised,
        "seconds": time.monotonic() - start,
    }


class TestStopConsensus:
    @pytest.mark.parametrize("carried", [False, True], ids=["flag", "carried"])
    @pytest.mark.parametrize("decider", [0, 1])
    @pytest.mark.parametrize("kind", ["REQUESTED", "PREEMPTED"])
    def test_a_stop_on_one_rank_stops_every_rank_at_the_next_step(
        self, decider: int, kind: str, carried: bool
    ) -> None:
        """A stop taken on one rank at step t ends every rank's pass after step t + 1, with a
        separate flag all-reduce and with the flag carried in the gradients."""
        outcomes = values(run_ranks(_train_pass, decider, kind, carried))
        for outcome in outcomes:
            assert outcome["steps"] == DECIDE_AT + 1
            assert outcome["verdict_step"] == DECIDE_AT + 1
            assert outcome["complete"] is False
            assert outcome["reason"] == kind
            assert outcome["raised"] is None
            assert outcome["seconds"] < 30

    @pytest.mark.parametrize("carried", [False, True], ids=["flag", "carried"])
    @pytest.mark.parametrize("decider", [0, 1])
    def test_an_exception_on_one_rank_is_raised_there_and_named_elsewhere(
        self, decider: int, carried: bool
    ) -> None:
        """The failing rank re-raises its exception; the other raises PeerFailedError naming
        it; both stopped at the same step."""
        outcomes = values(run_ranks(_train_pass, decider, "error", carried))
        for rank, outcome in enumerate(outcomes):
            assert outcome["steps"] == DECIDE_AT + 1
            assert outcome["failed_rank"] == decider
            expected = ("CallbackFailure", None) if rank == decider else (
                "PeerFailedError", decider)
            assert outcome["raised"] == expected


def _carrier_pass(rank: int, world: int, carried: bool, group: int,
                  decide_at: int | None) -> dict[str, Any]:
    """One pass of 16 batches (groups of ``group`` accumulated batches); rank 1 requests a
    stop after batch ``decide_at``. Counts the all-reduce calls made outside DDP."""
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(128, 4), torch.randn(128, 1))
    shard = shard_loader(DataLoader(data, batch_size=4, shuffle=False), rank=rank,
                         world_size=world, seed=0, training=True)
    shard.set_epoch(1)
    plain = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    setup, consensus, carrier = _carried_setup(plain, carried, batches_per_step=group)
    calls = [0]
    all_reduce = torch.distributed.all_reduce

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return all_reduce(*args, **kwargs)

    torch.distributed.all_reduce = counted  # the consensus's collectives (DDP's are C++)
    try:
        consensus.start_pass()
        for record in run_epoch(setup, shard, phase=PassPhase.TRAIN, epoch=1,
                                clock=time.monotonic, hooks=consensus, batch_count=len(shard)):
            if isinstance(record, StepRecord) and rank == 1 and record.step == decide_at:
                consensus.request()
            if isinstance(record, EpochRecord):
                steps = record.steps
        verdict = consensus.finish_pass()
    finally:
        torch.distributed.all_reduce = all_reduce
    return {
        "steps": steps,
        "verdict": None if verdict is None else (verdict.reason.name, verdict.step),
        "weights": {k: v.clone() for k, v in plain.state_dict().items()},
        "calls": calls[0],
        "keys": sorted(torch.nn.Module.state_dict(carrier)) if carrier is not None else None,
    }


class TestStopFlagCarrier:
    def test_the_gradients_and_weights_are_those_of_plain_ddp(self) -> None:
        """The carrier changes nothing in the training: after a pass each rank's weights are
        bit-identical to plain DDP's; the consensus made 1 all-reduce (the pass's end), not
        one per step; the stop flag is the carrier's only parameter besides the network's."""
        plain = values(run_ranks(_carrier_pass, False, 1, None))
        carried = values(run_ranks(_carrier_pass, True, 1, None))
        for before, after in zip(plain, carried):
            assert after["steps"] == before["steps"] == 16
            for key, value in before["weights"].items():
                assert torch.equal(after["weights"][key], value), key
        assert [r["calls"] for r in plain] == [16, 16]  # one flag per step
        assert [r["calls"] for r in carried] == [1, 1]
        assert carried[0]["keys"] == ["module.0.bias", "module.0.weight", "module.2.bias",
                                      "module.2.weight", "stop_flag"]

    @pytest.mark.parametrize("decide_at", [4, 5, 6])
    def test_with_accumulated_batches_the_flag_rides_on_the_next_synchronised_step(
        self, decide_at: int
    ) -> None:
        """Groups of 3 batches (no_sync on the first two): a request after batch t reaches
        every rank with the next group's all-reduce (batch 6 for t = 4 or 5, batch 9 for
        t = 6); every rank stops at the same point, at a group's end."""
        outcomes = values(run_ranks(_carrier_pass, True, 3, decide_at))
        expected = 6 if decide_at < 6 else 9
        for outcome in outcomes:
            assert outcome["steps"] == expected
            assert outcome["verdict"] == ("REQUESTED", expected)
            assert outcome["calls"] == 1  # the settling all-reduce, once

    def test_without_a_process_group_it_is_not_needed(self) -> None:
        """One process: unwrap_network skips the carrier, its state_dict holds the network's
        parameters and the flag."""
        network = torch.nn.Linear(2, 1)
        carrier = StopFlagCarrier(network)
        assert unwrap_network(carrier) is network
        assert sorted(carrier.state_dict()) == ["module.bias", "module.weight", "stop_flag"]
        assert torch.equal(carrier(torch.ones(1, 2)), network(torch.ones(1, 2)))


def _preempted(rank: int, world: int) -> dict[str, Any]:
    with PreemptionGuard() as guard:
        consensus = StopConsensus(preemption=guard)
        consensus.start_pass()
        for step in range(1, 20):
            if rank == 1 and step == DECIDE_AT:
                os.kill(os.getpid(), signal.SIGTERM)  # arrives during step 3
            verdict = consensus.after_step()
            if verdict is not None:
                break
        consensus.finish_pass()
    assert verdict is not None
    return {"step": step, "reason": verdict.reason.name, "signal": guard.signal_received}


def _epoch_end(rank: int, world: int) -> tuple[str, int] | None:
    consensus = StopConsensus()
    if rank == 1:
        consensus.request()
    verdict = consensus.agree()
    return None if verdict is None else (verdict.reason.name, verdict.step)


def _nobody_stops(rank: int, world: int) -> list[bool]:
    consensus = StopConsensus()
    polled = [consensus.should_stop() for _ in range(5)]
    return [*polled, consensus.finish_pass() is None, consensus.agree() is None]


class TestPreemption:
    def test_sigterm_on_one_rank_stops_every_rank_at_the_next_step(self) -> None:
        """A SIGTERM seen by rank 1's guard during step 3 ends both ranks after step 4, as a
        preemption."""
        outcomes = values(run_ranks(_preempted))
        assert [o["step"] for o in outcomes] == [DECIDE_AT + 1] * 2
        assert [o["reason"] for o in outcomes] == ["PREEMPTED"] * 2
        assert [o["signal"] for o in outcomes] == [None, signal.SIGTERM]


class TestAgreement:
    def test_an_epoch_end_decision_is_agreed_by_every_rank(self) -> None:
        """A request after the pass reaches every rank through agree()."""
        assert values(run_ranks(_epoch_end)) == [("REQUESTED", 0), ("REQUESTED", 0)]

    def test_without_decisions_nothing_stops(self) -> None:
        """No request: no verdict, per step or at the end."""
        assert values(run_ranks(_nobody_stops)) == [[False] * 5 + [True, True]] * 2

    def test_the_strongest_reason_wins(self) -> None:
        """A failure outranks a preemption, which outranks a plain request."""
        assert StopReason.FAILED > StopReason.PREEMPTED > StopReason.REQUESTED


class TestOneProcess:
    def test_a_request_stops_after_the_same_step(self) -> None:
        """Without a process group the decision applies after the step it was taken in."""
        consensus = StopConsensus()
        assert not consensus.should_stop()
        consensus.request(StopReason.PREEMPTED)
        verdict = consensus.after_step()
        assert verdict == StopVerdict(reason=StopReason.PREEMPTED, step=2)

    def test_a_failure_is_re_raised(self) -> None:
        """fail() keeps the first exception and the verdict re-raises it."""
        consensus = StopConsensus()
        consensus.fail(KeyError("first"))
        consensus.fail(KeyError("second"))
        verdict = consensus.agree()
        assert verdict is not None and verdict.failed_rank == 0
        with pytest.raises(KeyError, match="first"):
            verdict.raise_if_failed()
