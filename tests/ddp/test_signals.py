"""SIGTERM/SIGINT become a preemption flag; a second signal acts at once."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from epochal.distributed import PreemptionGuard, resume_hint
from tests.ddp.ranks import run_ranks, values
from tests.ddp.test_bundle_ddp import _rank_preempted, _rank_train, _state

pytestmark = pytest.mark.ddp


class TestPreemptionGuard:
    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    def test_the_first_signal_sets_the_flag_and_training_goes_on(
        self, signum: signal.Signals
    ) -> None:
        """The first SIGTERM or SIGINT is recorded instead of ending the process."""
        with PreemptionGuard() as guard:
            assert not guard.requested
            os.kill(os.getpid(), signum)
            assert guard.requested and guard.signal_received == signum

    def test_previous_handlers_come_back_on_exit(self) -> None:
        """Leaving the guard restores the handlers it replaced."""
        before = signal.getsignal(signal.SIGTERM)
        with PreemptionGuard():
            assert signal.getsignal(signal.SIGTERM) is not before
        assert signal.getsignal(signal.SIGTERM) is before

    def test_a_second_signal_ends_the_process_at_once(self) -> None:
        """The second SIGTERM restores the default action: the process dies of SIGTERM."""
        process = mp.get_context("fork").Process(target=_signal_twice)
        process.start()
        process.join(timeout=20)
        assert process.exitcode == -signal.SIGTERM

    def test_outside_the_main_thread_nothing_is_installed(self) -> None:
        """In another thread the guard installs nothing and reports nothing."""
        import threading

        seen: list[object] = []

        def run() -> None:
            with PreemptionGuard() as guard:
                seen.append(guard.requested)
                seen.append(signal.getsignal(signal.SIGTERM))

        before = signal.getsignal(signal.SIGTERM)
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        assert seen == [False, before]


def _signal_twice() -> None:
    with PreemptionGuard():
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        os._exit(0)  # not reached when the second signal ends the process


def test_resume_hint_names_signal_position_and_location() -> None:
    """The exit message says which signal, where it stopped, and to rerun the command."""
    text = resume_hint(signal.SIGTERM, epoch=3, step=17, location="saves/run")
    assert text == (
        "Stopped by SIGTERM at epoch 3, step 17; the state is saved in saves/run. "
        "Run the same command again to resume from there."
    )


GROUP = 3  # batches per optimizer step; each rank has 8 batches per epoch: groups 1-3, 4-6, 7-8


@pytest.mark.parametrize(("signalled", "at", "committed_step"),
                         [(1, 4, 6), (0, 2, 3), (1, 12, 6), (0, 6, None)])
def test_sigterm_inside_an_accumulation_group_on_two_ranks_resumes_bit_identical(
    signalled: int, at: int, committed_step: int | None
) -> None:
    """With batches_per_step=3 on 2 ranks, a SIGTERM to one rank at batch ``at`` reaches the
    other a step later, both finish the current group, rank 0 commits at the group's end (or
    the whole epoch when the group is its last) and the relaunch ends bit-identical."""
    with tempfile.TemporaryDirectory() as whole, tempfile.TemporaryDirectory() as parts:
        uninterrupted = values(run_ranks(_rank_train, whole, 4, GROUP))
        codes = values(run_ranks(_rank_preempted, parts, signalled, at, GROUP))
        assert isinstance(codes[0], str) and "Run the same command again" in codes[0]
        state = _state(parts)
        assert state.partial_step == committed_step
        resumed = values(run_ranks(_rank_train, parts, 4, GROUP))
        for (weights, rows), (expected, expected_rows) in zip(resumed, uninterrupted):
            for key, value in expected.items():
                assert torch.equal(weights[key], value), key
            assert [{k: v for k, v in r.items() if k != "time"} for r in rows] == [
                {k: v for k, v in r.items() if k != "time"} for r in expected_rows
            ]
        assert len((Path(parts) / "log.tsv").read_text().splitlines()) == 5
