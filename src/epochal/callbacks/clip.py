"""Gradient clipping as callbacks, applied once per optimizer step.

Both act in ``on_backward_end``: after the gradients of the step's batches are accumulated
and normalised (``batches_per_step``), before ``optimizer.step()``. So clipping under
accumulation clips the gradient of the whole group, as clipping the gradient of one big
batch would.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from epochal.callbacks.base import Callback
from epochal.exceptions import ConfigurationError

__all__ = ["ClipNorm", "ClipValue"]


def _parameter_list(parameters: Iterable[torch.Tensor] | torch.Tensor) -> list[torch.Tensor]:
    """The parameters as a list (a generator such as ``network.parameters()`` would be used
    up by the first step)."""
    if isinstance(parameters, torch.Tensor):
        return [parameters]
    out = list(parameters)
    for p in out:
        if not isinstance(p, torch.Tensor):
            raise TypeError(
                f"parameters must be tensors (e.g. network.parameters()); got "
                f"{type(p).__name__}."
            )
    return out


class ClipNorm(Callback):
    """Rescale the gradients so that their joint norm is at most ``max_norm``
    (``torch.nn.utils.clip_grad_norm_``), once per optimizer step.

    Args:
        parameters: The parameters whose gradients are clipped (``network.parameters()``,
            a list, or one tensor). Kept as a list.
        max_norm: Largest allowed norm of all the gradients taken together.
        norm_type: Order of the norm (``2``, ``1``, ``float('inf')``...).
        error_if_nonfinite: Raise ``RuntimeError`` when the total norm is nan or inf.
        foreach: PyTorch's ``foreach`` switch (None: its default for the device).

    Attributes:
        last_total_norm: The total norm of the gradients before the last clipping, a 0-dim
            tensor on the parameters' device (read it with ``float()``; None before the
            first step). Keeping it costs no host sync.

    Raises:
        ConfigurationError: ``max_norm`` is not positive.
    """

    def __init__(
        self,
        parameters: Iterable[torch.Tensor] | torch.Tensor,
        max_norm: float,
        norm_type: float = 2.0,
        *,
        error_if_nonfinite: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__()
        if not max_norm > 0:
            raise ConfigurationError(f"max_norm must be > 0; got {max_norm!r}.")
        self.parameters = _parameter_list(parameters)
        self.max_norm = float(max_norm)
        self.norm_type = float(norm_type)
        self.error_if_nonfinite = error_if_nonfinite
        self.foreach = foreach
        self.last_total_norm: torch.Tensor | None = None

    def on_backward_end(self, batch_number: int) -> None:
        """Clip the step's final gradients in place."""
        self.last_total_norm = torch.nn.utils.clip_grad_norm_(
            self.parameters,
            self.max_norm,
            norm_type=self.norm_type,
            error_if_nonfinite=self.error_if_nonfinite,
            foreach=self.foreach,
        )


class ClipValue(Callback):
    """Clamp every gradient element into ``[-clip_value, clip_value]``
    (``torch.nn.utils.clip_grad_value_``), once per optimizer step.

    Args:
        parameters: The parameters whose gradients are clipped (``network.parameters()``,
            a list, or one tensor). Kept as a list.
        clip_value: Largest allowed absolute value of a gradient element.
        foreach: PyTorch's ``foreach`` switch (None: its default for the device).

    Raises:
        ConfigurationError: ``clip_value`` is not positive.
    """

    def __init__(
        self,
        parameters: Iterable[torch.Tensor] | torch.Tensor,
        clip_value: float,
        *,
        foreach: bool | None = None,
    ) -> None:
        super().__init__()
        if not clip_value > 0:
            raise ConfigurationError(f"clip_value must be > 0; got {clip_value!r}.")
        self.parameters = _parameter_list(parameters)
        self.clip_value = float(clip_value)
        self.foreach = foreach

    def on_backward_end(self, batch_number: int) -> Any:
        """Clamp the step's final gradients in place."""
        torch.nn.utils.clip_grad_value_(self.parameters, self.clip_value, foreach=self.foreach)
