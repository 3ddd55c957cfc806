"""Poutyne's display callbacks: ``ProgressionCallback`` (a line per step, rewritten in place,
with a bar and an ETA, and a summary per epoch, test and prediction) and
``EpochProgressionCallback`` (one summary line per shown epoch).

Both print Poutyne's lines through :class:`~epochal.ColorProgress` (colours with
``coloring=True``, the default) to ``sys.stdout`` or ``file``. Pass ``verbose=False`` to
``fit`` when using them, so the model's own display is off.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from epochal.callbacks.base import Callback
from epochal.callbacks.color_progress import ColorProgress
from epochal.exceptions import ConfigurationError

__all__ = ["EpochProgressionCallback", "ProgressionCallback"]


def _check_every(name: str, value: Any) -> None:
    if value in ("all", "none") or (
        isinstance(value, int) and not isinstance(value, bool) and value >= 1
    ):
        return
    raise ConfigurationError(f"{name} must be 'all', 'none' or an int >= 1; got {value!r}.")


def _shown(every: Any, number: int) -> bool:
    return bool(every == "all" or (every != "none" and number % every == 0))


def _metrics_text(logs: Mapping[str, Any], metrics: list[str], prefixes: tuple[str, ...]) -> str:
    """``'loss: 0.500000, acc: 75.000000, val_loss: ...'``: every metric present in
    ``logs`` under each prefix in turn, values with ``:f`` (Poutyne's metrics text)."""
    parts = itertools.chain.from_iterable(
        (f"{prefix}{k}: {float(logs[prefix + k]):f}" for k in metrics
         if logs.get(prefix + k) is not None)
        for prefix in prefixes
    )
    return ", ".join(parts)


class ProgressionCallback(Callback):
    """Show each step's progress (step, bar, ETA, metrics), rewritten in place, and a
    summary line per epoch, test and prediction, as Poutyne's default display.

    Step line: ``Epoch: e/E Step: b/S  33.33% |███▍   | ETA: 1.20s loss: ..., acc: ...``.
    Epoch line: ``Epoch: e/E Train steps: S Val steps: V 5.21s loss: ..., val_loss: ...``.
    Test line: ``Test steps: S 1.21s test_loss: ...``; prediction:
    ``Prediction steps: S 0.50s``. Without a step count the step line shows the mean time per
    step instead of the ETA.

    The ETA is the mean step time times the steps left; by default step ``b`` weighs ``b``
    in the mean (newer steps count more), with ``equal_weights`` all weigh the same.

    Args:
        coloring: True for Poutyne's colours, False for none, or a dict of colours (see
            :class:`~epochal.ColorProgress`).
        progress_bar: Draw a bar of the pass's steps (when the step count is known).
        equal_weights: Weigh every step time equally in the ETA.
        show_on_valid: Also show the validation steps.
        show_every_n_train_steps: ``'all'``, ``'none'`` or every how many training steps.
        show_every_n_valid_steps: The same for validation steps.
        show_every_n_test_steps: The same for test and prediction steps.
        file: Where to write (``sys.stdout`` when None).

    Attributes:
        color_progress: The :class:`~epochal.ColorProgress` that formats and writes.

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
        super().__init__()
        for name, value in (("show_every_n_train_steps", show_every_n_train_steps),
                            ("show_every_n_valid_steps", show_every_n_valid_steps),
                            ("show_every_n_test_steps", show_every_n_test_steps)):
            _check_every(name, value)
        self.color_progress = ColorProgress(coloring, file=file)
        self.coloring = coloring
        self.progress_bar = progress_bar
        self.equal_weights = equal_weights
        self.show_on_valid = show_on_valid
        self.show_every_n_train_steps = show_every_n_train_steps
        self.show_every_n_valid_steps = show_every_n_valid_steps
        self.show_every_n_test_steps = show_every_n_test_steps
        self.metrics: list[str] = []
        self.epochs = 0
        self.epoch_number = 0
        self.steps: int | None = None
        self.last_step = 0
        self.train_last_step: int | None = None
        self.valid_last_step: int | None = None
        self._weighted = 0.0

    # ------------------------------------------------------------------ helpers

    def _count(self, key: str) -> int | None:
        value = self.params.get(key) if self.params else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def _start_pass(self, steps: int | None) -> None:
        self._weighted = 0.0
        self.steps = steps
        if self.progress_bar:
            if steps is not None:
                self.color_progress.set_progress_bar(steps)
            else:
                self.color_progress.close_progress_bar()

    def _rate(self, batch_number: int, logs: Mapping[str, Any]) -> float:
        step_time = float(logs.get("time", 0.0))
        if self.equal_weights:
            self._weighted += step_time
            return self._weighted / batch_number
        self._weighted += batch_number * step_time
        return self._weighted / (batch_number * (batch_number + 1) / 2)

    def _batch_line(self, write: Callable[..., None], batch_number: int,
                    logs: Mapping[str, Any], every: Any) -> None:
        rate = self._rate(batch_number, logs)
        text = _metrics_text(logs, self.metrics, ("", "val_", "test_"))
        shown = _shown(every, batch_number)
        if self.steps is not None:
            write(remaining_time=rate * (self.steps - batch_number), batch_number=batch_number,
                  metrics_str=text, steps=self.steps, do_print=shown)
        else:
            write(remaining_time=rate, batch_number=batch_number, metrics_str=text,
                  do_print=shown)
            self.last_step = batch_number

    def _pass_end(self, write: Callable[..., None], logs: Mapping[str, Any]) -> None:
        steps = self.steps if self.steps is not None else self.last_step
        write(float(logs.get("time", 0.0)), steps,
              _metrics_text(logs, self.metrics, ("", "val_", "test_")))

    # ------------------------------------------------------------------ hooks

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        """Read the epochs and the metric names."""
        self.metrics = ["loss", *getattr(self.model, "metrics_names", [])]
        self.epochs = int(self.params.get("epochs", 0) or 0)
        self.steps = self._count("steps")

    def on_epoch_begin(self, epoch_number: int, logs: dict[str, Any]) -> None:
        """Start the epoch's lines and its step bar."""
        self.epoch_number = epoch_number
        self._start_pass(self._count("steps"))
        self.color_progress.on_epoch_begin(epoch_number, max(self.epochs, epoch_number, 1))

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        """Write the step's line (when shown)."""
        self._batch_line(self.color_progress.on_train_batch_end, batch_number, logs,
                         self.show_every_n_train_steps)
        self.train_last_step = batch_number

    def on_valid_begin(self, logs: dict[str, Any]) -> None:
        """Start the validation's step bar (with ``show_on_valid``)."""
        if self.show_on_valid:
            self.metrics = ["loss", *getattr(self.model, "metrics_names", [])]
            self._start_pass(self._count("valid_steps"))
            self.color_progress.on_valid_begin()

    def on_valid_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        """Write the validation step's line (with ``show_on_valid``, when shown)."""
        if self.show_on_valid:
            self._batch_line(self.color_progress.on_valid_batch_end, batch_number, logs,
                             self.show_every_n_valid_steps)
        self.valid_last_step = batch_number

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        """End the epoch's line with its summary."""
        self.steps = self._count("steps")
        self.color_progress.on_epoch_end(
            float(logs.get("time", 0.0)), self.train_last_step or 0, self.valid_last_step,
            _metrics_text(logs, self.metrics, ("", "val_", "test_")))

    def on_test_begin(self, logs: dict[str, Any]) -> None:
        """Start the test's step bar."""
        self.metrics = ["loss", *getattr(self.model, "metrics_names", [])]
        self._start_pass(self._count("steps"))
        self.color_progress.on_test_begin()

    def on_test_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        """Write the test step's line (when shown)."""
        self._batch_line(self.color_progress.on_test_batch_end, batch_number, logs,
                         self.show_every_n_test_steps)

    def on_test_end(self, logs: dict[str, Any]) -> None:
        """End the test's line with its summary."""
        self._pass_end(self.color_progress.on_test_end, logs)

    def on_predict_begin(self, logs: dict[str, Any]) -> None:
        """Start the prediction's step bar."""
        self.metrics = []
        self._start_pass(self._count("steps"))
        self.color_progress.on_predict_begin()

    def on_predict_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        """Write the prediction step's line (when shown)."""
        self._batch_line(self.color_progress.on_predict_batch_end, batch_number, logs,
                         self.show_every_n_test_steps)

    def on_predict_end(self, logs: dict[str, Any]) -> None:
        """End the prediction's line with its summary."""
        self._pass_end(self.color_progress.on_predict_end, logs)


class EpochProgressionCallback(Callback):
    """Print one summary line per shown epoch (no step lines):
    ``Epoch: e/E Train steps: S Val steps: V 5.21s loss: ..., val_loss: ...`` (the step
    counts are the passes' ``steps`` and ``valid_steps``).

    Args:
        coloring: True for Poutyne's colours, False for none, or a dict of colours.
        show_every_n_epochs: ``'all'``, ``'none'`` or every how many epochs.
        file: Where to write (``sys.stdout`` when None).

    Attributes:
        color_progress: The :class:`~epochal.ColorProgress` that formats and writes.

    Raises:
        ConfigurationError: ``show_every_n_epochs`` or ``coloring`` is invalid.
    """

    def __init__(
        self, *, coloring: bool | Mapping[str, str] = True,
        show_every_n_epochs: str | int = "all", file: TextIO | None = None,
    ) -> None:
        super().__init__()
        _check_every("show_every_n_epochs", show_every_n_epochs)
        self.color_progress = ColorProgress(coloring, file=file)
        self.coloring = coloring
        self.show_every_n_epochs = show_every_n_epochs
        self.metrics: list[str] = []
        self.epochs = 0

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        """Read the epochs and the metric names."""
        self.metrics = ["loss", *getattr(self.model, "metrics_names", [])]
        self.epochs = int(self.params.get("epochs", 0) or 0)

    def on_epoch_begin(self, epoch_number: int, logs: dict[str, Any]) -> None:
        """Start the epoch's line (when shown)."""
        if _shown(self.show_every_n_epochs, epoch_number):
            self.color_progress.on_epoch_begin(epoch_number, max(self.epochs, epoch_number, 1))

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        """Print the epoch's summary (when shown)."""
        if _shown(self.show_every_n_epochs, epoch_number):
            steps = self.params.get("steps")
            valid = self.params.get("valid_steps")
            self.color_progress.on_epoch_end(
                float(logs.get("time", 0.0)), steps if isinstance(steps, int) else 0,
                valid if isinstance(valid, int) and any(k.startswith("val_") for k in logs)
                else None,
                _metrics_text(logs, self.metrics, ("", "val_")))
