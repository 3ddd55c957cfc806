"""Checkpoint callbacks: save the weights, optimizer, LR scheduler and RNG states as training
goes, keep the best, and put the best weights back at the end.

Every file goes through :func:`epochal._io.save_torch`, so a filename may be a local path or
any fsspec URL (``memory://``, ``s3://bucket/run/...`` with ``storage_options``), and every
write is crash-safe: a local file is written to a temporary file beside it, fsynced and
renamed; a remote object is one upload. A failed write leaves the previous file in place.

No checkpoint is ever written from a diverged training: when the network's weights hold a
NaN or an infinity, the save is skipped with a ``RuntimeWarning`` (for every checkpoint kind,
so the weights, optimizer, scheduler and RNG files of a run stay from the same epoch).
"""

from __future__ import annotations

import difflib
import math
import os
import random
import re
import string
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from epochal._io import load_torch, save_torch
from epochal.callbacks.base import Callback
from epochal.core.monitor import Monitor, MonitorState
from epochal.exceptions import ConfigurationError, MonitorKeyError

__all__ = [
    "BestModelRestore",
    "LRSchedulerCheckpoint",
    "ModelCheckpoint",
    "OptimizerCheckpoint",
    "PeriodicSaveCallback",
    "RandomStatesCheckpoint",
    "get_random_states",
    "set_random_states",
]

_PATH_SEPARATORS = ("/", "\\")


# ---------------------------------------------------------------------- shared helpers


def _unknown_key_message(
    subject: str,
    key: str,
    logged: Sequence[str],
    *,
    where: str = "which this training will never log",
) -> str:
    """``<subject> 'key', which this training will never log. Logged keys: ... Did you mean?``"""
    message = f"{subject} {key!r}, {where}. Logged keys: {', '.join(logged)}."
    if key.startswith("val_") and not any(k.startswith("val_") for k in logged):
        message += (
            " This training has no validation data, so no 'val_*' key is logged: pass "
            "validation data to fit (valid_generator, validation_data or valid_dataset)"
        )
        message += (
            f", or monitor the training key {key[4:]!r}." if key[4:] in logged else "."
        )
    close = difflib.get_close_matches(key, list(logged), n=1)
    if close:
        message += f" Did you mean {close[0]!r}?"
    return message


def _logged_keys(callback: Callback) -> tuple[str, ...]:
    """The keys the model's epoch logs will have (empty when the model does not say)."""
    model = getattr(callback, "model", None)
    return tuple(getattr(model, "epoch_log_keys", ()) or ())


def _check_monitor_key(callback: Callback, key: str) -> None:
    """Raise ``MonitorKeyError`` at train begin when ``key`` will never be logged."""
    logged = _logged_keys(callback)
    if logged and key not in logged:
        raise MonitorKeyError(
            _unknown_key_message(f"{type(callback).__name__} monitors", key, logged)
        )


def _check_monitor_name(owner: str, key: str) -> None:
    if isinstance(key, str) and any(sep in key for sep in _PATH_SEPARATORS):
        raise ConfigurationError(
            f"{owner} monitors {key!r}, which contains a path separator; a monitor is a log "
            "key such as 'val_loss' or 'val_acc'. Did you pass a filename as the monitor?"
        )


def _monitored_value(callback: Callback, key: str, epoch: int, logs: Mapping[str, Any]) -> float:
    """The monitored value in ``logs``; a missing key is an error, never a silent skip."""
    if key not in logs:
        raise MonitorKeyError(
            _unknown_key_message(
                f"{type(callback).__name__} monitors", key, tuple(logs),
                where=f"which is absent from the logs of epoch {epoch}",
            )
        )
    return float(logs[key])


def _epoch_complete(callback: Callback) -> bool:
    return bool(getattr(getattr(callback, "model", None), "epoch_complete", True))


