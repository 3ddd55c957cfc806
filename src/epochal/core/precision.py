"""Numeric precision of a training step: which dtype the forward pass runs in, whether the
loss is scaled, and the backward/unscale/step sequence that goes with it.

Pure building blocks for the training step. A step in mixed precision reads::

    precision = MixedPrecision(resolve_precision("16-mixed"), device_type="cuda")
    with precision.autocast():                 # forward pass and loss in float16/bfloat16
        y_pred = network(x)
        loss = loss_function(y_pred, y)
    precision.backward(loss)                   # loss scaled first when a scaler is in use
    precision.unscale_(optimizer)              # gradients back to their true size...
    clip_grad_norm_(network.parameters(), 1.0) # ...so that clipping sees them
    stepped = precision.step(optimizer)        # False: the scaler skipped the step (inf/NaN)
    precision.update()                         # scale grows or backs off
    metrics_input = float32_outputs(y_pred.detach())

With ``'32'`` every method reduces to the plain PyTorch call (``loss.backward()``,
``optimizer.step()``) and adds no host sync. The shell checks that the device and the
installed torch can run a plan (:mod:`epochal.precision`); this module only names plans.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import torch

from epochal.exceptions import CheckpointError, ConfigurationError

__all__ = [
    "PRECISIONS",
    "MixedPrecision",
    "PrecisionPlan",
    "float32_outputs",
    "resolve_precision",
]


@attrs.frozen(kw_only=True)
class PrecisionPlan:
    """What a precision name means for a training step.

    Attributes:
        name: The precision's name, one of :data:`PRECISIONS`.
        autocast_dtype: The dtype autocast runs eligible operations in, or None for no
            autocast (``'32'``).
        scaled: True when the loss is multiplied by a dynamic scale before the backward pass
            (``torch.amp.GradScaler``), so that small float16 gradients do not flush to zero.
    """

    name: str
    autocast_dtype: torch.dtype | None
    scaled: bool

    @property
    def mixed(self) -> bool:
        """True when the forward pass runs under autocast."""
        return self.autocast_dtype is not None


_PLANS: dict[str, PrecisionPlan] = {
    "32": PrecisionPlan(name="32", autocast_dtype=None, scaled=False),
    "bf16-mixed": PrecisionPlan(name="bf16-mixed", autocast_dtype=torch.bfloat16, scaled=False),
    "16-mixed": PrecisionPlan(name="16-mixed", autocast_dtype=torch.float16, scaled=True),
}

#: The precision names a training accepts, the default first.
PRECISIONS: tuple[str, ...] = tuple(_PLANS)

_HINTS = {
    "32-true": "32", "fp32": "32", "float32": "32", "32": "32",
    "bf16": "bf16-mixed", "bfloat16": "bf16-mixed", "bf16-true": "bf16-mixed",
    "16": "16-mixed", "fp16": "16-mixed", "float16": "16-mixed", "half": "16-mixed",
    "16-true": "16-mixed", "amp": "16-mixed",
}


def resolve_precision(precision: str | PrecisionPlan) -> PrecisionPlan:
    """The plan a precision name stands for (no check of the device: see
    :func:`epochal.precision.prepare_precision`).

    Args:
        precision: ``'32'`` (float32, no autocast), ``'bf16-mixed'`` (autocast to bfloat16)
            or ``'16-mixed'`` (autocast to float16 with a dynamic loss scale); a plan is
            returned as is.

    Returns:
        The :class:`PrecisionPlan`.

    Raises:
        ConfigurationError: The name is not one of :data:`PRECISIONS` (the message lists them
            and suggests the closest one for names such as ``'bf16'``, ``16`` or ``'fp16'``).
    """
    if isinstance(precision, PrecisionPlan):
        return precision
    if isinstance(precision, str) and precision in _PLANS:
        return _PLANS[precision]
    hint = _HINTS.get(str(precision).strip().lower())
    suggestion = f" Did you mean {hint!r}?" if hint is not None else ""
    raise ConfigurationError(
        f"Unknown precision {precision!r}. Expected one of "
        f"{', '.join(repr(p) for p in PRECISIONS)} (a string).{suggestion}"
    )


class MixedPrecision:
    """Autocast and loss scaling for the training step of one network and its optimizers.

    Holds the ``torch.amp.GradScaler`` when the plan is scaled; its state (scale, growth
    tracker) is part of :meth:`state_dict` so that a resumed training scales exactly as an
    uninterrupted one. Per optimizer step the caller runs :meth:`backward` for each batch of
    the group, then :meth:`unscale_` (before anything that reads gradients, e.g. clipping),
    :meth:`step` and :meth:`update`.

    Host syncs: none for ``'32'`` and ``'bf16-mixed'``. With a scaler, :meth:`step` reads
    whether the gradients held inf/NaN once per optimizer step (GradScaler itself already
    waits for that value before deciding to call ``optimizer.step()``, for optimizers without
    built-in AMP support).

    Args:
        plan: From :func:`resolve_precision`.
        device_type: ``torch.device(...).type`` of the network's parameters (``'cpu'``,
            ``'cuda'``, ...): where autocast applies and the scaler keeps its scale.
        init_scale: The scaler's first scale (GradScaler's default, ``2**16``).
        growth_interval: Unskipped steps after which the scale doubles (GradScaler's
            default, 2000).

    Raises:
        ConfigurationError: ``device_type`` is not a string, or the scaler settings are out
            of range.
    """

    def __init__(
        self,
        plan: PrecisionPlan,
        device_type: str,
        *,
        init_scale: float = 2.0**16,
        growth_interval: int = 2000,
    ) -> None:
        if not isinstance(device_type, str) or ":" in device_type:
            raise ConfigurationError(
                f"device_type must be a device type such as 'cpu' or 'cuda' (torch.device(...)"
                f".type); got {device_type!r}."
            )
        if not init_scale > 0 or not isinstance(growth_interval, int) or growth_interval < 1:
            raise ConfigurationError(
                f"The loss scaler needs init_scale > 0 and an integer growth_interval >= 1; got "
                f"init_scale={init_scale!r}, growth_interval={growth_interval!r}."
            )
        self.plan = plan
        self.device_type = device_type
        self.scaler: torch.amp.GradScaler | None = (
            torch.amp.GradScaler(
                device_type, init_scale=init_scale, growth_interval=growth_interval
            )
            if plan.scaled
            else None
        )
        self._unscaled: set[int] = set()
        #: True when the last :meth:`step` was skipped by the scaler (inf/NaN gradients).
        self.last_step_skipped = False
        #: Optimizer steps the scaler skipped so far (host counter, no sync of its own).
        self.skipped_steps = 0

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """A context manager for the forward pass and the loss: ``torch.autocast`` with the
        plan's dtype on :attr:`device_type`, or a no-op for ``'32'``.

        Enter it around the forward pass and the loss only, never around the backward pass.
        """
        dtype = self.plan.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=dtype)

    def backward(self, loss: torch.Tensor, scale: float | None = None) -> None:
        """Back-propagate ``loss`` (times ``scale`` when given, for gradient accumulation),
        multiplied first by the scaler's current scale when the plan is scaled.

        Args:
            loss: A 0-dim tensor with a graph.
            scale: Optional weight of this batch (e.g. its sample count).
        """
        if scale is not None:
            loss = loss * scale
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        loss.backward()  # type: ignore[no-untyped-call]

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide ``optimizer``'s gradients by the current scale, in place, so that what reads
        them next (clipping, logging) sees their true values. No-op without a scaler, and
        when already done for this optimizer since the last :meth:`update`. No host sync.
        """
        if self.scaler is None or id(optimizer) in self._unscaled:
            return
        self.scaler.unscale_(optimizer)
        self._unscaled.add(id(optimizer))

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Apply ``optimizer.step()`` unless the scaler found inf/NaN gradients.

        Returns:
            True when the optimizer stepped; False when the scaler skipped the step (the
            parameters and the optimizer's state are unchanged). A per-step LR schedule
            should not count a skipped step. Always True without a scaler (no host sync).
        """
        scaler = self.scaler
        if scaler is None:
            optimizer.step()
            return True
        self.unscale_(optimizer)
        scaler.step(optimizer)
        # GradScaler keeps this step's inf/NaN flags per device until update(); the values are
        # already final (step() waited for them), so reading them is a copy, not a wait.
        found = scaler._per_optimizer_states[id(optimizer)]["found_inf_per_device"]
        skipped = any(bool(flag.item()) for flag in found.values())
        self.last_step_skipped = skipped
        self.skipped_steps += int(skipped)
        return not skipped

    def update(self) -> None:
        """Adjust the scale after the optimizer steps of this iteration: back off after a
        skipped step, grow after ``growth_interval`` good ones. No-op without a scaler."""
        self._unscaled.clear()
        if self.scaler is not None:
            self.scaler.update()

    @property
    def loss_scale(self) -> float:
        """The scaler's current scale, 1.0 without a scaler (a host sync with one)."""
        return 1.0 if self.scaler is None else float(self.scaler.get_scale())

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: ``{'precision': name, 'scaler': GradScaler state or {}}``
        (Python numbers only; take it after :meth:`update`)."""
        scaler = {} if self.scaler is None else self.scaler.state_dict()
        return {"precision": self.plan.name, "scaler": scaler}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`.

        The scaler's state is restored when both this object and the checkpoint have one; a
        checkpoint written at another precision leaves this scaler at its initial state (a
        change of precision on resume is allowed).

        Raises:
            CheckpointError: ``state`` is not a mapping with ``'precision'`` and ``'scaler'``,
                or its scaler state lacks a GradScaler key.
        """
        if not isinstance(state, Mapping) or not {"precision", "scaler"} <= set(state):
            raise CheckpointError(
                "A precision state must be a mapping with keys 'precision' and 'scaler' (as "
                f"MixedPrecision.state_dict() returns); got {_describe(state)}."
            )
        scaler_state = state["scaler"]
        if self.scaler is None or not scaler_state:
            return
        needed = {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}
        if not isinstance(scaler_state, Mapping) or not needed <= set(scaler_state):
            raise CheckpointError(
                f"The precision state's 'scaler' entry must hold GradScaler's keys "
                f"{sorted(needed)}; got {_describe(scaler_state)}. The checkpoint is damaged "
                "or was not written by epochal."
            )
        self.scaler.load_state_dict(dict(scaler_state))


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        return f"keys {sorted(map(str, obj))}"
    return type(obj).__name__


_LOW = (torch.float16, torch.bfloat16)


def float32_outputs(obj: Any) -> Any:
    """``obj`` with every float16/bfloat16 tensor cast to float32 (tuples, lists and dicts
    walked), so that metrics are computed in float32 after an autocast forward pass. Other
    tensors and values are returned as they are (the same objects, no copy).

    Shapes:
        Unchanged.
    """
    if isinstance(obj, torch.Tensor):
        return obj.float() if obj.dtype in _LOW else obj
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple
        return type(obj)(*_iter_cast(obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_iter_cast(obj))
    if isinstance(obj, dict):
        return {k: float32_outputs(v) for k, v in obj.items()}
    return obj


def _iter_cast(items: Any) -> Iterator[Any]:
    for item in items:
        yield float32_outputs(item)
