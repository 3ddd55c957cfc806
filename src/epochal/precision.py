"""Mixed precision and ``torch.compile`` on a real device: what the installed torch and the
device can run, and the network wrapping that goes with it.

The pure part (plans, the autocast/scaler step) is :mod:`epochal.core.precision`; this module
asks the device and torch, once, before the first step:

* :func:`prepare_precision` turns ``precision='bf16-mixed'`` and a device into a ready
  :class:`~epochal.core.precision.MixedPrecision`, or raises naming the device and the torch
  version that cannot run it;
* :func:`resolve_compile_options` checks ``compile=True`` or a dict of ``torch.compile``
  options against the installed torch, and :func:`compile_network` wraps the network once;
* :func:`unwrap_compiled` and :func:`strip_compile_prefix` keep checkpoints free of the
  ``_orig_mod.`` prefix a compiled network adds to its parameter names, so a checkpoint from
  a compiled network loads into an eager one and back.
"""

from __future__ import annotations

import collections
import difflib
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from epochal.core.precision import (
    PRECISIONS,
    MixedPrecision,
    PrecisionPlan,
    resolve_precision,
)
from epochal.exceptions import CheckpointError, ConfigurationError

__all__ = [
    "bind_precision",
    "compile_network",
    "load_optimizer_file",
    "optimizer_file_state",
    "precision_support",
    "prepare_precision",
    "resolve_compile_options",
    "scaler_skipped_last_step",
    "strip_compile_prefix",
    "unwrap_compiled",
]

_COMPILED_PREFIX = "_orig_mod"


# --------------------------------------------------------------------------- precision


def precision_support(precision: str | PrecisionPlan, device: torch.device | str) -> str | None:
    """Why ``precision`` cannot run on ``device`` with the installed torch, or None when it can.

    Runs a two-element autocast matrix product on the device (and, for ``'16-mixed'``, one
    scaled backward/unscale/step/update of a one-element parameter) and checks the result's
    dtype; on CUDA, ``'bf16-mixed'`` also needs native bfloat16 (compute capability 8.0 or
    newer), not the slow emulation torch falls back to. Takes milliseconds; call it once.

    Args:
        precision: A name from :data:`~epochal.core.precision.PRECISIONS` or a plan.
        device: Where the network's parameters live.

    Returns:
        None, or a sentence saying what is missing.

    Raises:
        ConfigurationError: Unknown precision name.
    """
    plan = resolve_precision(precision)
    device = torch.device(device)
    if plan.autocast_dtype is None:
        return None
    dtype_name = str(plan.autocast_dtype).removeprefix("torch.")
    try:
        available = torch.amp.is_autocast_available(device.type)
    except (AttributeError, RuntimeError):
        available = False
    if not available:
        return f"torch has no autocast for device type {device.type!r}"
    if device.type == "cuda" and plan.autocast_dtype is torch.bfloat16:
        reason = _cuda_bf16_reason(device)
        if reason is not None:
            return reason
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with torch.autocast(device.type, dtype=plan.autocast_dtype):
                a = torch.ones(2, 2, device=device)
                out = a @ a
        except (RuntimeError, ValueError, AssertionError, TypeError) as exc:
            return f"autocast to {dtype_name} failed: {exc}"
    if out.dtype != plan.autocast_dtype:
        said = "; ".join(str(w.message) for w in caught)
        return (
            f"autocast does not run matrix products in {dtype_name} there"
            + (f" (torch said: {said})" if said else "")
        )
    if plan.scaled:
        return _scaler_reason(device)
    return None


def _cuda_bf16_reason(device: torch.device) -> str | None:
    if not torch.cuda.is_available():
        return "CUDA is not available"
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    if major < 8:
        name = torch.cuda.get_device_name(index)
        return (
            f"bfloat16 needs a GPU of compute capability 8.0 (Ampere) or newer; "
            f"{name} is {major}.{minor} (use '16-mixed' there)"
        )
    return None


def _scaler_reason(device: torch.device) -> str | None:
    grad_scaler = getattr(torch.amp, "GradScaler", None)
    if grad_scaler is None:
        return "torch.amp.GradScaler does not exist in this torch (it needs torch >= 2.3)"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            scaler = grad_scaler(device.type)
            if not scaler.is_enabled():
                said = "; ".join(str(w.message) for w in caught)
                return "torch.amp.GradScaler disables itself there" + (
                    f" (torch said: {said})" if said else ""
                )
            weight = torch.ones(1, device=device, requires_grad=True)
            optimizer = torch.optim.SGD([weight], lr=0.0)
            scaler.scale((weight * 2.0).sum()).backward()  # type: ignore[no-untyped-call]
            scaler.unscale_(optimizer)
            scaler.step(optimizer)
            scaler.update()
        except (RuntimeError, NotImplementedError, AssertionError, ValueError) as exc:
            return f"torch.amp.GradScaler({device.type!r}) cannot step there: {exc}"
    return None


