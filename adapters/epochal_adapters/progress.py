"""Progress display on the record bus: tqdm bars on a terminal, sparse plain lines elsewhere.

On a terminal (``file.isatty()`` true) each pass (training, validation, test) gets a tqdm bar
with the step count and the latest batch's loss and metrics; at the end of an epoch the bar is
cleared and one summary line is printed, in Poutyne's format::

    Epoch: 1/5 Train steps: 1500 Val steps: 375 12.31s loss: 0.502692 acc: 84.266663 val_loss: 0.172589 val_acc: 94.750000

When the file is not a terminal (a CI log, a pipe, a file) there is no bar, no carriage
return and no colour: at most one plain line every ``min_interval_s`` seconds
(``Epoch 1/5 step 750/1500 loss: 0.520000 acc: 83.100000``) and the summary line.

A summary wider than the terminal (many metrics, e.g. F1 scores next to accuracy) is broken
at metric boundaries onto indented continuation lines instead of letting the terminal wrap it
mid-number; the validation values start a line of their own.

Reading a step's tensor values is a host sync on an accelerator, so it happens at most once per
refresh interval. The step records are subscribed with a ``due`` check (one clock read and one
comparison), so the training driver builds no step record between two refreshes.

Example:
    >>> import io
    >>> from epochal.bus import RecordBus
    >>> from epochal.core.records import EpochBegin, EpochEnd, TrainBegin
    >>> out = io.StringIO()
    >>> bus = RecordBus()
    >>> progress = TqdmProgress(file=out)
    >>> progress.attach(bus)
    >>> _ = bus.publish(TrainBegin(params={"epochs": 2, "steps": None, "valid_steps": None}))
    >>> _ = bus.publish(EpochBegin(epoch=1))
    >>> _ = bus.publish(EpochEnd(epoch=1, logs={"epoch": 1, "time": 1.5, "loss": 0.25}))
    >>> print(out.getvalue(), end="")
    Epoch: 1/2 1.50s loss: 0.250000
    >>> progress.detach()
"""

from __future__ import annotations

import math
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import attrs
from tqdm import tqdm

from epochal.bus import RecordBus, Subscription
from epochal.core.records import (
    EpochBegin,
    EpochEnd,
    EpochRecord,
    PassPhase,
    PhaseBegin,
    StepRecord,
    TrainBegin,
    TrainEnd,
    to_float,
)

__all__ = ["DEFAULT_COLORS", "TqdmProgress"]

#: Poutyne's default colour settings (``coloring=True``); a ``coloring`` dict overrides some.
DEFAULT_COLORS: Mapping[str, str] = {
    "text_color": "MAGENTA",
    "ratio_color": "CYAN",
    "metric_value_color": "LIGHTBLUE_EX",
    "time_color": "GREEN",
    "progress_bar_color": "LIGHTGREEN_EX",
}

# colorama's names -> (ANSI SGR foreground code, xterm RGB for tqdm's bar colour).
_COLORS: Mapping[str, tuple[int, str]] = {
    "BLACK": (30, "#000000"),
    "RED": (31, "#cd0000"),
    "GREEN": (32, "#00cd00"),
    "YELLOW": (33, "#cdcd00"),
    "BLUE": (34, "#0000ee"),
    "MAGENTA": (35, "#cd00cd"),
    "CYAN": (36, "#00cdcd"),
    "WHITE": (37, "#e5e5e5"),
    "LIGHTBLACK_EX": (90, "#7f7f7f"),
    "LIGHTRED_EX": (91, "#ff0000"),
    "LIGHTGREEN_EX": (92, "#00ff00"),
    "LIGHTYELLOW_EX": (93, "#ffff00"),
    "LIGHTBLUE_EX": (94, "#5c5cff"),
    "LIGHTMAGENTA_EX": (95, "#ff00ff"),
    "LIGHTCYAN_EX": (96, "#00ffff"),
    "LIGHTWHITE_EX": (97, "#ffffff"),
}

_RESET = "\x1b[0m"

_PHASE_LABELS: Mapping[PassPhase, str] = {
    PassPhase.TRAIN: "Train",
    PassPhase.VALID: "Val",
    PassPhase.TEST: "Test",
    PassPhase.PREDICT: "Predict",
}

