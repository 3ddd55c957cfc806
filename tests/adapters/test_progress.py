"""Tests of ``epochal_adapters.progress.TqdmProgress``, driven by hand-built records on a bus."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Sequence

import pytest
import torch

from epochal.bus import RecordBus
from epochal.core.records import (
    EpochBegin,
    EpochEnd,
    EpochRecord,
    PassPhase,
    PhaseBegin,
    StepBegin,
    StepRecord,
    TrainBegin,
    TrainEnd,
)
from epochal.ports import Attachable
from epochal_adapters.progress import TqdmProgress

LOGS = {
    "epoch": 1,
    "time": 12.3149,
    "loss": 0.5026923,
    "acc": 84.2666631,
    "val_loss": 0.172589,
    "val_acc": 94.75,
}
SUMMARY = (
    "Epoch: 1/5 Train steps: 4 Val steps: 2 12.31s loss: 0.502692 acc: 84.266663 "
    "val_loss: 0.172589 val_acc: 94.750000"
)


class Terminal(io.StringIO):
    """A StringIO that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class ManualClock:
    """A clock the test sets by hand (``clock.now_s = 3.0``)."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


class CountingValue:
    """A step value that counts how often it is converted to a float (a host sync on GPU)."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.reads = 0

    def __float__(self) -> float:
        self.reads += 1
        return self.value


def attached(progress: TqdmProgress) -> RecordBus:
    bus = RecordBus()
    progress.attach(bus)
    return bus


def step(phase: PassPhase, epoch: int, index: int, loss: object = 0.5, acc: object = 80.0) -> StepRecord:
    return StepRecord(
        phase=phase,
        epoch=epoch,
        step=index,
        global_step=index,
        batch_size=8,
        loss=torch.tensor(loss) if isinstance(loss, float) else loss,
        metrics={"acc": torch.tensor(acc) if isinstance(acc, float) else acc},
        duration_s=0.01,
    )


def run_pass(bus: RecordBus, phase: PassPhase, epoch: int, steps: int, clock: ManualClock | None = None,
             dt_s: float = 0.0) -> None:
    bus.publish(PhaseBegin(phase=phase, epoch=epoch))
    for index in range(1, steps + 1):
        if clock is not None:
            clock.now_s += dt_s
        bus.publish(step(phase, epoch, index))
    bus.publish(
        EpochRecord(phase=phase, epoch=epoch, steps=steps, samples=8 * steps, loss=0.5,
                    metrics={"acc": 80.0}, duration_s=1.0)
    )


def run_epoch(bus: RecordBus, epoch: int = 1, *, train_steps: int = 4, valid_steps: int | None = 2,
              logs: dict[str, float] | None = None) -> None:
    bus.publish(EpochBegin(epoch=epoch))
    run_pass(bus, PassPhase.TRAIN, epoch, train_steps)
    if valid_steps is not None:
        run_pass(bus, PassPhase.VALID, epoch, valid_steps)
    bus.publish(EpochEnd(epoch=epoch, logs=dict(LOGS if logs is None else logs, epoch=epoch)))


def train_begin(epochs: int = 5, steps: int | None = 4, valid_steps: int | None = 2) -> TrainBegin:
    return TrainBegin(params={"epochs": epochs, "steps": steps, "valid_steps": valid_steps})


def lines(text: str) -> list[str]:
    return text.splitlines()


def progress_lines(text: str) -> Sequence[str]:
    return [line for line in lines(text) if " step " in line]


