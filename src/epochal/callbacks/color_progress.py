"""Poutyne's progress-line formatter: :class:`ColorProgress`.

It builds the text lines Poutyne's progression display prints (``Epoch: 1/5 Step: 3/10 ...``),
with optional ANSI colours, and writes them: a step line is rewritten in place with ``\\r``;
an epoch or pass summary ends the line. The colour names are colorama's ``Fore`` names
(``'MAGENTA'``, ``'LIGHTBLUE_EX'``, ...); epochal writes the ANSI codes itself, so colorama is
not needed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from epochal.callbacks.progress_bar import ProgressBar
from epochal.exceptions import ConfigurationError

__all__ = ["ANSI_COLORS", "DEFAULT_COLOR_SETTINGS", "ColorProgress", "format_duration"]

_BASE = {"BLACK": 30, "RED": 31, "GREEN": 32, "YELLOW": 33, "BLUE": 34, "MAGENTA": 35,
         "CYAN": 36, "WHITE": 37}

#: colorama's ``Fore`` colour names and their ANSI escape sequences.
ANSI_COLORS: dict[str, str] = {
    **{name: f"\x1b[{code}m" for name, code in _BASE.items()},
    **{f"LIGHT{name}_EX": f"\x1b[{code + 60}m" for name, code in _BASE.items()},
    "RESET": "\x1b[39m",
}
_RESET_ALL = "\x1b[0m"

#: Poutyne's default colour of each part of the line.
DEFAULT_COLOR_SETTINGS: dict[str, str] = {
    "text_color": "MAGENTA",
    "ratio_color": "CYAN",
    "metric_value_color": "LIGHTBLUE_EX",
    "time_color": "GREEN",
    "progress_bar_color": "MAGENTA",
}


def format_duration(seconds: float) -> str:
    """A duration as Poutyne prints it: ``'1d2h3m4.50s'``, leading zero units left out
    (``'3m0.25s'``, ``'0.10s'``).

    Args:
        seconds: Non-negative duration, in seconds.

    Returns:
        The text.
    """
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, rest = divmod(rest, 60)
    text = ""
    if days > 0:
        text += f"{int(days)}d"
    if days > 0 or hours > 0:
        text += f"{int(hours)}h"
    if days > 0 or hours > 0 or minutes > 0:
        text += f"{int(minutes)}m"
    return text + f"{rest:.2f}s"


def _color_settings(coloring: Any) -> dict[str, str] | None:
    if isinstance(coloring, bool):
        return dict(DEFAULT_COLOR_SETTINGS) if coloring else None
    if not isinstance(coloring, Mapping):
        raise ConfigurationError(
            f"coloring must be True, False or a dict of colours; got {coloring!r}."
        )
    unknown = sorted(set(coloring) - set(DEFAULT_COLOR_SETTINGS))
    if unknown:
        raise ConfigurationError(
            f"coloring has unknown key(s) {unknown}; the parts that can be coloured are "
            f"{sorted(DEFAULT_COLOR_SETTINGS)}."
        )
    settings = {**DEFAULT_COLOR_SETTINGS, **coloring}
    bad = {k: v for k, v in settings.items() if v not in ANSI_COLORS}
    if bad:
        raise ConfigurationError(
            f"coloring has unknown colour(s) {bad}; colours are colorama's Fore names: "
            f"{', '.join(sorted(ANSI_COLORS))}."
        )
    return settings


class ColorProgress:
    """Formats and prints the progress lines of training, evaluation and prediction, as
    Poutyne's progression display does.

    A step line (``on_*_batch_end``) is written after a ``\\r`` and padded to cover the
    previous one; a summary (``on_epoch_end``, ``on_test_end``, ``on_predict_end``,
    ``on_phase_end``) ends the line. In a Jupyter notebook step lines are written at most
    every :attr:`JUPYTER_PRINT_RATE` seconds. ``metrics_str`` arguments are
    ``'name: value, name: value'`` texts.

    Args:
        coloring: True for Poutyne's default colours, False for none, or a dict giving the
            colour (a colorama ``Fore`` name) of some of ``text_color``, ``ratio_color``,
            ``metric_value_color``, ``time_color`` and ``progress_bar_color``.
        file: Where to write; None for the current ``sys.stdout``.

    Attributes:
        coloring_enabled: Whether colours are written.
        text_color, ratio_color, metric_value_color, time_color, progress_bar_color: The ANSI
            sequences used ('' without colours).
        progress_bar: Whether a step bar is shown (see :meth:`set_progress_bar`).
        steps_progress_bar: The :class:`~epochal.ProgressBar`, or None.

    Raises:
        ConfigurationError: ``coloring`` is not a bool or a dict, or has an unknown key or
            colour.
    """

    JUPYTER_PRINT_RATE = 0.1

    def __init__(self, coloring: bool | Mapping[str, str], *, file: TextIO | None = None) -> None:
        settings = _color_settings(coloring)
        self.coloring_enabled = settings is not None
        self.style_reset = settings is not None
        codes = {k: ANSI_COLORS[v] for k, v in settings.items()} if settings else {}
        self.text_color = codes.get("text_color", "")
        self.ratio_color = codes.get("ratio_color", "")
        self.metric_value_color = codes.get("metric_value_color", "")
        self.time_color = codes.get("time_color", "")
        self.progress_bar_color = codes.get("progress_bar_color", "")
        self.progress_bar = False
        self.steps_progress_bar: ProgressBar | None = None
        self.formatted_text = "\r"
        self.epoch_formatted_text = "\r"
        self.bar_format = (f"{self.text_color}{{percentage}} |{self.progress_bar_color}{{bar}}"
                           f"{self.text_color}|")
        self._file = file
        self._last_print: float | None = None
        self._previous_length = 0
        from epochal.utils import is_in_jupyter_notebook

        self._jupyter = is_in_jupyter_notebook()

    # ------------------------------------------------------------------ pass boundaries

    def on_valid_begin(self) -> None:
        """Restart the step bar for the validation pass."""
        self._restart_bar()

    def on_test_begin(self) -> None:
        """Restart the step bar for the test pass."""
        self._restart_bar()

    def on_predict_begin(self) -> None:
        """Restart the step bar for the prediction pass."""
        self._restart_bar()

    def on_epoch_begin(self, epoch_number: int, epochs: int) -> None:
        """Restart the step bar and start the lines of epoch ``epoch_number`` of ``epochs``
        (``'Epoch: 3/10 '``, the number padded to the width of ``epochs``)."""
        self._restart_bar()
        width = len(str(epochs))
        self.epoch_formatted_text = (f"\r{self.text_color}Epoch: {self.ratio_color}"
                                     f"{epoch_number:{width}d}/{epochs:d} ")

    def set_progress_bar(self, number_steps_per_epoch: int) -> None:
        """Show a :class:`~epochal.ProgressBar` of ``number_steps_per_epoch`` steps in the
        step lines."""
        self.steps_progress_bar = ProgressBar(number_steps_per_epoch, bar_format=self.bar_format)
        self.progress_bar = True

    def close_progress_bar(self) -> None:
        """Stop showing the step bar."""
        self.steps_progress_bar = None
        self.progress_bar = False

    def _restart_bar(self) -> None:
        if self.steps_progress_bar is not None:
            self.steps_progress_bar.reset()

    # ------------------------------------------------------------------ step lines

    def on_train_batch_end(self, *, remaining_time: float, batch_number: int, metrics_str: str,
                           steps: int | None = None, do_print: bool = True) -> None:
        """Write the step line of a training batch: epoch, step (of ``steps``), the bar,
        the ETA (``remaining_time`` seconds; per-step time when ``steps`` is None) and the
        metrics."""
        self._step_line(self.epoch_formatted_text, remaining_time, batch_number, metrics_str,
                        steps, do_print)

    def on_valid_batch_end(self, *, remaining_time: float, batch_number: int, metrics_str: str,
                           steps: int | None = None, do_print: bool = True) -> None:
        """Write the step line of a validation batch (as :meth:`on_train_batch_end`)."""
        self._step_line(self.epoch_formatted_text, remaining_time, batch_number, metrics_str,
                        steps, do_print)

    def on_test_batch_end(self, *, remaining_time: float, batch_number: int, metrics_str: str,
                          steps: int | None = None, do_print: bool = True) -> None:
        """Write the step line of a test batch (no epoch part)."""
        self._step_line(self.formatted_text, remaining_time, batch_number, metrics_str, steps,
                        do_print)

    def on_predict_batch_end(self, *, remaining_time: float, batch_number: int,
                             metrics_str: str, steps: int | None = None,
                             do_print: bool = True) -> None:
        """Write the step line of a prediction batch (no epoch part)."""
        self._step_line(self.formatted_text, remaining_time, batch_number, metrics_str, steps,
                        do_print)

    def _step_line(self, head: str, remaining_time: float, batch_number: int, metrics_str: str,
                   steps: int | None, do_print: bool) -> None:
        line = head + self._step(batch_number, steps)
        if self.progress_bar and self.steps_progress_bar is not None:
            self.steps_progress_bar.update()
            line += str(self.steps_progress_bar)
        if steps is None:
            line += f"{self.time_color}{format_duration(remaining_time)}/step "
        else:
            line += f"{self.text_color}ETA: {self.time_color}{format_duration(remaining_time)} "
        if metrics_str != "":
            line += self._metrics(metrics_str)
        if self.style_reset and not self._jupyter:
            line += _RESET_ALL
        if do_print:
            self._rewrite(line)

    # ------------------------------------------------------------------ summaries

    def on_epoch_end(self, total_time: float, train_last_steps: int,
                     valid_last_steps: int | None, metrics_str: str) -> None:
        """End the epoch's line: epoch, ``Train steps``, ``Val steps`` (when not None), the
        epoch's duration and the metrics."""
        line = self.epoch_formatted_text + self._step(train_last_steps, train_last_steps,
                                                      prefix="train ", suffix="s", ratio=False)
        if valid_last_steps is not None:
            line += self._step(valid_last_steps, valid_last_steps, prefix="val ", suffix="s",
                               ratio=False)
        line += f"{self.time_color}{format_duration(total_time)} "
        if metrics_str != "":
            line += self._metrics(metrics_str)
        self._finish(line)

    def on_test_end(self, total_time: float, steps: int, metrics_str: str) -> None:
        """End the test pass's line (``Test steps: ...``)."""
        self.on_phase_end(total_time, steps, metrics_str, prefix="Test ")

    def on_predict_end(self, total_time: float, steps: int, metrics_str: str) -> None:
        """End the prediction pass's line (``Prediction steps: ...``)."""
        self.on_phase_end(total_time, steps, metrics_str, prefix="Prediction ")

    def on_phase_end(self, total_time: float, steps: int, metrics_str: str,
                     prefix: str = "") -> None:
        """End a pass's line: ``<prefix>steps``, the duration and the metrics.

        Args:
            total_time: The pass's duration, in seconds.
            steps: Steps done.
            metrics_str: ``'name: value, ...'`` or ''.
            prefix: Text before ``steps`` (``'Test '``).
        """
        line = self.formatted_text + self._step(steps, steps, prefix=prefix, suffix="s",
                                                ratio=False)
        line += f"{self.time_color}{format_duration(total_time)} "
        if metrics_str != "":
            line += self._metrics(metrics_str)
        self._finish(line)

    # ------------------------------------------------------------------ text parts

    def _step(self, batch_number: int, steps: int | None, *, prefix: str = "",
              suffix: str = "", ratio: bool = True) -> str:
        label = f"{prefix}step{suffix}".capitalize()
        if steps is None:
            return f"{self.text_color}{label}: {self.ratio_color}{batch_number:d} "
        of = f"/{steps:d}" if ratio else ""
        return f"{self.text_color}{label}: {self.ratio_color}{batch_number:{len(str(steps))}d}{of} "

    def _metrics(self, metrics_str: str) -> str:
        parts = []
        for item in metrics_str.split(","):
            name, _, value = item.partition(":")
            parts.append(f"{self.text_color}{name}:{self.metric_value_color}{value}")
        return "".join(parts)

    # ------------------------------------------------------------------ output

    @property
    def file(self) -> TextIO:
        """Where lines are written (``sys.stdout`` unless a file was given)."""
        return self._file if self._file is not None else sys.stdout

    def _padded(self, line: str) -> str:
        length = len(line)
        if length < self._previous_length:
            line = line.ljust(self._previous_length)
        self._previous_length = length
        return line

    def _rewrite(self, line: str) -> None:
        if self._jupyter:
            now = time.time()
            if self._last_print is not None and now - self._last_print < self.JUPYTER_PRINT_RATE:
                return
            self._last_print = now
        self.file.write(self._padded(line))
        self.file.flush()

    def _finish(self, line: str) -> None:
        if self.style_reset:
            line += _RESET_ALL
        self.file.write(self._padded(line) + "\n")
        self.file.flush()
        self._last_print = None
        self._previous_length = 0