def prepare_precision(
    precision: str | PrecisionPlan,
    device: torch.device | str,
    *,
    init_scale: float = 2.0**16,
    growth_interval: int = 2000,
) -> MixedPrecision:
    """Check that ``precision`` runs on ``device`` and build the step helper for it.

    Args:
        precision: ``'32'`` (default of ``Model``), ``'bf16-mixed'`` or ``'16-mixed'``.
        device: Where the network's parameters live (``'cpu'``, ``'cuda:0'``, ...).
        init_scale: First loss scale for ``'16-mixed'``.
        growth_interval: Unskipped steps before the loss scale doubles.

    Returns:
        A :class:`~epochal.core.precision.MixedPrecision` for ``device``'s type.

    Raises:
        ConfigurationError: Unknown precision (the message lists the valid names), or one
            that this device and the installed torch cannot run (the message names both, says
            what is missing and which precisions to use instead).
    """
    plan = resolve_precision(precision)
    device = torch.device(device)
    reason = precision_support(plan, device)
    if reason is not None:
        others = [
            p for p in PRECISIONS if p != plan.name and precision_support(p, device) is None
        ]
        raise ConfigurationError(
            f"Precision {plan.name!r} cannot run on device {str(device)!r} with torch "
            f"{torch.__version__}: {reason}. Use "
            + " or ".join(repr(p) for p in others)
            + " on this device, or run on a device/torch that supports it."
        )
    return MixedPrecision(
        plan, device.type, init_scale=init_scale, growth_interval=growth_interval
    )


def _parameter_device(network: nn.Module) -> torch.device:
    for parameter in network.parameters():
        return parameter.device
    for buffer in network.buffers():
        return buffer.device
    return torch.device("cpu")


def bind_precision(
    plan: PrecisionPlan,
    network: nn.Module,
    device: torch.device | None,
    current: MixedPrecision | None = None,
) -> MixedPrecision | None:
    """The step helper a ``Model`` uses for ``plan`` where its network now lives.

    Called when a ``Model`` is built and each time it moves (``Model.to``): the device type
    decides where autocast applies and the scaler keeps its scale. A helper already on that
    device type is kept as it is; on another one a new helper is checked and built, and the
    current scaler state (scale, growth tracker) carries over.

    Args:
        plan: From :func:`~epochal.core.precision.resolve_precision`.
        network: The eager network (its first parameter's device is used when ``device``
            is None; the CPU when it has no parameter or buffer).
        device: The ``Model``'s device, or None.
        current: The helper in use until now, or None.

    Returns:
        None for ``'32'`` (the plain float32 steps), else the helper.

    Raises:
        ConfigurationError: The device and the installed torch cannot run ``plan`` (the
            message names both; see :func:`prepare_precision`).
    """
    if not plan.mixed:
        return None
    where = device if device is not None else _parameter_device(network)
    if current is not None and current.plan == plan and current.device_type == where.type:
        return current
    helper = prepare_precision(plan, where)
    if current is not None:
        helper.load_state_dict(current.state_dict())
    return helper


def scaler_skipped_last_step(model: Any) -> bool:
    """True when ``model``'s loss scaler skipped its last optimizer step (``'16-mixed'`` with
    inf/NaN gradients: parameters and optimizer state unchanged), so that ``OptimizerPolicy``
    does not count it. False without a scaler or a ``mixed_precision`` attribute.
    Reads a host flag set by that step; no device sync.
    """
    precision = getattr(model, "mixed_precision", None)
    return bool(getattr(precision, "last_step_skipped", False))


#: The key under which an optimizer file keeps the loss scaler's state.
PRECISION_KEY = "epochal_precision"