class TestTqdmProgressPlainOutput:
    """Output to a file that is not a terminal (CI logs, pipes)."""

    def test_summary_line_has_poutyne_format(self) -> None:
        """The epoch summary is one line: epoch, step counts, time (2 decimals), then every
        log value with 6 decimals."""
        out = io.StringIO()
        bus = attached(TqdmProgress(file=out))
        bus.publish(train_begin())
        run_epoch(bus)
        assert lines(out.getvalue()) == [SUMMARY]

    def test_no_carriage_return_nor_colour(self) -> None:
        """Not a terminal: neither '\\r' nor ANSI escape codes, even with coloring on."""
        out = io.StringIO()
        clock = ManualClock()
        bus = attached(TqdmProgress(file=out, coloring=True, min_interval_s=1.0, clock=clock))
        bus.publish(train_begin(steps=40))
        bus.publish(EpochBegin(epoch=1))
        run_pass(bus, PassPhase.TRAIN, 1, 40, clock, dt_s=0.5)
        bus.publish(EpochEnd(epoch=1, logs=LOGS))
        text = out.getvalue()
        assert progress_lines(text)
        assert "\r" not in text
        assert "\x1b[" not in text

    def test_at_most_one_progress_line_per_interval(self) -> None:
        """Plain progress lines come at most once per ``min_interval_s`` of the clock, the
        first one an interval after the pass began."""
        out = io.StringIO()
        clock = ManualClock()
        bus = attached(TqdmProgress(file=out, min_interval_s=5.0, clock=clock))
        bus.publish(train_begin(steps=20))
        bus.publish(EpochBegin(epoch=1))
        run_pass(bus, PassPhase.TRAIN, 1, 20, clock, dt_s=1.0)  # steps at t = 1, 2, ..., 20
        shown = progress_lines(out.getvalue())
        assert [line.split()[3] for line in shown] == ["5/20", "10/20", "15/20", "20/20"]
        assert shown[0] == "Epoch 1/5 step 5/20 loss: 0.500000 acc: 80.000000"

    def test_short_pass_prints_only_the_summary(self) -> None:
        """A pass shorter than ``min_interval_s`` prints no progress line."""
        out = io.StringIO()
        clock = ManualClock()
        bus = attached(TqdmProgress(file=out, min_interval_s=5.0, clock=clock))
        bus.publish(train_begin(steps=100))
        bus.publish(EpochBegin(epoch=1))
        run_pass(bus, PassPhase.TRAIN, 1, 100, clock, dt_s=0.01)
        bus.publish(EpochEnd(epoch=1, logs=LOGS))
        assert len(lines(out.getvalue())) == 1

    def test_reads_step_values_only_for_a_printed_line(self) -> None:
        """Step values are converted to floats only when a line is printed, not per step."""
        out = io.StringIO()
        clock = ManualClock()
        bus = attached(TqdmProgress(file=out, min_interval_s=5.0, clock=clock))
        bus.publish(train_begin(steps=None))
        bus.publish(EpochBegin(epoch=1))
        bus.publish(PhaseBegin(phase=PassPhase.TRAIN, epoch=1))
        values = []
        for index in range(1, 101):
            clock.now_s = index * 0.1  # 10 s in all: two lines
            value = CountingValue(0.25)
            values.append(value)
            bus.publish(step(PassPhase.TRAIN, 1, index, loss=value))
        assert sum(v.reads for v in values) == 2
        assert len(progress_lines(out.getvalue())) == 2

    def test_validation_line_is_labelled(self) -> None:
        """A validation progress line names the pass and its prefixed values."""
        out = io.StringIO()
        clock = ManualClock()
        bus = attached(TqdmProgress(file=out, min_interval_s=1.0, clock=clock))
        bus.publish(train_begin(valid_steps=3))
        bus.publish(EpochBegin(epoch=2))
        run_pass(bus, PassPhase.VALID, 2, 3, clock, dt_s=1.0)
        assert progress_lines(out.getvalue())[0] == (
            "Epoch 2/5 val step 1/3 val_loss: 0.500000 val_acc: 80.000000"
        )

    def test_unknown_totals(self) -> None:
        """With ``steps`` None the count is shown alone, and the summary still prints."""
        out = io.StringIO()
        clock = ManualClock()
        bus = attached(TqdmProgress(file=out, min_interval_s=1.0, clock=clock))
        bus.publish(train_begin(steps=None, valid_steps=None))
        bus.publish(EpochBegin(epoch=1))
        run_pass(bus, PassPhase.TRAIN, 1, 3, clock, dt_s=1.0)
        bus.publish(EpochEnd(epoch=1, logs={"epoch": 1, "time": 0.5, "loss": 0.5}))
        text = out.getvalue()
        assert "None" not in text
        assert lines(text) == [
            "Epoch 1/5 step 1 loss: 0.500000 acc: 80.000000",
            "Epoch 1/5 step 2 loss: 0.500000 acc: 80.000000",
            "Epoch 1/5 step 3 loss: 0.500000 acc: 80.000000",
            "Epoch: 1/5 Train steps: 3 0.50s loss: 0.500000",
        ]

    def test_epoch_without_validation(self) -> None:
        """Without a validation pass the summary has no 'Val steps'; the learning rate, in the
        logs for CSV and history, is left out of the line as in Poutyne's."""
        out = io.StringIO()
        bus = attached(TqdmProgress(file=out))
        bus.publish(train_begin())
        run_epoch(bus, valid_steps=None, logs={"epoch": 1, "time": 2.0, "loss": 0.25, "lr": 0.1})
        assert lines(out.getvalue()) == [
            "Epoch: 1/5 Train steps: 4 2.00s loss: 0.250000"
        ]

    def test_epoch_without_train_begin(self) -> None:
        """Without a ``TrainBegin`` the number of epochs is unknown and left out."""
        out = io.StringIO()
        bus = attached(TqdmProgress(file=out))
        bus.publish(EpochBegin(epoch=3))
        bus.publish(EpochEnd(epoch=3, logs={"epoch": 3, "time": 1.0, "loss": 0.5}))
        assert lines(out.getvalue()) == ["Epoch: 3 1.00s loss: 0.500000"]

    def test_stand_alone_test_pass(self) -> None:
        """An evaluation outside training prints one 'Test steps' line from its record."""
        out = io.StringIO()
        bus = attached(TqdmProgress(file=out))
        bus.publish(PhaseBegin(phase=PassPhase.TEST, epoch=0))
        for index in (1, 2, 3):
            bus.publish(step(PassPhase.TEST, 0, index))
        bus.publish(
            EpochRecord(phase=PassPhase.TEST, epoch=0, steps=313, samples=10000, loss=0.05,
                        metrics={"acc": 98.1}, duration_s=1.214)
        )
        assert lines(out.getvalue()) == [
            "Test steps: 313 1.21s test_loss: 0.050000 test_acc: 98.100000"
        ]

    def test_evaluation_after_training(self) -> None:
        """An evaluation after ``TrainEnd`` is a stand-alone pass, not part of the last epoch."""
        out = io.StringIO()
        bus = attached(TqdmProgress(file=out))
        bus.publish(train_begin(epochs=1))
        run_epoch(bus)
        bus.publish(TrainEnd(last_epoch=1, stopped=False, logs=LOGS))
        run_pass(bus, PassPhase.TEST, 0, 2)
        assert lines(out.getvalue())[-1] == "Test steps: 2 1.00s test_loss: 0.500000 test_acc: 80.000000"


