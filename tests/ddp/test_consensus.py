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
    StopReason,
    StopVerdict,
    shard_loader,
    wrap_network,
)
from epochal.exceptions import PeerFailedError
from tests.ddp.ranks import run_ranks, values

pytestmark = pytest.mark.ddp

DECIDE_AT = 3


class CallbackFailure(RuntimeError):
    """What a user's callback raised."""


def _train_pass(rank: int, world: int, decider: int, kind: str) -> dict[str, Any]:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    shard = shard_loader(DataLoader(data, batch_size=4, shuffle=True), rank=rank,
                         world_size=world, seed=0, training=True)
    shard.set_epoch(1)
    network = wrap_network(torch.nn.Linear(4, 1), torch.device("cpu"))
    setup = EpochSetup(network=network, loss_function=torch.nn.MSELoss(),
                       optimizer=torch.optim.SGD(network.parameters(), lr=0.01))
    consensus = StopConsensus()
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
    @pytest.mark.parametrize("decider", [0, 1])
    @pytest.mark.parametrize("kind", ["REQUESTED", "PREEMPTED"])
    def test_a_stop_on_one_rank_stops_every_rank_at_the_next_step(
        self, decider: int, kind: str
    ) -> None:
        """A stop taken on one rank at step t ends every rank's pass after step t + 1."""
        outcomes = values(run_ranks(_train_pass, decider, kind))
        for outcome in outcomes:
            assert outcome["steps"] == DECIDE_AT + 1
            assert outcome["verdict_step"] == DECIDE_AT + 1
            assert outcome["complete"] is False
            assert outcome["reason"] == kind
            assert outcome["raised"] is None
            assert outcome["seconds"] < 30

    @pytest.mark.parametrize("decider", [0, 1])
    def test_an_exception_on_one_rank_is_raised_there_and_named_elsewhere(
        self, decider: int
    ) -> None:
        """The failing rank re-raises its exception; the other raises PeerFailedError naming
        it; both stopped at the same step."""
        outcomes = values(run_ranks(_train_pass, decider, "error"))
        for rank, outcome in enumerate(outcomes):
            assert outcome["steps"] == DECIDE_AT + 1
            assert outcome["failed_rank"] == decider
            expected = ("CallbackFailure", None) if rank == decider else (
                "PeerFailedError", decider)
            assert outcome["raised"] == expected


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
