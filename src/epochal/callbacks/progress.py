"""Poutyne's display callbacks as plain text: ``ProgressionCallback`` (per step and per
epoch) and ``EpochProgressionCallback`` (one line per shown epoch).

They print through ``print`` to ``sys.stdout`` (or ``file``): on a terminal a step line is
rewritten in place (``\\r``); otherwise each shown step is a line. Pass ``verbose=False`` to
``fit`` when using them, so the model's own display is off. Colours are not drawn (the
``coloring`` argument is checked and kept for Poutyne compatibility); ``Model``'s own display
(``progress_options``) draws them.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TextIO

from epochal.callbacks.base import Callback
from epochal.exceptions import ConfigurationError

__all__ = ["EpochProgressionCallback", "ProgressionCallback"]

_COLOR_KEYS = frozenset({"text_color", "ratio_color", "metric_value_color", "time_color",
                         "progress_bar_color"})


def _check_coloring(coloring: Any) -> None:
    if isinstance(coloring, bool):
        return
    if isinstance(coloring, Mapping) and set(coloring) <= _COLOR_KEYS:
        return
    raise ConfigurationError(
        f"coloring must be True, False or a dict with some of {sorted(_COLOR_KEYS)}; got "
        f"{coloring!r}."
    )


def _check_every(name: str, value: Any) -> None:
    if value in ("all", "none") or (
        isinstance(value, int) and not isinstance(value, bool) and value >= 1
    ):
        return
    raise ConfigurationError(f"{name} must be 'all', 'none' or an int >= 1; got {value!r}.")


def _shown(every: Any, number: int) -> bool:
    return bool(every == "all" or (every != "none" and number % every == 0))


def _metrics_text(logs: Mapping[str, Any], keys: list[str]) -> str:
    return ", ".join(f"{k}: {float(logs[k]):f}" for k in keys if logs.get(k) is not None)


class _Printer(Callback):
    def __init__(self, coloring: Any, file: TextIO | None) -> None:
        super().__init__()
        _check_coloring(coloring)
        self.coloring = coloring
        self._file_option = file
        self.epochs = 0
        self.metrics: list[str] = []

    @property
    def file(self) -> TextIO:
        return self._file_option if self._file_option is not None else sys.stdout

    def _epoch_keys(self) -> list[str]:
        return self.metrics + [f"val_{k}" for k in self.metrics]

    def _epoch_line(self, epoch_number: int, logs: Mapping[str, Any]) -> str:
        digits = len(str(self.epochs))
        steps = [f"Train steps: {self.params.get('steps')}"]
        valid_steps = self.params.get("valid_steps")
        if valid_steps and any(k.startswith("val_") for k in logs):
            steps.append(f"Val steps: {valid_steps}")
        return (f"Epoch: {epoch_number:{digits}d}/{self.epochs:d} {' '.join(steps)} "
                f"{float(logs.get('time', 0.0)):.2f}s {_metrics_text(logs, self._epoch_keys())}")

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.epochs = int(self.params.get("epochs", 0) or 0)
        self.metrics = ["loss", *getattr(self.model, "metrics_names", [])]


class ProgressionCallback(_Printer):
    """Show the progress of each step (with an ETA) and a summary line per epoch, test and
    prediction.

    Step line: ``Epoch: e/E Step: b/S: ETA 12.34s loss: ..., acc: ...``. Epoch line:
    ``Epoch: e/E Train steps: S Val steps: V 5.21s loss: ..., val_loss: ...``. Test line:
    ``Test steps: S 1.21s test_loss: ...``; prediction: ``Prediction steps: S 0.50s``.

    The ETA is the mean step time times the steps left; by default step ``b`` weighs ``b``
    in the mean (newer steps count more), with ``equal_weights`` all weigh the same.

    Args:
        coloring: Accepted for Poutyne compatibility (True, False or a dict of colours).
        progress_bar: Accepted for Poutyne compatibility (no bar is drawn).
        equal_weights: Weigh every step time equally in the ETA.
        show_on_valid: Also show the validation steps.
        show_every_n_train_steps: ``'all'``, ``'none'`` or every how many training steps.
        show_every_n_valid_steps: The same for validation steps.
        show_every_n_test_steps: The same for test and prediction steps.
        file: Where to write (``sys.stdout`` when None).

    Raises:
        ConfigurationError: A ``show_every_n_*`` value or ``coloring`` is invalid.
    """

    def __init__(
        self,
        *,
        coloring: bool | Mapping[str, str] = True,
        progress_bar: bool = True,
        equal_weights: bool = False,
        show_on_valid: bool = True,
        show_every_n_train_steps: str | int = "all",
        show_every_n_valid_steps: str | int = "all",
        show_every_n_test_steps: str | int = "all",
        file: TextIO | None = None,
    ) -> None:
        super().__init__(coloring, file)
        for name, value in (("show_every_n_train_steps", show_every_n_train_steps),
                            ("show_every_n_valid_steps", show_every_n_valid_steps),
                            ("show_every_n_test_steps", show_every_n_test_steps)):
            _check_every(name, value)
        self.progress_bar = progress_bar
        self.equal_weights = equal_weights
        self.show_on_valid = show_on_valid
        self.show_every_n_train_steps = show_every_n_train_steps
        self.show_every_n_valid_steps = show_every_n_valid_steps
        self.show_every_n_test_steps = show_every_n_test_steps
        self.epoch_number = 0
        self._weighted = 0.0
        self._open_line = False

    def _terminal(self) -> bool:
        isatty = getattr(self.file, "isatty", None)
        return bool(callable(isatty) and isatty())

    def _eta(self, batch_number: int, logs: Mapping[str, Any], steps: int | None) -> str:
        step_time = float(logs.get("time", 0.0))
        if self.equal_weights:
            self._weighted += step_time
            rate = self._weighted / batch_number
        else:
            self._weighted += batch_number * step_time
            rate = self._weighted / (batch_number * (batch_number + 1) / 2)
        if steps is None:
            return f"{rate:.2f}s/step"
        return f"ETA {rate * max(steps - batch_number, 0):.2f}s"

    def _step(self, prefix: str, batch_number: int, logs: Mapping[str, Any],
              steps: int | None, every: Any, keys: list[str]) -> None:
        eta = self._eta(batch_number, logs, steps)
        if not _shown(every, batch_number):
            return
        total = f"/{steps}" if steps is not None else ""
        line = f"{prefix}Step: {batch_number}{total}: {eta} {_metrics_text(logs, keys)}"
        if self._terminal():
            print("\r" + line, end="", file=self.file, flush=True)
            self._open_line = True
        else:
            print(line, file=self.file)

    def _end(self, line: str) -> None:
        print(("\r" if self._open_line else "") + line, file=self.file, flush=True)
        self._open_line = False

    def _epoch_prefix(self) -> str:
        return f"Epoch: {self.epoch_number:{len(str(self.epochs))}d}/{self.epochs:d} "

    def on_epoch_begin(self, epoch_number: int, logs: dict[str, Any]) -> None:
        self.epoch_number = epoch_number
        self._weighted = 0.0

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        self._step(self._epoch_prefix(), batch_number, logs, self.params.get("steps"),
                   self.show_every_n_train_steps, self.metrics)

    def on_valid_begin(self, logs: dict[str, Any]) -> None:
        self._weighted = 0.0

    def on_valid_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        if self.show_on_valid:
            self._step(self._epoch_prefix() + "Validation ", batch_number, logs,
                       self.params.get("valid_steps"), self.show_every_n_valid_steps,
                       self.metrics)

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        self._end(self._epoch_line(epoch_number, logs))

    def on_test_begin(self, logs: dict[str, Any]) -> None:
        self._weighted = 0.0
        self.metrics = ["loss", *getattr(self.model, "metrics_names", [])]

    def on_test_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        self._step("Test ", batch_number, logs, self.params.get("steps"),
                   self.show_every_n_test_steps, self.metrics)

    def on_test_end(self, logs: dict[str, Any]) -> None:
        keys = [k for k in logs if k.startswith("test_")]
        steps = self.params.get("steps")
        self._end(f"Test steps: {steps} {float(logs.get('time', 0.0)):.2f}s "
                  f"{_metrics_text(logs, keys)}".rstrip())

    def on_predict_begin(self, logs: dict[str, Any]) -> None:
        self._weighted = 0.0

    def on_predict_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        self._step("Prediction ", batch_number, logs, self.params.get("steps"),
                   self.show_every_n_test_steps, [])

    def on_predict_end(self, logs: dict[str, Any]) -> None:
        self._end(f"Prediction steps: {self.params.get('steps')} "
                  f"{float(logs.get('time', 0.0)):.2f}s")


class EpochProgressionCallback(_Printer):
    """Print one summary line per shown epoch (no step lines):
    ``Epoch: e/E Train steps: S Val steps: V 5.21s loss: ..., val_loss: ...``.

    Args:
        coloring: Accepted for Poutyne compatibility (True, False or a dict of colours).
        show_every_n_epochs: ``'all'``, ``'none'`` or every how many epochs.
        file: Where to write (``sys.stdout`` when None).

    Raises:
        ConfigurationError: ``show_every_n_epochs`` or ``coloring`` is invalid.
    """

    def __init__(
        self, *, coloring: bool | Mapping[str, str] = True,
        show_every_n_epochs: str | int = "all", file: TextIO | None = None,
    ) -> None:
        super().__init__(coloring, file)
        _check_every("show_every_n_epochs", show_every_n_epochs)
        self.show_every_n_epochs = show_every_n_epochs

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        if _shown(self.show_every_n_epochs, epoch_number):
            print(self._epoch_line(epoch_number, logs), file=self.file, flush=True)