def _non_finite_tensors(tensors: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors in ``tensors`` holding a NaN or an infinity.

    One host sync per device (not one per tensor) when every tensor is finite.
    """
    flags: dict[str, torch.Tensor] = {
        name: torch.isfinite(t).all()
        for name, t in tensors.items()
        if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())
    }
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for flag in flags.values():
        by_device.setdefault(flag.device, []).append(flag)
    if all(bool(torch.stack(group).all()) for group in by_device.values()):
        return []
    return [name for name, flag in flags.items() if not bool(flag)]


def _network_weights_finite(callback: Callback, what: str) -> bool:
    """False (with a ``RuntimeWarning`` naming ``what``) when the network's weights hold
    NaN/inf; True when they are finite or there is no network to check."""
    network = getattr(getattr(callback, "model", None), "network", None)
    if network is None:
        return True
    bad = _non_finite_tensors(network.state_dict())
    if not bad:
        return True
    shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
    warnings.warn(
        f"{type(callback).__name__}: not {what}: the network's weights hold NaN or inf "
        f"({shown}); training has diverged. The previous checkpoint, if any, is kept.",
        RuntimeWarning,
        stacklevel=3,
    )
    return False


def _template_keys(owner: str, template: str) -> tuple[str, ...]:
    """The log keys a filename template formats (``'w.{epoch:02d}-{val_loss:.3f}'`` gives
    ``('epoch', 'val_loss')``)."""
    keys: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigurationError(
            f"{owner}'s filename {template!r} is not a valid format template ({exc}); use "
            "'{key}' or '{key:spec}' fields, and '{{' / '}}' for literal braces."
        ) from exc
    for _literal, field, _spec, _conversion in parsed:
        if field is None:
            continue
        root = re.split(r"[.\[]", field, maxsplit=1)[0]
        if not root or root.isdigit():
            raise ConfigurationError(
                f"{owner}'s filename {template!r} has a positional field {{{field}}}; name a "
                "log key instead, e.g. '{epoch}' or '{val_loss:.3f}'."
            )
        _check_monitor_name(f"{owner}'s filename {template!r}", root)
        if root not in keys:
            keys.append(root)
    return tuple(keys)


def _delete(path: str, storage_options: Mapping[str, Any] | None) -> None:
    from epochal_adapters.storage import FsspecCheckpointStore, split_url

    parent, name = split_url(path)
    FsspecCheckpointStore(parent, storage_options=dict(storage_options or {})).delete(name)


def _check_mode_and_period(mode: str, period: int) -> None:
    if mode not in ("min", "max"):
        raise ConfigurationError(f"mode must be 'min' or 'max'; got {mode!r}.")
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise ConfigurationError(f"period must be an int >= 1 (epochs); got {period!r}.")


def _check_state_monitor(owner: str, state: Mapping[str, Any], monitor: Monitor) -> None:
    saved_key, saved_mode = state.get("monitor"), state.get("mode")
    if (saved_key is not None and saved_key != monitor.key) or (
        saved_mode is not None and saved_mode != monitor.mode
    ):
        raise ConfigurationError(
            f"{owner}.load_state_dict: the state was saved by a callback monitoring "
            f"{saved_key!r} ({saved_mode}), but this one monitors {monitor.key!r} "
            f"({monitor.mode}); build the callback with the same monitor and mode."
        )


# ---------------------------------------------------------------------- periodic saves


class PeriodicSaveCallback(Callback):
    """Base of the checkpoint callbacks: saves what :meth:`payload` returns every ``period``
    epochs, or only when a monitored value improves.

    Subclasses implement :meth:`payload` (what to ``torch.save``) and may override
    :meth:`check_ready` (train-begin checks).

    Args:
        filename: Where to save: a path or fsspec URL, formatted each time with ``epoch`` and
            the epoch's log keys, format specs allowed (``'w.{epoch:02d}-{val_loss:.3f}.ckpt'``).
        monitor: Log key watched with ``save_best_only``.
        mode: ``'min'`` (lower is better) or ``'max'``.
        save_best_only: Save only at the end of an epoch whose monitored value improves on the
            best so far (``period`` is then ignored, as in Poutyne).
        keep_only_last_best: With ``save_best_only``, delete the previous best file when a new
            best is saved under another name (meaningful with a templated filename).
        period: Save every ``period`` epochs (epochs whose number is a multiple of it).
        verbose: Print a line for each save.
        temporary_filename: Accepted for Poutyne compatibility and unused: writes are atomic.
        atomic_write, open_mode, read_mode: Accepted for Poutyne compatibility and unused
            (writes are always atomic and binary).
        storage_options: fsspec options for a URL filename (for S3: credentials, endpoint).

    When it acts:
        ``on_train_begin`` checks that ``monitor`` (with ``save_best_only``) and every key of
        the filename template will be logged; ``on_epoch_end`` saves. An epoch a stop request
        cut short (``model.epoch_complete`` False) never counts for "best"; a periodic save
        still happens for it unless its filename needs a key the cut epoch did not log
        (``val_*``) or the weights are not finite (then a ``RuntimeWarning``, no write).

    Attributes:
        best_filename: The file holding the best epoch's state (``save_best_only``), or None.
        saved_files: Files written so far and still present (deleted bests removed), in order.

    Raises:
        ConfigurationError: At construction: ``mode`` not ``'min'``/``'max'``, ``period`` < 1,
            ``keep_only_last_best`` without ``save_best_only``, a monitor or template key
            with a path separator, a positional ``{}`` field. At train begin: a template
            whose format specs do not fit the logged values.
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
        period: int = 1,
        verbose: bool = False,
        temporary_filename: str | None = None,
        atomic_write: bool = True,
        open_mode: str = "wb",
        read_mode: str = "rb",
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        _check_mode_and_period(mode, period)
        _check_monitor_name(owner, monitor)
        if keep_only_last_best and not save_best_only:
            raise ConfigurationError(
                f"{owner}: keep_only_last_best=True works only with save_best_only=True (it "
                "deletes the previous best file when a new best is saved)."
            )
        self.filename = os.fspath(filename)
        self._template_keys = _template_keys(owner, self.filename)
        self.monitor = monitor
        self.mode = mode
        self._monitor = Monitor(key=monitor, mode=mode)
        self.save_best_only = save_best_only
        self.keep_only_last_best = keep_only_last_best
        self.period = period
        self.verbose = verbose
        self.temporary_filename = temporary_filename
        del atomic_write, open_mode, read_mode
        self.storage_options: dict[str, Any] = dict(storage_options or {})
        self._state = MonitorState()
        self.best_filename: str | None = None
        self.saved_files: list[str] = []

    # -- what subclasses provide

    def payload(self) -> Any:
        """The object to ``torch.save`` (tensors, numbers, strings and containers of them).

        Raises:
            TypeError: A subclass did not define it (every concrete checkpoint does).
        """
        raise TypeError(
            f"{type(self).__name__} must define payload(), the object each save writes; "
            "subclass ModelCheckpoint, OptimizerCheckpoint, ... or define it."
        )

    def check_ready(self) -> None:
        """Train-begin checks of a subclass (e.g. that there is an optimizer to save)."""

    # -- monitoring state

    @property
    def current_best(self) -> float | None:
        """The best monitored value so far (``save_best_only``), or None."""
        return self._state.best

    @property
    def best_epoch(self) -> int | None:
        """The epoch of the best monitored value so far, or None."""
        return self._state.best_epoch

    # -- hooks

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.check_ready()
        logged = _logged_keys(self)
        if not logged:
            return
        owner = type(self).__name__
        if self.save_best_only:
            _check_monitor_key(self, self.monitor)
        for key in self._template_keys:
            if key not in logged:
                raise MonitorKeyError(
                    _unknown_key_message(
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
        complete = _epoch_complete(self)
        values = {**logs, "epoch": logs.get("epoch", epoch_number)}
        if self.save_best_only:
            if not complete:
                return
            value = _monitored_value(self, self.monitor, epoch_number, values)
            if not self._monitor.improves(value, self._state.best):
                self._state = self._state.update(self._monitor, epoch_number, value)
                return
            filename = self._format(epoch_number, values, complete)
            if filename is None or not _network_weights_finite(
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
                    f"{value:0.5f}, saving file {filename}"
                )
            self._write(filename)
            self._state = self._state.update(self._monitor, epoch_number, value)
            self.best_filename = filename
            if self.keep_only_last_best and old_file is not None and old_file != filename:
                _delete(old_file, self.storage_options)
                if old_file in self.saved_files:
                    self.saved_files.remove(old_file)
        elif epoch_number % self.period == 0:
            filename = self._format(epoch_number, values, complete)
            if filename is None or not _network_weights_finite(
                self, f"saving {filename} at epoch {epoch_number}"
            ):
                return
            if self.verbose:
                print(f"Epoch {epoch_number}: saving file {filename}")
            self._write(filename)

    # -- plumbing

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
                _unknown_key_message(
                    f"{type(self).__name__}'s filename {self.filename!r} formats",
                    key,
                    tuple(values),
                    where=f"which is absent from the logs of epoch {epoch}",
                )
            ) from exc

    def _write(self, filename: str) -> None:
        save_torch(self.payload(), filename, storage_options=self.storage_options)
        if filename in self.saved_files:
            self.saved_files.remove(filename)
        self.saved_files.append(filename)

    # -- state

    def state_dict(self) -> dict[str, Any]:
        """Plain values to resume with: the monitor's best value, best epoch and wait counter,
        the best file and the files written (and not deleted)."""
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "monitor_state": self._state.to_dict(),
            "best_filename": self.best_filename,
            "saved_files": list(self.saved_files),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises:
            ConfigurationError: The state was saved by a callback with another monitor/mode.
        """
        _check_state_monitor(type(self).__name__, state, self._monitor)
        self._state = MonitorState.from_dict(dict(state.get("monitor_state", {})))
        self.best_filename = state.get("best_filename")
        self.saved_files = list(state.get("saved_files", []))


class ModelCheckpoint(PeriodicSaveCallback):
    """Save the network's weights (``network.state_dict()``) during training; optionally keep
    only the best and restore them at the end.

    Args:
        filename: Path or fsspec URL template, e.g. ``'saves/last_epoch.ckpt'`` or
            ``'s3://bucket/run/w.{epoch:02d}-{val_loss:.3f}.ckpt'``.
        **kwargs: ``monitor``, ``mode``, ``save_best_only``, ``keep_only_last_best``,
            ``period``, ``verbose``, ``temporary_filename``, ``atomic_write``, ``open_mode``,
            ``read_mode``, ``storage_options``: as :class:`PeriodicSaveCallback`.
        restore_best: With ``save_best_only``: at the end of training, whatever ended it (last
            epoch, early stop, NaN), load the best file back into the network (read again
            from where it was written, so this also works after a resume). Verbose prints
            ``Restoring data from <file>``.

    Writes:
        ``torch.save(network.state_dict())`` at the formatted filename; read it back with
        ``Model.load_weights``. Never a file of non-finite weights (see the module).

    Raises:
        ConfigurationError: ``restore_best`` without ``save_best_only``, or any error of
            :class:`PeriodicSaveCallback`.
        MonitorKeyError: See :class:`PeriodicSaveCallback`.
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
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            filename, monitor=monitor, mode=mode, save_best_only=save_best_only,
            keep_only_last_best=keep_only_last_best, period=period, verbose=verbose,
            temporary_filename=temporary_filename, atomic_write=atomic_write,
            open_mode=open_mode, read_mode=read_mode, storage_options=storage_options,
        )
        if restore_best and not save_best_only:
            raise ConfigurationError(
                "ModelCheckpoint: restore_best=True works only with save_best_only=True (the "
                "best file is what gets restored); or use BestModelRestore."
            )
        self.restore_best = restore_best

    def payload(self) -> Any:
        return self.model.network.state_dict()

    def on_train_end(self, logs: dict[str, Any]) -> None:
        if not self.restore_best:
            return
        if self.best_filename is None:
            warnings.warn(
                f"ModelCheckpoint: no best epoch to restore ({self.monitor!r} never improved "
                "on a complete epoch, or was never finite); the network keeps its last "
                "weights.",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        if self.verbose:
            print(f"Restoring data from {self.best_filename}")
        self.model.set_weights(
            load_torch(self.best_filename, storage_options=self.storage_options)
        )


class OptimizerCheckpoint(PeriodicSaveCallback):
    """Save the optimizer's ``state_dict()`` during training (arguments as
    :class:`PeriodicSaveCallback`); load it back with ``Model.load_optimizer_state``.

    Raises:
        ConfigurationError: At train begin, the model has no optimizer.
    """


    def check_ready(self) -> None:
        if getattr(self.model, "optimizer", None) is None:
            raise ConfigurationError(
                "OptimizerCheckpoint: the model has no optimizer whose state could be saved."
            )

    def payload(self) -> Any:
        optimizer = self.model.optimizer
        assert optimizer is not None
        return optimizer.state_dict()


class LRSchedulerCheckpoint(PeriodicSaveCallback):
    """Save a learning-rate scheduler's ``state_dict()`` during training.

    Put it after the scheduler's callback in the callback list, so the saved state is the one
    after that epoch's scheduler step.

    Args:
        lr_scheduler: A ``torch.optim.lr_scheduler`` scheduler, or an object exposing one as
            ``.scheduler`` (epochal's scheduler callbacks; read at each save, since such a
            callback may build its scheduler only when training begins).
        filename: ...and the other arguments: as :class:`PeriodicSaveCallback`.

    Raises:
        ConfigurationError: At a save, there is no object with a ``state_dict`` to save.
    """


    def __init__(
        self, lr_scheduler: Any, filename: str | os.PathLike[str], **kwargs: Any
    ) -> None:
        super().__init__(filename, **kwargs)
        self.lr_scheduler = lr_scheduler

    def _scheduler(self) -> Any:
        target = self.lr_scheduler
        inner = getattr(target, "scheduler", None)
        if inner is not None and hasattr(inner, "state_dict"):
            return inner
        if hasattr(target, "state_dict") and not hasattr(target, "scheduler"):
            return target
        raise ConfigurationError(
            f"LRSchedulerCheckpoint: {type(target).__name__} has no scheduler with a "
            "state_dict() to save (yet); pass a torch LR scheduler or a scheduler callback "
            "listed before this checkpoint."
        )

    def payload(self) -> Any:
        return self._scheduler().state_dict()


class RandomStatesCheckpoint(PeriodicSaveCallback):
    """Save the random states (Python ``random``, NumPy's global generator, PyTorch CPU and
    every CUDA device) during training, as :func:`get_random_states` returns them.

    The file loads with ``torch.load(weights_only=True)``; pass the loaded dict to
    :func:`set_random_states` to continue with identical draws. Arguments as
    :class:`PeriodicSaveCallback`.
    """


    def payload(self) -> Any:
        return get_random_states()


# ---------------------------------------------------------------------- random states


def get_random_states() -> dict[str, Any]:
    """The states of every random number generator a training draws from, in a form that
    ``torch.load(weights_only=True)`` accepts (tensors, ints, floats, strings, None).

    Returns:
        ``{'python': {'version', 'state', 'gauss_next'}, 'numpy': {'bit_generator', 'key',
        'pos', 'has_gauss', 'cached_gaussian'}, 'torch': ByteTensor}`` plus ``'cuda'`` (one
        ByteTensor per device) when CUDA is available.
    """
    version, internal, gauss_next = random.getstate()
    numpy_state = np.random.get_state(legacy=True)
    assert isinstance(numpy_state, tuple)
    bit_generator, key, pos, has_gauss, cached_gaussian = numpy_state
    states: dict[str, Any] = {
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": None if gauss_next is None else float(gauss_next),
        },
        "numpy": {
            "bit_generator": str(bit_generator),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64).copy()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = list(torch.cuda.get_rng_state_all())
    return states


def set_random_states(states: Mapping[str, Any]) -> None:
    """Restore what :func:`get_random_states` returned; absent parts are left alone.

    CUDA states are restored on as many devices as both the saved state and this machine
    have (a ``RuntimeWarning`` when the counts differ); ignored without CUDA.

    Raises:
        ValueError: A part has the wrong form (e.g. a state from another format).
    """
    python = states.get("python")
    if python is not None:
        internal = tuple(int(v) for v in torch.as_tensor(python["state"]).tolist())
        gauss_next = python.get("gauss_next")
        random.setstate(
            (int(python["version"]), internal, None if gauss_next is None else float(gauss_next))
        )
    numpy_part = states.get("numpy")
    if numpy_part is not None:
        key = np.asarray(torch.as_tensor(numpy_part["key"]).numpy(), dtype=np.uint32)
        np.random.set_state(
            (
                str(numpy_part["bit_generator"]),
                key,
                int(numpy_part["pos"]),
                int(numpy_part["has_gauss"]),
                float(numpy_part["cached_gaussian"]),
            )
        )
    torch_state = states.get("torch")
    if torch_state is not None:
        torch.set_rng_state(torch.as_tensor(torch_state, dtype=torch.uint8).cpu())
    cuda_states = states.get("cuda")
    if cuda_states is not None and torch.cuda.is_available():
        count = torch.cuda.device_count()
        if count != len(cuda_states):
            warnings.warn(
                f"set_random_states: the state holds {len(cuda_states)} CUDA generator(s) but "
                f"this machine has {count} device(s); restoring the first "
                f"{min(count, len(cuda_states))}.",
                RuntimeWarning,
                stacklevel=2,
            )
        for index, state in enumerate(cuda_states[:count]):
            torch.cuda.set_rng_state(torch.as_tensor(state, dtype=torch.uint8).cpu(), index)


# ---------------------------------------------------------------------- best weights in memory


class BestModelRestore(Callback):
    """Keep a CPU copy of the best epoch's weights and load it back at the end of training,
    whatever ended it (last epoch, early stop, NaN).

    Args:
        monitor: Log key to watch (``'val_loss'``, ``'val_acc'``...).
        mode: ``'min'`` or ``'max'``.
        verbose: Print ``Restoring model from epoch N`` when restoring.

    When it acts:
        ``on_train_begin`` checks the monitor key; ``on_epoch_end`` of each complete epoch
        copies the weights when the value improves (a device-to-host copy per improvement;
        weights with NaN/inf are never kept); ``on_train_end`` restores.

    State:
        :meth:`state_dict` holds plain values (best value, epoch, wait), not the weights: after
        a resume whose best epoch came before it, restoring warns and does nothing until a
        new best arrives. For restores that survive a resume use
        ``ModelCheckpoint(..., save_best_only=True, restore_best=True)``.

    Raises:
        ConfigurationError: ``mode`` is not ``'min'``/``'max'``; a monitor with a path
            separator.
        MonitorKeyError: At train begin, the monitor will never be logged.
    """

    def __init__(self, *, monitor: str = "val_loss", mode: str = "min", verbose: bool = False) -> None:
        super().__init__()
        _check_mode_and_period(mode, 1)
        _check_monitor_name("BestModelRestore", monitor)
        self.monitor = monitor
        self.mode = mode
        self.verbose = verbose
        self._monitor = Monitor(key=monitor, mode=mode)
        self._state = MonitorState()
        self.best_weights: dict[str, torch.Tensor] | None = None

    @property
    def best(self) -> float | None:
        """The best monitored value so far, or None."""
        return self._state.best

    @property
    def best_epoch(self) -> int | None:
        """The epoch of the best value so far, or None."""
        return self._state.best_epoch

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        _check_monitor_key(self, self.monitor)

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        if not _epoch_complete(self):
            return
        value = _monitored_value(self, self.monitor, epoch_number, logs)
        if self._monitor.improves(value, self._state.best):
            if not _network_weights_finite(self, f"keeping the weights of epoch {epoch_number}"):
                return
            self.best_weights = self.model.get_weight_copies()
        self._state = self._state.update(self._monitor, epoch_number, value)

    def on_train_end(self, logs: dict[str, Any]) -> None:
        if self.best_weights is None:
            detail = (
                f"the best epoch ({self._state.best_epoch}) predates a state load, and its "
                "weights are not held in memory"
                if self._state.best_epoch is not None
                else f"{self.monitor!r} never improved on a complete epoch"
            )
            warnings.warn(
                f"BestModelRestore: nothing to restore: {detail}; the network keeps its last "
                "weights.",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        if self.verbose:
            print(f"Restoring model from epoch {self._state.best_epoch}")
        self.model.set_weights(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        """Plain values: the monitor, its mode and state (best value, best epoch, wait)."""
        return {"monitor": self.monitor, "mode": self.mode,
                "monitor_state": self._state.to_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the best weights are not part of it)."""
        _check_state_monitor("BestModelRestore", state, self._monitor)
        self._state = MonitorState.from_dict(dict(state.get("monitor_state", {})))
        self.best_weights = None