class TestTqdmProgressTerminal:
    """Output to a terminal: tqdm bars and colours."""

    def test_bar_shows_steps_and_values(self) -> None:
        """On a terminal a bar shows step/total and the latest batch's loss and metrics."""
        out = Terminal()
        clock = ManualClock()
        bus = attached(TqdmProgress(file=out, coloring=False, clock=clock))
        bus.publish(train_begin())
        bus.publish(EpochBegin(epoch=1))
        run_pass(bus, PassPhase.TRAIN, 1, 4, clock, dt_s=0.2)
        text = out.getvalue()
        assert "\r" in text
        assert "4/4" in text
        assert "loss: 0.500000 acc: 80.000000" in text

    def test_summary_replaces_the_bar(self) -> None:
        """At the epoch end the bars are cleared and the summary is the last line."""
        out = Terminal()
        bus = attached(TqdmProgress(file=out, coloring=False))
        bus.publish(train_begin())
        run_epoch(bus)
        text = out.getvalue()
        assert text.endswith("\r" + SUMMARY + "\n")

    def test_colour_codes_when_coloring_on(self) -> None:
        """With coloring on, the summary uses Poutyne's default colours (ANSI codes)."""
        out = Terminal()
        bus = attached(TqdmProgress(file=out, coloring=True))
        bus.publish(train_begin())
        run_epoch(bus)
        summary = out.getvalue().rsplit("\r", 1)[-1]
        assert summary.startswith("\x1b[35mEpoch: \x1b[36m1/5 ")
        assert "\x1b[32m12.31s " in summary
        assert "\x1b[35mloss:\x1b[94m 0.502692" in summary
        assert re.sub(r"\x1b\[[0-9;]*m", "", summary) == SUMMARY + "\n"

    def test_no_colour_codes_when_coloring_off(self) -> None:
        """With coloring off, a terminal gets no escape codes at all."""
        out = Terminal()
        clock = ManualClock()
        bus = attached(TqdmProgress(file=out, coloring=False, clock=clock))
        bus.publish(train_begin())
        bus.publish(EpochBegin(epoch=1))
        run_pass(bus, PassPhase.TRAIN, 1, 4, clock, dt_s=0.2)
        run_pass(bus, PassPhase.VALID, 1, 2, clock, dt_s=0.2)
        bus.publish(EpochEnd(epoch=1, logs=LOGS))
        assert "\x1b[" not in out.getvalue()

    def test_coloring_dict_overrides_defaults(self) -> None:
        """A coloring dict replaces the named colours and keeps the others."""
        out = Terminal()
        bus = attached(TqdmProgress(file=out, coloring={"text_color": "RED"}))
        bus.publish(train_begin())
        run_epoch(bus)
        assert "\x1b[31mEpoch: \x1b[36m1/5" in out.getvalue()

    def test_unknown_colour_is_rejected(self) -> None:
        """An unknown colour key or name raises ValueError naming it."""
        with pytest.raises(ValueError, match="'PUCE'"):
            TqdmProgress(coloring={"text_color": "PUCE"})
        with pytest.raises(ValueError, match="bar_colour"):
            TqdmProgress(coloring={"bar_colour": "RED"})

    def test_refresh_is_throttled(self) -> None:
        """Step values are read at most once per refresh interval, whatever the step rate."""
        out = Terminal()
        clock = ManualClock()
        progress = TqdmProgress(file=out, refresh_interval_s=0.1, clock=clock)
        bus = attached(progress)
        bus.publish(train_begin(steps=1000))
        bus.publish(EpochBegin(epoch=1))
        bus.publish(PhaseBegin(phase=PassPhase.TRAIN, epoch=1))
        values = []
        for index in range(1, 1001):
            clock.now_s = index * 0.001  # 1 s of steps: at most 10 refreshes
            value = CountingValue(0.25)
            values.append(value)
            bus.publish(step(PassPhase.TRAIN, 1, index, loss=value))
        progress.detach()
        assert 9 <= sum(v.reads for v in values) <= 10

    def test_progress_bar_off_keeps_a_counter(self) -> None:
        """With progress_bar False, the terminal line shows the count but draws no bar."""
        out = Terminal()
        clock = ManualClock()
        bus = attached(TqdmProgress(file=out, coloring=False, progress_bar=False, clock=clock))
        bus.publish(train_begin())
        bus.publish(EpochBegin(epoch=1))
        run_pass(bus, PassPhase.TRAIN, 1, 4, clock, dt_s=0.2)
        text = out.getvalue()
        assert "3/4" in text
        assert "|" not in text

    def test_unknown_total(self) -> None:
        """With an unknown total the bar counts steps without a total."""
        out = Terminal()
        clock = ManualClock()
        bus = attached(TqdmProgress(file=out, coloring=False, clock=clock))
        bus.publish(train_begin(steps=None, valid_steps=None))
        bus.publish(EpochBegin(epoch=1))
        run_pass(bus, PassPhase.TRAIN, 1, 3, clock, dt_s=0.2)
        text = out.getvalue()
        assert "None" not in text
        assert "3step" in text

    def test_pass_without_phase_begin(self) -> None:
        """Step records with no PhaseBegin before them still get a bar."""
        out = Terminal()
        clock = ManualClock()
        progress = TqdmProgress(file=out, coloring=False, clock=clock)
        bus = attached(progress)
        bus.publish(train_begin())
        bus.publish(EpochBegin(epoch=1))
        for index in (1, 2, 3):
            clock.now_s += 0.2
            bus.publish(step(PassPhase.TRAIN, 1, index))
        progress.detach()
        assert "Epoch: 1/5" in out.getvalue()
        assert "3/4" in out.getvalue()

    def test_detach_clears_an_open_bar(self) -> None:
        """Detaching in the middle of a pass (an exception in training) clears its bar."""
        out = Terminal()
        progress = TqdmProgress(file=out, coloring=False)
        bus = attached(progress)
        bus.publish(train_begin())
        bus.publish(EpochBegin(epoch=1))
        bus.publish(PhaseBegin(phase=PassPhase.TRAIN, epoch=1))
        progress.detach()
        cleared = out.getvalue().rsplit("\r", 2)
        assert "0/4" in cleared[0]
        assert cleared[1].strip() == ""
        assert cleared[2] == ""


