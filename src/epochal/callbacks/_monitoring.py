"""Helpers shared by the callbacks that watch a logged value or format file names from the
logs: the one "monitor never logged" message of the library, monitor and template checks,
the finiteness check before a save, and the check of a restored monitor state.

Each helper reads only the ``TrainingContext`` port of ``callback.model`` (``network``,
``epoch_log_keys``, ``epoch_complete``).
"""

from __future__ import annotations

import difflib
import re
import string
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from epochal.callbacks.base import Callback
from epochal.core.monitor import Monitor
from epochal.exceptions import ConfigurationError, MonitorKeyError

__all__ = [
    "check_mode_and_period",
    "check_monitor_key",
    "check_monitor_name",
    "check_state_monitor",
    "epoch_complete",
    "logged_keys",
    "monitored_value",
    "network_weights_finite",
    "never_logged_message",
    "non_finite_tensors",
    "template_keys",
]

_PATH_SEPARATORS = ("/", "\\")


def never_logged_message(
    subject: str,
    key: str,
    logged: Sequence[str],
    *,
    where: str = "which this training will never log",
    no_validation_hint: str | None = None,
    suggestion: str = "{key!r}",
) -> str:
    """The library's message for a key that is not (or will never be) logged.

    ``<subject> 'key', <where>. Logged keys: a, b. <hint> Did you mean 'x'?``

    Args:
        subject: What wants the key (``"EarlyStopping monitors"``).
        key: The missing key.
        logged: The keys that are logged.
        where: The clause after the key.
        no_validation_hint: What to do when ``key`` is a ``val_*`` key and nothing is
            validated; None for the default (pass validation data to fit, or monitor the
            training key).
        suggestion: How to write a close match, a format string with ``{key}``
            (``"monitor_metric={key!r}"`` for the bundle).

    Returns:
        The message.
    """
    message = f"{subject} {key!r}, {where}. Logged keys: {', '.join(logged)}."
    if key.startswith("val_") and not any(k.startswith("val_") for k in logged):
        if no_validation_hint is not None:
            message += " " + no_validation_hint
        else:
            message += (
                " This training has no validation data, so no 'val_*' key is logged: pass "
                "validation data to fit (valid_generator, validation_data or valid_dataset)"
            )
            message += (
                f", or monitor the training key {key[4:]!r}." if key[4:] in logged else "."
            )
    close = difflib.get_close_matches(key, list(logged), n=1)
    if close:
        message += " Did you mean " + suggestion.format(key=close[0]) + "?"
    return message


def logged_keys(callback: Callback) -> tuple[str, ...]:
    """The keys the model's epoch logs will have (empty when the model does not say)."""
    model = getattr(callback, "model", None)
    return tuple(getattr(model, "epoch_log_keys", ()) or ())


def check_monitor_key(callback: Callback, key: str) -> None:
    """Raise ``MonitorKeyError`` at train begin when ``key`` will never be logged."""
    logged = logged_keys(callback)
    if logged and key not in logged:
        raise MonitorKeyError(
            never_logged_message(f"{type(callback).__name__} monitors", key, logged)
        )


def check_monitor_name(owner: str, key: str) -> None:
    """Raise ``ConfigurationError`` when a monitor looks like a file path (a swapped
    argument)."""
    if isinstance(key, str) and any(sep in key for sep in _PATH_SEPARATORS):
        raise ConfigurationError(
            f"{owner} monitors {key!r}, which contains a path separator; a monitor is a log "
            "key such as 'val_loss' or 'val_acc'. Did you pass a filename as the monitor?"
        )


def monitored_value(callback: Callback, key: str, epoch: int, logs: Mapping[str, Any]) -> float:
    """The monitored value in ``logs``; a missing key is an error, never a silent skip.

    Raises:
        MonitorKeyError: ``key`` is absent from ``logs``.
    """
    if key not in logs:
        raise MonitorKeyError(
            never_logged_message(
                f"{type(callback).__name__} monitors", key, tuple(logs),
                where=f"which is absent from the logs of epoch {epoch}",
            )
        )
    return float(logs[key])


def epoch_complete(callback: Callback) -> bool:
    """False while ``on_epoch_end`` handles an epoch a stop request cut short."""
    return bool(getattr(getattr(callback, "model", None), "epoch_complete", True))


def non_finite_tensors(tensors: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point (or complex) tensors in ``tensors`` holding a NaN or an
    infinity, in order.

    Memory: one reduction per tensor, no tensor-sized temporary (``torch.isfinite(t)`` of a
    64 MiB layer allocates 16 MiB of flags, and ``isfinite`` itself an ``abs`` copy). A sum is
    finite when every element is (NaN and infinities propagate through it); only a tensor
    whose sum is not (a NaN, an infinity, or finite values whose sum overflows) is checked
    element by element. One host sync per device (not one per tensor) when every tensor is
    finite.
    """
    checked = {
        name: t for name, t in tensors.items()
        if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())
    }
    flags = {name: torch.isfinite(t.sum()) for name, t in checked.items()}
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for flag in flags.values():
        by_device.setdefault(flag.device, []).append(flag)
    if all(bool(torch.stack(group).all()) for group in by_device.values()):
        return []
    return [
        name for name, flag in flags.items()
        if not bool(flag) and not bool(torch.isfinite(checked[name]).all())
    ]


def network_weights_finite(callback: Callback, what: str) -> bool:
    """False (with a ``RuntimeWarning`` naming ``what``) when the network's weights hold
    NaN/inf; True when they are finite or there is no network to check."""
    network = getattr(getattr(callback, "model", None), "network", None)
    if network is None:
        return True
    bad = non_finite_tensors(network.state_dict())
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


def template_keys(owner: str, template: str) -> tuple[str, ...]:
    """The log keys a filename template formats (``'w.{epoch:02d}-{val_loss:.3f}'`` gives
    ``('epoch', 'val_loss')``).

    Raises:
        ConfigurationError: The template is malformed, has a positional field, or a field
            with a path separator.
    """
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
        check_monitor_name(f"{owner}'s filename {template!r}", root)
        if root not in keys:
            keys.append(root)
    return tuple(keys)


def check_mode_and_period(mode: str, period: int) -> None:
    """Raise ``ConfigurationError`` unless ``mode`` is ``'min'``/``'max'`` and ``period`` an
    int >= 1."""
    if mode not in ("min", "max"):
        raise ConfigurationError(f"mode must be 'min' or 'max'; got {mode!r}.")
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise ConfigurationError(f"period must be an int >= 1 (epochs); got {period!r}.")


def check_state_monitor(owner: str, state: Mapping[str, Any], monitor: Monitor) -> None:
    """Raise ``ConfigurationError`` when a restored state was saved by a callback watching
    another key or mode."""
    saved_key, saved_mode = state.get("monitor"), state.get("mode")
    if (saved_key is not None and saved_key != monitor.key) or (
        saved_mode is not None and saved_mode != monitor.mode
    ):
        raise ConfigurationError(
            f"{owner}.load_state_dict: the state was saved by a callback monitoring "
            f"{saved_key!r} ({saved_mode}), but this one monitors {monitor.key!r} "
            f"({monitor.mode}); build the callback with the same monitor and mode."
        )
