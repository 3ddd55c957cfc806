"""``PeriodicSaveCallback``, the base of the checkpoint callbacks, and ``PeriodicSaveLambda``.

A save calls the subclass hook ``save_file(fd, epoch_number, logs)`` with an in-memory file,
then writes its bytes through a :class:`~epochal.ports.CheckpointStore` in one atomic write
(a local file goes to a temporary file beside it, fsynced and renamed; a remote object is one
upload), so a failed or interrupted save leaves the previous file in place. ``restore(fd)``
reads a file back (``restore_best``).

No checkpoint is ever written from a diverged training: when the network's weights hold a
NaN or an infinity, the save is skipped with a ``RuntimeWarning`` (for every checkpoint kind,
so the weights, optimizer, scheduler and RNG files of a run stay from the same epoch).

The state (:meth:`PeriodicSaveCallback.state_dict`) holds file names relative to the
callback's own location, never a path: a run copied elsewhere and resumed reads, writes and
deletes only files of its own location.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Callable, Mapping
from typing import IO, Any

import torch

from epochal.callbacks._files import (
    check_not_directory,
    file_location,
    fixed_prefix,
    name_from_state,
    probe_location,
)
from epochal.callbacks._monitoring import (
    check_mode_and_period,
    check_monitor_key,
    check_monitor_name,
    check_state_monitor,
    epoch_complete,
    logged_keys,
    monitored_value,
    network_weights_finite,
    never_logged_message,
    template_keys,
)
from epochal.callbacks.base import Callback
from epochal.core.monitor import Monitor, MonitorState
from epochal.exceptions import ConfigurationError, MonitorKeyError
from epochal.ports import CheckpointStore

__all__ = ["PeriodicSaveCallback", "PeriodicSaveLambda"]


class PeriodicSaveCallback(Callback):
    """Write a file every ``period`` epochs, or only when a monitored value improves; the
    base of the checkpoint callbacks.

    Subclasses implement :meth:`save_file` (write to the file object it is given) and
    :meth:`restore` (read it back, used by ``restore_best``); epochal's own subclasses
    implement :meth:`payload` instead (the object ``save_file`` ``torch.save``-s).

    Args:
        filename: Where to save: a path or fsspec URL (or, with ``store``, a name in that
            store), formatted each time with ``epoch`` and the epoch's log keys, format specs
            allowed (``'w.{epoch:02d}-{val_loss:.3f}.ckpt'``).
        monitor: Log key watched with ``save_best_only``.
        mode: ``'min'`` (lower is better) or ``'max'``.
        save_best_only: Save only at the end of an epoch whose monitored value improves on the
            best so far (``period`` is then ignored, as in Poutyne).
        keep_only_last_best: With ``save_best_only``, delete the previous best file when a new
            best is saved under another name (meaningful with a templated filename).
        restore_best: With ``save_best_only``: when training ends, whatever ended it, call
            :meth:`restore` with the best file (read again from where it was written, so this
            also works after a resume). Verbose prints ``Restoring data from <file>``.
        period: Save every ``period`` epochs (epochs whose number is a multiple of it).
        verbose: Print a line for each save and restore.
        temporary_filename: Accepted for Poutyne compatibility and unused: the store writes
            atomically with its own temporary file.
        atomic_write: Accepted for Poutyne compatibility; writes are always atomic.
        open_mode: ``'wb'`` (``save_file`` gets a binary file) or ``'w'`` (a text file,
            written as UTF-8).
        read_mode: ``'rb'`` or ``'r'``: the file :meth:`restore` gets.
        store: A :class:`~epochal.ports.CheckpointStore` that ``filename`` is relative to;
            None to derive the location from ``filename``.
        storage_options: fsspec options for a URL filename (for S3: credentials, endpoint).

    When it acts:
        ``on_train_begin`` checks that ``monitor`` (with ``save_best_only``) and every key of
        the filename template will be logged; ``on_epoch_end`` saves; ``on_train_end``
        restores (``restore_best``). An epoch a stop request cut short
        (``model.epoch_complete`` False) never counts for "best"; a periodic save still
        happens for it unless its filename needs a key the cut epoch did not log (``val_*``)
        or the weights are not finite (then a ``RuntimeWarning``, no write).

    Attributes:
        best_filename: The file holding the best epoch's state (``save_best_only``), or None.
        saved_files: Files written so far and still present (deleted bests removed), in order.

    Raises:
        ConfigurationError: At construction: ``filename`` is an existing directory,
            ``mode`` not ``'min'``/``'max'``, ``period`` < 1, ``keep_only_last_best`` or
            ``restore_best`` without ``save_best_only``, a monitor or template key with a
            path separator, a positional ``{}`` field, an unknown ``open_mode``/``read_mode``.
            At train begin: a template whose format specs do not fit the logged values.
        MonitorKeyError: At train begin: the monitor or a template key will never be logged
            (the message lists the logged keys and suggests the closest one).
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        *,
        monitor: str = "val_loss",
        mode: str = "min",
        save_best_only: bool = False,
        keep_only_last_best: bool = False,
        restore_best: bool = False,
        period: int = 1,
        verbose: bool = False,
        temporary_filename: str | None = None,
        atomic_write: bool = True,
        open_mode: str = "wb",
        read_mode: str = "rb",
        store: CheckpointStore | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_mode_and_period(mode, period)
        check_monitor_name(owner, monitor)
        for flag, enabled in (("keep_only_last_best", keep_only_last_best),
                              ("restore_best", restore_best)):
            if enabled and not save_best_only:
                raise ConfigurationError(
                    f"{owner}: {flag}=True works only with save_best_only=True (it acts on "
                    "the best file)."
                )
        for name, value, allowed in (("open_mode", open_mode, ("wb", "w")),
                                     ("read_mode", read_mode, ("rb", "r"))):
            if value not in allowed:
                raise ConfigurationError(
                    f"{owner}: {name} must be one of {allowed} (binary or text); got {value!r}."
                )
        if store is not None and storage_options:
            raise ConfigurationError(
                f"{owner}: storage_options apply to a URL filename, but a store was given; "
                "configure the store instead."
            )
        self.filename = os.fspath(filename)
        check_not_directory(owner, self.filename, store)
        self._template_keys = template_keys(owner, self.filename)
        self._prefix = fixed_prefix(self.filename)
        self.monitor = monitor
        self.mode = mode
        self._monitor = Monitor(key=monitor, mode=mode)
        self.save_best_only = save_best_only
        self.keep_only_last_best = keep_only_last_best
        self.restore_best = restore_best
        self.period = period
        self.verbose = verbose
        self.temporary_filename = temporary_filename
        self.atomic_write = atomic_write
        self.open_mode = open_mode
        self.read_mode = read_mode
        self.store = store
        self.storage_options: dict[str, Any] = dict(storage_options or {})
        self._state = MonitorState()
        self.best_filename: str | None = None
        self.saved_files: list[str] = []

    # -- what subclasses provide

    def save_file(self, fd: IO[Any], epoch_number: int, logs: dict[str, Any]) -> None:
        """Write the checkpoint to ``fd`` (binary, or text with ``open_mode='w'``).

        The default ``torch.save``-s :meth:`payload`.

        Args:
            fd: The file object to write to.
            epoch_number: The epoch being saved.
            logs: That epoch's logs.
        """
        torch.save(self.payload(), fd)

    def restore(self, fd: IO[Any]) -> None:
        """Read a file this callback wrote back into the training (``restore_best``).

        Raises:
            TypeError: The subclass does not define it.
        """
        raise TypeError(
            f"{type(self).__name__} cannot restore a file: define restore(fd) to use "
            "restore_best=True."
        )

    def payload(self) -> Any:
        """The object the default :meth:`save_file` writes with ``torch.save``.

        Raises:
            TypeError: The subclass defines neither ``payload`` nor ``save_file``.
        """
        raise TypeError(
            f"{type(self).__name__} must define save_file(fd, epoch_number, logs) (or "
            "payload()), which writes each save."
        )

    def check_ready(self) -> None:
        """Train-begin checks of a subclass (e.g. that there is an optimizer to save)."""

    # -- monitoring state

    @property
    def current_best(self) -> float | None:
        """Poutyne's attribute: with ``save_best_only``, the best monitored value so far, or
        ``inf`` (mode ``'min'``) / ``-inf`` (``'max'``) before the first; None otherwise
        (Poutyne's has no such attribute then)."""
        if self._state.best is not None:
            return self._state.best
        if not self.save_best_only:
            return None
        return math.inf if self._monitor.mode == "min" else -math.inf

    @property
    def best_epoch(self) -> int | None:
        """The epoch of the best monitored value so far, or None."""
        return self._state.best_epoch

    # -- hooks

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.check_ready()
        probe_location(type(self).__name__, self.filename, self.store, self.storage_options)
        logged = logged_keys(self)
        if not logged:
            return
        owner = type(self).__name__
        if self.save_best_only:
            check_monitor_key(self, self.monitor)
        for key in self._template_keys:
            if key not in logged:
                raise MonitorKeyError(
                    never_logged_message(
                        f"{owner}'s filename {self.filename!r} formats", key, logged
                    )
                )
        sample = {key: (1 if key == "epoch" else 0.0) for key in logged}
        try:
            self.filename.format_map(sample)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise ConfigurationError(
                f"{owner}'s filename {self.filename!r} cannot be formatted with the epoch logs "
                f"('epoch' is an int, the other keys floats): {type(exc).__name__}: {exc}. "
                "Use float specs such as '{val_loss:.3f}' and int specs for '{epoch:02d}'."
            ) from exc

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        complete = epoch_complete(self)
        values = {**logs, "epoch": logs.get("epoch", epoch_number)}
        if self.save_best_only:
            if not complete:
                return
            value = monitored_value(self, self.monitor, epoch_number, values)
            if not self._monitor.improves(value, self._state.best):
                self._state = self._state.update(self._monitor, epoch_number, value)
                return
            filename = self._format(epoch_number, values, complete)
            if filename is None or not network_weights_finite(
                self, f"saving {filename} at epoch {epoch_number}"
            ):
                return
            old_best, old_file = self._state.best, self.best_filename
            if self.verbose:
                shown_old = old_best if old_best is not None else (
                    math.inf if self.mode == "min" else -math.inf
                )
                print(
                    f"Epoch {epoch_number}: {self.monitor} improved from {shown_old:0.5f} to "
                    f"{value:0.5f}, saving file to {filename}"
                )
            self._write(filename, epoch_number, values)
            self._state = self._state.update(self._monitor, epoch_number, value)
            self.best_filename = filename
            if self.keep_only_last_best and old_file is not None and old_file != filename:
                store, name = self._location(old_file)
                store.delete(name)
                if old_file in self.saved_files:
                    self.saved_files.remove(old_file)
        elif epoch_number % self.period == 0:
            filename = self._format(epoch_number, values, complete)
            if filename is None or not network_weights_finite(
                self, f"saving {filename} at epoch {epoch_number}"
            ):
                return
            if self.verbose:
                print(f"Epoch {epoch_number:d}: saving file to {filename}")
            self._write(filename, epoch_number, values)

    def on_train_end(self, logs: dict[str, Any]) -> None:
        if not self.restore_best:
            return
        if self.best_filename is None:
            warnings.warn(
                f"{type(self).__name__}: no best epoch to restore ({self.monitor!r} never "
                "improved on a complete epoch, or was never finite); nothing is restored.",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        if self.verbose:
            print(f"Restoring data from {self.best_filename}")
        store, name = self._location(self.best_filename)
        data = store.read(name)
        fd: IO[Any] = (
            io.BytesIO(data) if "b" in self.read_mode else io.StringIO(data.decode("utf-8"))
        )
        self.restore(fd)

    # -- plumbing

    def _location(self, filename: str) -> tuple[CheckpointStore, str]:
        return file_location(type(self).__name__, filename, self.store, self.storage_options)

    def _format(self, epoch: int, values: Mapping[str, Any], complete: bool) -> str | None:
        try:
            return self.filename.format_map(values)
        except KeyError as exc:
            key = str(exc.args[0]) if exc.args else "?"
            if not complete:
                warnings.warn(
                    f"{type(self).__name__}: not saving at epoch {epoch}: a stop request cut "
                    f"the epoch short, so {key!r}, which the filename {self.filename!r} "
                    "formats, was not logged.",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return None
            raise MonitorKeyError(
                never_logged_message(
                    f"{type(self).__name__}'s filename {self.filename!r} formats",
                    key,
                    tuple(values),
                    where=f"which is absent from the logs of epoch {epoch}",
                )
            ) from exc

    def _write(self, filename: str, epoch_number: int, logs: dict[str, Any]) -> None:
        if "b" in self.open_mode:
            binary = io.BytesIO()
            self.save_file(binary, epoch_number, logs)
            data = binary.getvalue()
        else:
            text = io.StringIO()
            self.save_file(text, epoch_number, logs)
            data = text.getvalue().encode("utf-8")
        store, name = self._location(filename)
        store.write(name, data)
        if filename in self.saved_files:
            self.saved_files.remove(filename)
        self.saved_files.append(filename)

    # -- state

    def _relative(self, filename: str) -> str:
        return filename[len(self._prefix):] if filename.startswith(self._prefix) else filename

    def state_dict(self) -> dict[str, Any]:
        """Plain values to resume with: the monitor's best value, best epoch and wait counter,
        the best file and the files written (and not deleted), as names relative to the
        filename's fixed directory (never paths)."""
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "monitor_state": self._state.to_dict(),
            "best_filename": (
                None if self.best_filename is None else self._relative(self.best_filename)
            ),
            "saved_files": [self._relative(f) for f in self.saved_files],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned. File names are resolved against this
        callback's own ``filename`` (the current call wins); a saved absolute path or URL is
        ignored with a ``RuntimeWarning``.

        Raises:
            ConfigurationError: The state was saved by a callback with another monitor/mode.
        """
        check_state_monitor(type(self).__name__, state, self._monitor)
        self._state = MonitorState.from_dict(dict(state.get("monitor_state", {})))
        owner = type(self).__name__
        self.best_filename = name_from_state(owner, self._prefix, state.get("best_filename"))
        saved = (name_from_state(owner, self._prefix, f) for f in state.get("saved_files", []))
        self.saved_files = [f for f in saved if f is not None]


class PeriodicSaveLambda(PeriodicSaveCallback):
    """Call a function with a file object after every save-worthy epoch.

    Args:
        func: ``func(fd, epoch_number, logs)`` writes the file.
        *args: ``filename`` and the other arguments of :class:`PeriodicSaveCallback`.
        restore: ``restore(fd)`` reads a file back (``restore_best``); None: nothing to do.
        **kwargs: As :class:`PeriodicSaveCallback`.
    """

    def __init__(
        self,
        func: Callable[[IO[Any], int, dict[str, Any]], Any],
        *args: Any,
        restore: Callable[[IO[Any]], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.func = func
        self._restore = restore

    def save_file(self, fd: IO[Any], epoch_number: int, logs: dict[str, Any]) -> None:
        self.func(fd, epoch_number, logs)

    def restore(self, fd: IO[Any]) -> None:
        if self._restore is not None:
            self._restore(fd)