# Keys of the epoch logs that the summary line shows apart (or not at all).
_SUMMARY_SKIP = frozenset({"epoch", "time"})

# ANSI SGR sequences, which take no columns on a terminal.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# Indentation of a summary's continuation lines.
_CONTINUATION = "    "


def _visible_width(text: str) -> int:
    return len(_ANSI.sub("", text))


@attrs.frozen
class _Palette:
    """ANSI escape sequences for each part of a line; empty strings when colouring is off."""

    text: str = ""
    ratio: str = ""
    value: str = ""
    time: str = ""
    reset: str = ""
    bar: str | None = None  # tqdm ``colour`` of the bar


def _palette(coloring: bool | Mapping[str, str]) -> _Palette:
    if coloring is False:
        return _Palette()
    settings = dict(DEFAULT_COLORS)
    if not isinstance(coloring, bool):
        unknown = sorted(set(coloring) - set(DEFAULT_COLORS))
        if unknown:
            raise ValueError(
                f"TqdmProgress got unknown coloring keys {unknown}; expected some of "
                f"{sorted(DEFAULT_COLORS)}. Pass a dict with those keys, True or False."
            )
        settings.update(coloring)
    codes: dict[str, tuple[int, str]] = {}
    for key, name in settings.items():
        color = _COLORS.get(str(name).upper())
        if color is None:
            raise ValueError(
                f"TqdmProgress got an unknown colour {name!r} for {key!r}; expected one of "
                f"{', '.join(_COLORS)} (colorama's names)."
            )
        codes[key] = color
    return _Palette(
        text=f"\x1b[{codes['text_color'][0]}m",
        ratio=f"\x1b[{codes['ratio_color'][0]}m",
        value=f"\x1b[{codes['metric_value_color'][0]}m",
        time=f"\x1b[{codes['time_color'][0]}m",
        reset=_RESET,
        bar=codes["progress_bar_color"][1],
    )


def _is_terminal(file: Any) -> bool:
    isatty = getattr(file, "isatty", None)
    if isatty is None:
        return False
    try:
        return bool(isatty())
    except (ValueError, OSError):  # closed or detached stream
        return False


def _scalar(value: Any) -> float | None:
    """A float from a float or a one-element tensor; None for anything else."""
    if value is None or isinstance(value, str):
        return None
    try:
        return to_float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


