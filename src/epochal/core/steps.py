"""One batch's step: the helpers every step function shares, and what a pass needs besides
its batches.

:func:`epochal.core.loop.train_step` / :func:`~epochal.core.loop.eval_step` (float32) and the
mixed-precision steps of :mod:`epochal.core.mixed_step` are built from the same parts: calling
the network with a clear error when it rejects a batch (:func:`expected_input` says what its
first layer wanted), the loss with its shape check (:func:`compute_loss`), the batch metric
values, detaching outputs and scaling accumulated gradients. Both modules import these from
here, so neither imports the other. Pure: no I/O, no clock, no global state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import torch

from epochal.core.batches import forward
from epochal.core.metrics import BatchMetric, EpochMetricState
from epochal.core.precision import MixedPrecision
from epochal.core.records import PassPhase
from epochal.exceptions import NetworkInputError, ShapeMismatchError, also_as

__all__ = ["EpochSetup", "compute_loss", "expected_input"]

_NO_LOSS = float("nan")


def _describe(obj: Any, *, dtypes: bool = True) -> str:
    """Shapes (and, with ``dtypes``, dtypes) of the tensors in ``obj``, nested as given:
    ``(8, 5) float32``, or ``(8, 5)`` without dtypes; other objects by their type name."""
    if isinstance(obj, torch.Tensor):
        shape = str(tuple(obj.shape))
        return f"{shape} {str(obj.dtype).removeprefix('torch.')}" if dtypes else shape
    if isinstance(obj, (tuple, list)):
        return "(" + ", ".join(_describe(o, dtypes=dtypes) for o in obj) + ")"
    if isinstance(obj, dict):
        return "{" + ", ".join(
            f"{k!r}: {_describe(v, dtypes=dtypes)}" for k, v in obj.items()) + "}"
    return type(obj).__name__


def _shape_of(obj: Any) -> str:
    """:func:`_describe` without dtypes: ``(8, 5)``."""
    return _describe(obj, dtypes=False)


def _reason(exc: BaseException) -> str:
    """An exception's message without its trailing period (it is embedded in a sentence)."""
    return str(exc).strip().rstrip(".")


def expected_input(network: torch.nn.Module) -> str | None:
    """What the network's first layer expects, when it can be read: the ``in_features`` of a
    first ``Linear`` or the ``in_channels`` of a first convolution; else None."""
    for module in network.modules():
        if isinstance(module, torch.nn.Linear) and module.in_features > 0:
            return (f"first layer ({type(module).__name__}) expects inputs whose last "
                    f"dimension is {module.in_features}, of dtype "
                    f"{str(module.weight.dtype).removeprefix('torch.')}")
        if isinstance(module, torch.nn.modules.conv._ConvNd) and module.in_channels > 0:
            return (f"first layer ({type(module).__name__}) expects "
                    f"{module.in_channels} input channels (dimension 1), of dtype "
                    f"{str(module.weight.dtype).removeprefix('torch.')}")
    return None


class _NetworkRejected(NetworkInputError):
    """The network's forward raised on a batch (re-raised by :func:`run_epoch` with the
    phase and the batch index)."""


def _in_batch(exc: _NetworkRejected, phase: PassPhase, epoch: int, step: int) -> NetworkInputError:
    where = f"epoch {epoch}, " if epoch else ""
    message = f"In the {phase.value} pass ({where}batch {step}), {exc}"
    return also_as(NetworkInputError, exc.__cause__)(message)


def _call_network(network: torch.nn.Module, x: Any) -> Any:
    try:
        return forward(network, x)
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        expected = expected_input(network)
        raise also_as(_NetworkRejected, exc)(
            f"the network {type(network).__name__} rejected the input of shape and dtype "
            f"{_describe(x)}: {_reason(exc)}. "
            + (f"The network's {expected}. " if expected else "")
            + "Check the input's shape (batch dimension first), dtype and the network's first "
            "layer."
        ) from exc


def compute_loss(loss_function: Callable[..., Any], y_pred: Any, y_true: Any) -> torch.Tensor:
    """``loss_function(y_pred, y_true)``, with a shape error turned into a clear message.

    Raises:
        ShapeMismatchError: The loss rejected the shapes; the message gives both. It is also
            an instance of the loss's error's built-in class (``RuntimeError`` for a wrong
            dtype, ``IndexError`` for a target out of range...).
    """
    try:
        loss = loss_function(y_pred, y_true)
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, ValueError, IndexError) as exc:
        raise also_as(ShapeMismatchError, exc)(
            f"The loss function {getattr(loss_function, '__name__', type(loss_function).__name__)}"
            f" rejected the network output of shape {_shape_of(y_pred)} against the target of "
            f"shape {_shape_of(y_true)}: {_reason(exc)}. Check the network's last layer and the "
            "targets."
        ) from exc
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        shape = _shape_of(loss)
        raise ShapeMismatchError(
            f"The loss function must return a 0-dim tensor (use reduction='mean'); it returned "
            f"{shape}."
        )
    return loss


@attrs.frozen(kw_only=True)
class EpochSetup:
    """What one pass needs besides its batches.

    Attributes:
        network: The network (its mode is set by the pass: train or eval).
        loss_function: ``(y_pred, y_true) -> 0-dim tensor``; None for prediction.
        batch_metrics: Resolved batch metrics.
        epoch_metrics: Resolved epoch metrics (reset at the start of every pass).
        device: Where batches are moved, or None to leave them where they are.
        optimizer: Needed for training passes.
        batches_per_step: Batches whose gradients are accumulated per optimizer step.
        precision: Autocast and loss scaling for ``'bf16-mixed'``/``'16-mixed'`` (the steps
            of :mod:`epochal.core.mixed_step`); None for plain float32 steps.
    """

    network: torch.nn.Module
    loss_function: Callable[..., Any] | None
    batch_metrics: Sequence[BatchMetric] = ()
    epoch_metrics: Sequence[EpochMetricState] = ()
    device: torch.device | None = None
    optimizer: torch.optim.Optimizer | None = None
    batches_per_step: int = 1
    precision: MixedPrecision | None = None

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Log names of the batch metrics, in order."""
        return tuple(name for metric in self.batch_metrics for name in metric.names)


def _batch_metric_values(setup: EpochSetup, y_pred: Any, y_true: Any) -> tuple[torch.Tensor, ...]:
    values: list[torch.Tensor] = []
    for metric in setup.batch_metrics:
        values.extend(metric(y_pred, y_true))
    return tuple(values)


def _detach(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, (tuple, list)):
        return type(obj)(_detach(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _detach(v) for k, v in obj.items()}
    return obj


def _scale_gradients(parameters: Iterable[torch.nn.Parameter], factor: float) -> None:
    grads = [p.grad for p in parameters if p.grad is not None]
    if grads:
        torch._foreach_mul_(grads, factor)