class TestTqdmProgressAttachable:
    """Subscribing and unsubscribing."""

    def test_is_attachable(self) -> None:
        """TqdmProgress implements the Attachable port."""
        assert isinstance(TqdmProgress(), Attachable)

    def test_does_not_ask_for_step_begin(self) -> None:
        """It does not subscribe to StepBegin, so publishers can skip building those."""
        bus = attached(TqdmProgress(file=io.StringIO()))
        assert bus.has_subscribers(StepRecord)
        assert not bus.has_subscribers(StepBegin)

    def test_detach_stops_output(self) -> None:
        """After detach, records print nothing."""
        out = io.StringIO()
        progress = TqdmProgress(file=out)
        bus = attached(progress)
        progress.detach()
        bus.publish(train_begin())
        run_epoch(bus)
        assert out.getvalue() == ""
        assert not bus.has_subscribers(StepRecord)

    def test_writes_to_stdout_by_default(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without a file it writes to sys.stdout as it is when attached."""
        bus = attached(TqdmProgress())
        bus.publish(train_begin())
        run_epoch(bus)
        assert capsys.readouterr().out == SUMMARY + "\n"
        assert sys.stdout is not None

    def test_rejects_negative_interval(self) -> None:
        """A negative interval raises ValueError."""
        with pytest.raises(ValueError, match="min_interval_s"):
            TqdmProgress(min_interval_s=-1.0)


F1_LOGS = {
    "epoch": 1, "time": 0.8, "loss": 0.342114, "acc": 89.34375, "fscore_macro": 0.891234,
    "fscore_micro": 0.893437, "val_loss": 0.384967, "val_acc": 88.25,
    "val_fscore_macro": 0.879876, "val_fscore_micro": 0.8825,
}  # fmt: skip


class TestTqdmProgressTotals:
    """Step totals of stand-alone evaluations."""

    def test_stand_alone_test_steps_show_their_total(self) -> None:
        """With the evaluation's params, a plain progress line reads 'Test step 3/32'."""
        out = io.StringIO()
        clock = ManualClock()
        bus = attached(TqdmProgress(file=out, params={"steps": 32}, clock=clock,
                                    min_interval_s=1.0))  # fmt: skip
        bus.publish(PhaseBegin(phase=PassPhase.TEST, epoch=0))
        for index in (1, 2, 3):
            clock.now_s += 0.6
            bus.publish(step(PassPhase.TEST, 0, index))
        assert progress_lines(out.getvalue()) == [
            "Test step 2/32 test_loss: 0.500000 test_acc: 80.000000"
        ]

    def test_evaluation_after_training_does_not_reuse_training_totals(self) -> None:
        """After TrainEnd, a test pass's total is not the training pass's step count."""
        out = io.StringIO()
        clock = ManualClock()
        bus = attached(TqdmProgress(file=out, clock=clock, min_interval_s=1.0))
        bus.publish(train_begin(epochs=1, steps=4))
        run_epoch(bus)
        bus.publish(TrainEnd(last_epoch=1, stopped=False, logs=LOGS))
        bus.publish(PhaseBegin(phase=PassPhase.TEST, epoch=0))
        clock.now_s += 2.0
        bus.publish(step(PassPhase.TEST, 0, 7))
        assert progress_lines(out.getvalue())[-1].startswith("Test step 7 ")

    def test_stand_alone_terminal_bar_has_the_total(self) -> None:
        """On a terminal the stand-alone test bar shows n/total."""
        out = Terminal()
        clock = ManualClock()
        bus = attached(TqdmProgress(file=out, params={"steps": 32}, coloring=False, clock=clock))
        bus.publish(PhaseBegin(phase=PassPhase.TEST, epoch=0))
        clock.now_s += 1.0
        bus.publish(step(PassPhase.TEST, 0, 5))
        assert "5/32" in out.getvalue()


class TestTqdmProgressLineWidth:
    """Summary lines wider than the screen."""

    def test_long_summary_breaks_at_metric_boundaries(self) -> None:
        """With line_width=100, an F1 summary becomes lines of at most 100 columns, the
        validation values starting an indented line, and no value is lost or split."""
        out = io.StringIO()
        bus = attached(TqdmProgress(file=out, line_width=100))
        bus.publish(train_begin(epochs=5))
        run_epoch(bus, logs=F1_LOGS)
        summary = [line for line in lines(out.getvalue()) if " step " not in line]
        assert len(summary) >= 2
        assert all(len(line) <= 100 for line in summary), summary
        assert summary[0].startswith("Epoch: 1/5 Train steps: 4 Val steps: 2 0.80s loss: ")
        assert any(line.startswith("    val_loss: 0.384967") for line in summary)
        one_line = TqdmProgress(file=io.StringIO())
        flat = " ".join(line.strip() for line in summary)
        bus2 = attached(one_line)
        bus2.publish(train_begin(epochs=5))
        run_epoch(bus2, logs=F1_LOGS)
        assert flat == lines(one_line._file.getvalue())[-1]  # type: ignore[attr-defined]

    def test_log_files_keep_one_line_per_epoch(self) -> None:
        """Not a terminal and no line_width: the summary stays on one line however long."""
        out = io.StringIO()
        bus = attached(TqdmProgress(file=out))
        bus.publish(train_begin(epochs=5))
        run_epoch(bus, logs=F1_LOGS)
        summary = lines(out.getvalue())
        assert len(summary) == 1 and len(summary[0]) > 160

    def test_terminal_width_is_followed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """On an 80-column terminal the summary lines fit in 80 columns (colours excluded)."""
        monkeypatch.setenv("COLUMNS", "80")
        out = Terminal()
        bus = attached(TqdmProgress(file=out))
        bus.publish(train_begin(epochs=5))
        run_epoch(bus, logs=F1_LOGS)
        text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())
        summary = [line for line in text.splitlines() if "loss:" in line and "\r" not in line]
        assert summary and all(len(line) <= 80 for line in summary), summary

    def test_too_narrow_width_is_refused(self) -> None:
        """A line_width under 40 columns raises ValueError naming the value."""
        with pytest.raises(ValueError, match="line_width must be at least 40 columns, got 20"):
            TqdmProgress(line_width=20)