class TqdmProgress:
    """Shows training progress: a tqdm bar per pass on a terminal, plain lines otherwise.

    Implements :class:`epochal.ports.Attachable`. Subscribes to ``TrainBegin``, ``EpochBegin``,
    ``PhaseBegin``, ``StepRecord``, ``EpochRecord``, ``EpochEnd`` and ``TrainEnd`` (never to
    ``StepBegin``, so the publisher can skip building those).

    Terminal (``file.isatty()`` true): a tqdm bar per pass showing ``step/total`` (just the
    count when the total is unknown) and the latest batch's loss and metrics, refreshed at most
    every ``refresh_interval_s``; the bar is cleared at the end of the pass. Not a terminal:
    no bar, no ``\\r``, no colour; at most one plain line per ``min_interval_s``.

    At each epoch end, one summary line in Poutyne's format: the epoch, the step counts of the
    passes that ran, ``logs['time']`` in seconds (2 decimals), then every other key of
    ``EpochEnd.logs`` in order with 6 decimals. A stand-alone evaluation (an ``EpochRecord``
    outside an epoch) prints ``Test steps: 313 1.21s test_loss: 0.050000 test_acc: 98.100000``.

    Args:
        coloring: ANSI colours on a terminal: True for Poutyne's defaults
            (:data:`DEFAULT_COLORS`), False for none, or a dict overriding some of
            ``text_color``, ``ratio_color``, ``metric_value_color``, ``time_color``,
            ``progress_bar_color`` with colorama's colour names (``"MAGENTA"``,
            ``"LIGHTBLUE_EX"``, ...). Never used when the file is not a terminal.
        progress_bar: On a terminal, draw the bar; False keeps tqdm's one-line counter
            (``Epoch: 1/5: 750/1500 50% [00:05<00:05]``) without the bar.
        file: Where to write; ``sys.stdout`` (read at ``attach``) when None.
        min_interval_s: Not a terminal: least time between two plain progress lines, seconds.
        refresh_interval_s: Terminal: least time between two bar refreshes (each one reads
            the step's tensors, a host sync on an accelerator), seconds.
        line_width: Widest summary line, in columns; a longer one is broken at metric
            boundaries onto lines indented by four spaces, the validation values starting a
            new line. None: the terminal's width on a terminal (read at each summary), no
            limit otherwise (one line per epoch in logs, as Poutyne writes them).
        params: The run's parameters when no ``TrainBegin`` is published, as for a
            stand-alone evaluation: ``steps`` is then the expected number of steps of the pass
            (``Test step 31/32``). A ``TrainBegin`` replaces them.
        clock: Monotonic seconds; injected in tests.

    Raises:
        ValueError: ``coloring`` names an unknown key or colour, an interval is negative, or
            ``line_width`` is below 40 columns.
    """

    def __init__(
        self,
        *,
        coloring: bool | Mapping[str, str] = True,
        progress_bar: bool = True,
        file: TextIO | None = None,
        min_interval_s: float = 5.0,
        refresh_interval_s: float = 0.1,
        line_width: int | None = None,
        params: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_interval_s < 0 or refresh_interval_s < 0:
            raise ValueError(
                f"TqdmProgress intervals must be >= 0 seconds, got min_interval_s="
                f"{min_interval_s!r}, refresh_interval_s={refresh_interval_s!r}."
            )
        if line_width is not None and line_width < 40:
            raise ValueError(
                f"TqdmProgress line_width must be at least 40 columns, got {line_width!r}; "
                "pass None to follow the terminal's width."
            )
        self.line_width = line_width
        self._initial_params: Mapping[str, Any] = dict(params or {})
        self._colors = _palette(coloring)
        self.progress_bar = progress_bar
        self.min_interval_s = float(min_interval_s)
        self.refresh_interval_s = float(refresh_interval_s)
        self._file_option = file
        self._clock = clock
        self._subscriptions: list[Subscription] = []
        # Set at attach().
        self._file: TextIO = file if file is not None else sys.stdout
        self._terminal = False
        self._palette = _Palette()
        self._interval_s = self.min_interval_s
        # Training state.
        self._params: Mapping[str, Any] = self._initial_params
        self._epoch: int | None = None
        self._pass_steps: dict[PassPhase, int] = {}
        # Current pass.
        self._phase: PassPhase | None = None
        self._total: int | None = None
        self._bar: Any = None
        self._next_s = math.inf

    # -- Attachable ---------------------------------------------------------------------------

    def attach(self, bus: RecordBus) -> None:
        """Subscribe to ``bus``; attaching again first detaches from the previous bus."""
        self.detach()
        self._file = self._file_option if self._file_option is not None else sys.stdout
        self._terminal = _is_terminal(self._file)
        self._palette = self._colors if self._terminal else _Palette()
        self._interval_s = self.refresh_interval_s if self._terminal else self.min_interval_s
        handlers: list[tuple[type, Callable[[Any], None]]] = [
            (TrainBegin, self._on_train_begin),
            (EpochBegin, self._on_epoch_begin),
            (PhaseBegin, self._on_phase_begin),
            (EpochRecord, self._on_epoch_record),
            (EpochEnd, self._on_epoch_end),
            (TrainEnd, self._on_train_end),
        ]
        self._subscriptions = [bus.subscribe(kind, handler) for kind, handler in handlers]
        # Sampling: the driver builds no step record between two refreshes.
        self._subscriptions.append(bus.subscribe(StepRecord, self._on_step, due=self._step_due))
        self._next_s = 0.0  # a step before any PhaseBegin starts its pass at once

    def detach(self) -> None:
        """Unsubscribe and clear any bar still shown. Calling it twice is harmless."""
        for subscription in self._subscriptions:
            subscription.cancel()
        self._subscriptions = []
        self._end_pass()
        self._params = self._initial_params
        self._epoch = None
        self._pass_steps = {}

    # -- handlers -----------------------------------------------------------------------------

    def _step_due(self) -> bool:
        """Whether a step record published now would be shown (its ``due`` on the bus)."""
        return self._clock() >= self._next_s

    def _on_step(self, record: StepRecord) -> None:
        # The hot path: one clock read and one comparison per step.
        now = self._clock()
        if now < self._next_s:
            return
        self._next_s = now + self._interval_s
        self._show_step(record)

    def _on_train_begin(self, record: TrainBegin) -> None:
        self._end_pass()
        self._params = record.params
        self._epoch = None

    def _on_epoch_begin(self, record: EpochBegin) -> None:
        self._end_pass()
        self._epoch = record.epoch
        self._pass_steps = {}

    def _on_phase_begin(self, record: PhaseBegin) -> None:
        self._begin_pass(record.phase)

    def _on_epoch_record(self, record: EpochRecord) -> None:
        self._end_pass()
        if self._epoch is not None:
            self._pass_steps[record.phase] = record.steps
            return
        # A stand-alone evaluation (no epoch running): one summary line for the pass.
        p = self._palette
        label = _PHASE_LABELS.get(record.phase, record.phase.value.capitalize())
        values: dict[str, Any] = dict(record.logs())
        if record.phase is PassPhase.PREDICT:
            values.pop(f"{record.phase.prefix}loss", None)
        head = f"{p.text}{label} steps: {p.ratio}{record.steps} {p.time}{record.duration_s:.2f}s"
        self._write_summary(head, values)

    def _on_epoch_end(self, record: EpochEnd) -> None:
        self._end_pass()
        p = self._palette
        parts = [f"{p.text}Epoch: {p.ratio}{self._epoch_ratio(record.epoch)} "]
        for phase in (PassPhase.TRAIN, PassPhase.VALID, PassPhase.TEST):
            steps = self._pass_steps.get(phase)
            if steps is not None:
                parts.append(f"{p.text}{_PHASE_LABELS[phase]} steps: {p.ratio}{steps} ")
        duration_s = _scalar(record.logs.get("time"))
        if duration_s is not None:
            parts.append(f"{p.time}{duration_s:.2f}s")
        values = {
            k: v
            for k, v in record.logs.items()
            if k not in _SUMMARY_SKIP and k != "lr" and not k.startswith("lr_group_")
        }
        self._write_summary("".join(parts).rstrip(), values)
        self._epoch = None
        self._pass_steps = {}

    def _on_train_end(self, record: TrainEnd) -> None:
        self._end_pass()
        self._params = self._initial_params  # a later evaluation is not this training's pass
        self._epoch = None
        self._pass_steps = {}

    # -- passes -------------------------------------------------------------------------------

    def _begin_pass(self, phase: PassPhase) -> None:
        self._end_pass()
        self._phase = phase
        self._total = self._expected_steps(phase)
        now = self._clock()
        if self._terminal:
            self._bar = self._new_bar()
            self._next_s = now + self.refresh_interval_s
        else:
            self._next_s = now + self.min_interval_s

    def _end_pass(self) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()
        self._phase = None
        self._next_s = math.inf if not self._subscriptions else 0.0

    def _expected_steps(self, phase: PassPhase) -> int | None:
        if self._epoch is None and phase in (PassPhase.TEST, PassPhase.PREDICT):
            key: str | None = "steps"  # a stand-alone evaluation: its own step count
        else:
            key = {PassPhase.TRAIN: "steps", PassPhase.VALID: "valid_steps"}.get(phase)
        total = self._params.get(key) if key is not None else None
        return int(total) if total is not None else None

    def _epoch_ratio(self, epoch: int) -> str:
        epochs = self._params.get("epochs")
        return f"{epoch}/{epochs}" if epochs is not None else f"{epoch}"

    def _bar_label(self, phase: PassPhase) -> str:
        """``Epoch: 1/5`` for training, ``Epoch: 1/5 Val`` for validation, ``Test`` alone."""
        label = _PHASE_LABELS.get(phase, phase.value.capitalize())
        if self._epoch is None:
            return label
        ratio = self._epoch_ratio(self._epoch)
        return f"Epoch: {ratio}" if phase is PassPhase.TRAIN else f"Epoch: {ratio} {label}"

    def _plain_label(self, phase: PassPhase) -> str:
        """``Epoch 1/5`` for training, ``Epoch 1/5 val`` for validation, ``Test`` alone."""
        label = _PHASE_LABELS.get(phase, phase.value.capitalize())
        if self._epoch is None:
            return label
        ratio = self._epoch_ratio(self._epoch)
        return f"Epoch {ratio}" if phase is PassPhase.TRAIN else f"Epoch {ratio} {label.lower()}"

    def _new_bar(self) -> Any:
        p = self._palette
        if self.progress_bar:
            bar_format = None
        elif self._total is not None:
            bar_format = (
                "{desc}: {n_fmt}/{total_fmt} {percentage:3.0f}% [{elapsed}<{remaining}{postfix}]"
            )
        else:
            bar_format = "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"
        return tqdm(
            total=self._total,
            desc=f"{p.text}{self._bar_label(self._phase or PassPhase.TRAIN)}{p.reset}",
            file=self._file,
            leave=False,
            dynamic_ncols=True,
            disable=False,
            colour=p.bar,
            bar_format=bar_format,
            unit="step",
        )

    def _show_step(self, record: StepRecord) -> None:
        """Refresh the display from ``record`` (reads its tensors: a host sync)."""
        if record.phase is not self._phase:
            # A pass without a PhaseBegin: start it now; a plain line waits for the interval.
            self._begin_pass(record.phase)
            if self._bar is None:
                return
        p = self._palette
        values: dict[str, Any] = {}
        prefix = record.phase.prefix
        if record.phase is not PassPhase.PREDICT:
            values[f"{prefix}loss"] = record.loss
        for key, value in record.metrics.items():
            values[f"{prefix}{key}"] = value
        metrics = self._metrics_text(values).lstrip()
        if self._bar is not None:
            self._bar.n = record.step
            self._bar.set_postfix_str(metrics + p.reset if metrics else "", refresh=False)
            self._bar.refresh()
            return
        count = f"{record.step}/{self._total}" if self._total is not None else f"{record.step}"
        self._write_line(f"{self._plain_label(record.phase)} step {count} {metrics}".rstrip())

    # -- text ---------------------------------------------------------------------------------

    def _metrics_text(self, values: Mapping[str, Any]) -> str:
        """`` loss: 0.502692 acc: 84.266663`` (leading space), coloured on a terminal."""
        p = self._palette
        parts = []
        for key, value in values.items():
            number = _scalar(value)
            if number is None:
                continue
            parts.append(f" {p.text}{key}:{p.value} {number:f}")
        return "".join(parts)

    def _summary_width(self) -> int | None:
        if self.line_width is not None:
            return self.line_width
        if not self._terminal:
            return None
        return max(shutil.get_terminal_size(fallback=(160, 24)).columns, 40)

    def _write_summary(self, head: str, values: Mapping[str, Any]) -> None:
        """Write ``head`` and the values as one line, or broken at value boundaries onto
        indented continuation lines when wider than the summary width."""
        p = self._palette
        items: list[tuple[str, bool]] = []  # (" key: value", starts the validation values)
        seen_valid = False
        for key, value in values.items():
            text = self._metrics_text({key: value})
            if not text:
                continue
            first_valid = key.startswith("val_") and not seen_valid
            seen_valid = seen_valid or key.startswith("val_")
            items.append((text, first_valid))
        width = self._summary_width()
        one_line = head + "".join(text for text, _ in items)
        if width is None or _visible_width(one_line) <= width:
            self._write_line(one_line.rstrip() + p.reset)
            return
        lines: list[str] = []
        current = head
        for text, first_valid in items:
            fits = _visible_width(current + text) <= width
            if (first_valid or not fits) and _visible_width(current.strip()) > 0:
                lines.append(current.rstrip() + p.reset)
                current = _CONTINUATION + text.lstrip()
            else:
                current += text
        lines.append(current.rstrip() + p.reset)
        for line in lines:
            self._write_line(line)

    def _write_line(self, line: str) -> None:
        self._file.write(line + "\n")
        flush = getattr(self._file, "flush", None)
        if flush is not None:
            flush()