def optimizer_file_state(
    optimizer: torch.optim.Optimizer, precision: MixedPrecision | None
) -> dict[str, Any]:
    """What ``Model.save_optimizer_state`` writes: the optimizer's ``state_dict()``, plus the
    loss scaler's state under :data:`PRECISION_KEY` when a scaler is in use (``'16-mixed'``).

    The file stays an optimizer ``state_dict`` that ``torch.optim.Optimizer.load_state_dict``
    (and Poutyne) load as they are; they ignore the extra key. Without a scaler the file is
    exactly the optimizer's ``state_dict()``.
    """
    state: dict[str, Any] = optimizer.state_dict()
    if precision is not None and precision.scaler is not None:
        state = {**state, PRECISION_KEY: precision.state_dict()}
    return state


def load_optimizer_file(
    optimizer: torch.optim.Optimizer,
    precision: MixedPrecision | None,
    state: Mapping[str, Any],
) -> None:
    """Load what :func:`optimizer_file_state` wrote: the optimizer's state, and the scaler's
    when both the file and ``precision`` have one (a file without it, e.g. written at
    ``'32'`` or by Poutyne, leaves the scaler as it is).

    Raises:
        CheckpointError: The file's scaler state is damaged (see
            :meth:`~epochal.core.precision.MixedPrecision.load_state_dict`).
    """
    state = dict(state)
    scaler_state = state.pop(PRECISION_KEY, None)
    optimizer.load_state_dict(state)
    if scaler_state is not None and precision is not None:
        precision.load_state_dict(scaler_state)


# --------------------------------------------------------------------------- compile

_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "fullgraph": (bool,),
    "dynamic": (bool, type(None)),
    "mode": (str, type(None)),
    "options": (Mapping, type(None)),
    "disable": (bool,),
    "name": (str, type(None)),
    "recompile_limit": (int, type(None)),
    "isolate_recompiles": (bool,),
}


