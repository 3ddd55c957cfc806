"""SIGTERM/SIGINT become a preemption flag; a second signal acts at once."""

from __future__ import annotations

import os
import signal

import pytest
import torch.multiprocessing as mp

from epochal.distributed import PreemptionGuard, resume_hint

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