def resolve_compile_options(compile: bool | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Check a ``compile=`` argument against the installed ``torch.compile``, before any
    compilation.

    Args:
        compile: False or None (no compilation), True (``torch.compile``'s defaults), or a
            mapping of ``torch.compile`` keyword arguments (``mode``, ``fullgraph``,
            ``dynamic``, ``backend``, ``options``, ...; ``model`` excluded).

    Returns:
        None for no compilation, else the keyword arguments to pass to ``torch.compile``.

    Raises:
        ConfigurationError: ``compile`` is of another type; an option name ``torch.compile``
            does not take (the message lists those it takes); a value of the wrong type; a
            ``mode`` or ``backend`` the installed torch does not know (the message lists the
            known ones); an Inductor ``options`` key it does not know; ``mode`` and
            ``options`` together (torch refuses both).
    """
    if compile is None or compile is False:
        return None
    if compile is True:
        return {}
    if not isinstance(compile, Mapping):
        raise ConfigurationError(
            f"compile must be True, False or a dict of torch.compile options; got "
            f"{type(compile).__name__} {compile!r}."
        )
    taken = [p for p in inspect.signature(torch.compile).parameters if p != "model"]
    options = dict(compile)
    for key, value in options.items():
        if key not in taken:
            raise ConfigurationError(
                f"torch.compile (torch {torch.__version__}) takes no option {key!r}."
                f"{_did_you_mean(str(key), taken)} Options it takes: {', '.join(taken)}."
            )
        expected = _OPTION_TYPES.get(key)
        if (expected is not None and not isinstance(value, expected)) or (
            key == "recompile_limit" and isinstance(value, bool)
        ):
            names = " or ".join("None" if t is type(None) else t.__name__ for t in expected or ())
            raise ConfigurationError(
                f"The torch.compile option {key!r} must be {names}; got "
                f"{type(value).__name__} {value!r}."
            )
    if options.get("mode") is not None and options.get("options") is not None:
        raise ConfigurationError(
            "torch.compile takes 'mode' or 'options', not both: put the settings of the mode "
            "you want into 'options', or drop 'options'."
        )
    _check_backend(options.get("backend"))
    if options.get("mode") is not None:
        _check_mode(options["mode"])
    if options.get("options") is not None and options.get("backend") in (None, "inductor"):
        _check_inductor_options(options["options"])
    return options


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _check_backend(backend: Any) -> None:
    if backend is None or callable(backend):
        return
    if not isinstance(backend, str):
        raise ConfigurationError(
            f"The torch.compile option 'backend' must be a backend name or a callable; got "
            f"{type(backend).__name__} {backend!r}."
        )
    from torch._dynamo import list_backends  # heavy import: only when compiling

    known = sorted(list_backends(exclude_tags=()))
    if backend not in known:
        raise ConfigurationError(
            f"torch.compile backend {backend!r} is unknown to torch {torch.__version__}."
            f"{_did_you_mean(backend, known)} Known backends: {', '.join(known)}."
        )


def _check_mode(mode: str) -> None:
    from torch._inductor import list_mode_options

    known = list(dict.fromkeys(["default", *list_mode_options()]))
    if mode not in known:
        raise ConfigurationError(
            f"torch.compile mode {mode!r} is unknown to torch {torch.__version__}."
            f"{_did_you_mean(mode, known)} Known modes: {', '.join(known)}."
        )


def _check_inductor_options(options: Mapping[str, Any]) -> None:
    from torch._inductor import list_options

    known = list_options()
    unknown = [key for key in options if key not in known]
    if unknown:
        raise ConfigurationError(
            f"torch.compile options {unknown} are not Inductor settings of torch "
            f"{torch.__version__}.{_did_you_mean(str(unknown[0]), known)} See "
            "torch._inductor.list_options() for the settings it takes."
        )


def compile_network(network: nn.Module, options: Mapping[str, Any] | None) -> nn.Module:
    """The module a training step should call: ``torch.compile(network, **options)``, or
    ``network`` itself when ``options`` is None or ``network`` is already compiled.

    ``torch.compile`` returns at once; the network is traced and compiled on its first call
    (again when its train/eval mode or input shapes change, as torch decides). The compiled
    module shares its parameters with ``network``: keep saving ``network`` (or
    :func:`unwrap_compiled` of the result), whose parameter names carry no ``_orig_mod.``.

    Args:
        network: The eager network.
        options: From :func:`resolve_compile_options`.

    Returns:
        The module to call for forward passes.

    Raises:
        ConfigurationError: ``torch.compile`` refused the options or cannot run with this
            Python/torch (the message gives torch's reason); nothing was compiled.
    """
    if options is None or _is_compiled(network):
        return network
    try:
        compiled: Callable[..., Any] = torch.compile(network, **options)
    except (RuntimeError, ValueError, TypeError, KeyError, AssertionError) as exc:
        raise ConfigurationError(
            f"torch.compile (torch {torch.__version__}) refused options {dict(options)!r}: "
            f"{exc}. Fix the options or pass compile=False."
        ) from exc
    assert isinstance(compiled, nn.Module)
    return compiled


def _is_compiled(module: Any) -> bool:
    return isinstance(getattr(module, _COMPILED_PREFIX, None), nn.Module)


def unwrap_compiled(module: nn.Module) -> nn.Module:
    """The eager network inside a ``torch.compile`` wrapper (``module`` itself when it is not
    one); its ``state_dict()`` keys have no ``_orig_mod.``."""
    while _is_compiled(module):
        inner = getattr(module, _COMPILED_PREFIX)
        assert isinstance(inner, nn.Module)
        module = inner
    return module


def strip_compile_prefix(state_dict: Mapping[str, Any]) -> collections.OrderedDict[str, Any]:
    """A copy of a network ``state_dict`` with every ``_orig_mod`` name component removed, so
    that a state saved from a compiled network (or one with compiled submodules) loads into
    the eager network. Other keys are copied as they are; PyTorch's ``_metadata`` (module
    versions) is carried over with its keys renamed the same way.

    Args:
        state_dict: Parameter and buffer names to tensors.

    Returns:
        The renamed copy (the tensors themselves are not copied).

    Raises:
        CheckpointError: Two keys become the same after renaming (e.g. both ``w`` and
            ``_orig_mod.w``): the state mixes two networks.
    """
    out: collections.OrderedDict[str, Any] = collections.OrderedDict()
    for key, value in state_dict.items():
        new = _strip(key)
        if new in out:
            raise CheckpointError(
                f"The state dict holds both {new!r} and a compiled copy of it ({key!r}); "
                "it mixes an eager and a compiled network. Save one network's state_dict()."
            )
        out[new] = value
    metadata = getattr(state_dict, "_metadata", None)
    if isinstance(metadata, Mapping):
        renamed: collections.OrderedDict[str, Any] = collections.OrderedDict()
        for key, value in metadata.items():
            renamed[_strip(key)] = value  # the inner module's entry wins over the wrapper's
        out._metadata = renamed  # type: ignore[attr-defined]
    return out


def _strip(key: str) -> str:
    if _COMPILED_PREFIX not in key:
        return key
    return ".".join(part for part in key.split(".") if part != _COMPILED_PREFIX)
