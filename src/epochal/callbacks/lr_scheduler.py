"""Learning-rate schedules as callbacks: one per scheduler class of ``torch.optim.lr_scheduler``.

Each callback takes the arguments of its PyTorch namesake minus the optimizer
(``StepLR(step_size=2, gamma=0.1)``) and builds the PyTorch scheduler on ``on_train_begin``
with the model's optimizer (``self.model.optimizer``); the scheduler is then available as
``callback.scheduler``. The classes are generated from the public scheduler classes of the
installed PyTorch, so a scheduler PyTorch adds is available here too.

When a schedule steps:

* Most schedulers step once per epoch, at ``on_epoch_end`` (also after an epoch a stop
  request cut short), as Poutyne does. The ``lr`` in that epoch's logs is the learning rate
  the epoch trained with.
* ``OneCycleLR`` and ``CyclicLR`` are per-step schedules: they step once per optimizer step,
  after ``optimizer.step()``: at the ``on_train_batch_begin`` of the batch after the step
  (or at ``on_epoch_end`` for an epoch's last step, trailing partial accumulation group
  included). So every optimizer step uses the learning rate PyTorch's schedule gives it, and
  ``on_backward_end`` hooks see that learning rate. With ``batches_per_step=N`` the schedule
  advances once per ``N`` batches: ``total_steps`` / ``steps_per_epoch`` count optimizer
  steps, as in a hand-written loop. The ``lr`` in the epoch logs is the one the epoch's last
  optimizer step used.
  With ``precision='16-mixed'``, a step the loss scaler skipped (inf/NaN gradients, the
  parameters unchanged) is not counted: the schedule does not advance for it.
* :class:`ReduceLROnPlateau` steps at ``on_epoch_end`` on the monitored log value.

``SequentialLR`` and ``ChainedScheduler`` take other schedulers: pass callbacks of this module
(``SequentialLR(schedulers=[LinearLR(total_iters=2), ExponentialLR(gamma=0.9)],
milestones=[2])``), factories ``optimizer -> torch scheduler``, or PyTorch schedulers already
built on the model's optimizer. They step per optimizer step when every member is a per-step
callback (``OneCycleLR``/``CyclicLR``), else per epoch.

Calling ``fit`` again with the same callback and optimizer continues the schedule; a state
loaded with ``load_state_dict`` before training begins is applied as soon as the scheduler is
built (and the optimizer's learning rates are set to the restored schedule's).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

import torch
from torch.optim import lr_scheduler as _torch_lr_scheduler

from epochal._io import torch_from_bytes
from epochal.callbacks.base import Callback
from epochal.exceptions import ConfigurationError, MonitorKeyError
from epochal.precision import scaler_skipped_last_step

__all__ = [
    "ReduceLROnPlateau",
    "SchedulerFactory",
    "TorchLRScheduler",
    "get_scheduler",
    "scheduler_names",
]

#: Builds a PyTorch scheduler on the optimizer it is given.
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]

_LRSchedulerBase: type[Any] = getattr(
    _torch_lr_scheduler, "LRScheduler", getattr(_torch_lr_scheduler, "_LRScheduler", object)
)
_PER_STEP = frozenset({"OneCycleLR", "CyclicLR"})
_COMPOSITE = frozenset({"SequentialLR", "ChainedScheduler"})
#: Optimizer hyper-parameters that cyclic schedules overwrite when they are built; a restored
#: state puts the optimizer's values back.
_CYCLED_KEYS = ("momentum", "betas")


def _signature_without_optimizer(torch_class: type[Any]) -> inspect.Signature | None:
    try:
        signature = inspect.signature(torch_class)
    except (TypeError, ValueError):
        return None
    parameters = [p for name, p in signature.parameters.items() if name != "optimizer"]
    return signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty)


class TorchLRScheduler(Callback):
    """Base of the scheduler callbacks: wraps one ``torch.optim.lr_scheduler`` class.

    Subclasses set ``torch_class``; the constructor takes that class's arguments minus the
    optimizer and checks them against its signature right away.

    Attributes:
        torch_class: The PyTorch scheduler class.
        step_per_batch: True for per-step schedules (stepped once per optimizer step), False
            for per-epoch ones.
        scheduler: The PyTorch scheduler, built at ``on_train_begin``; None before.

    Raises:
        TypeError: The arguments do not fit the PyTorch class's signature (the message is
            Python's, naming the argument).
        ConfigurationError: An ``optimizer`` argument was given (it comes from the model).
    """

    torch_class: ClassVar[type[Any]]
    step_per_batch: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        if "optimizer" in kwargs:
            raise ConfigurationError(
                f"{type(self).__name__} takes the arguments of "
                f"torch.optim.lr_scheduler.{self.torch_class.__name__} minus the optimizer, "
                "which comes from the Model at the start of training; remove optimizer=."
            )
        self.args = args
        self.kwargs = kwargs
        self._check_arguments()
        self.scheduler: Any | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._pending_state: dict[str, Any] | None = None
        self._step_due = False
        self._training = False

    @property
    def used_hooks(self) -> frozenset[str]:
        """The hooks this callback acts on (the bus adapter may subscribe only those)."""
        hooks = {"on_train_begin", "on_epoch_end", "on_train_end"}
        if self.step_per_batch:
            hooks |= {"on_backward_end", "on_train_batch_begin"}
        return frozenset(hooks)

    def _check_arguments(self) -> None:
        signature = _signature_without_optimizer(self.torch_class)
        if signature is None:
            return
        try:
            signature.bind(*self.args, **self.kwargs)
        except TypeError as exc:
            raise TypeError(
                f"{type(self).__name__}{signature}: {exc}. The arguments are those of "
                f"torch.optim.lr_scheduler.{self.torch_class.__name__} minus the optimizer."
            ) from None

    def create(self, optimizer: torch.optim.Optimizer) -> Any:
        """A new PyTorch scheduler of ``torch_class`` on ``optimizer`` with this callback's
        arguments (does not touch :attr:`scheduler`)."""
        return self.torch_class(optimizer, *self.args, **self.kwargs)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """The PyTorch scheduler's ``state_dict()``; when a loaded state waits for the next
        ``on_train_begin``, that state (``{}`` when there is neither)."""
        if self._pending_state is not None:
            return dict(self._pending_state)
        if self.scheduler is not None:
            state: dict[str, Any] = self.scheduler.state_dict()
            return state
        return {}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`. Outside training the state is kept and applied at the
        next ``on_train_begin``, right after the scheduler is built; during training it is
        applied now. Either way the optimizer's learning rates are then set to the restored
        schedule's last ones. ``{}`` is a no-op."""
        state = dict(state_dict)
        if not state:
            return
        if self.scheduler is None or not self._training:
            self._pending_state = state
        else:
            self._apply_state(state, restore=None)

    def save_state(self, f: BinaryIO) -> None:
        """Write :meth:`state_dict` to the binary file object ``f`` with ``torch.save``
        (Poutyne's method; read it back with :meth:`load_state`).

        Args:
            f: A file object open for binary writing.
        """
        torch.save(self.state_dict(), f)

    def load_state(self, f: BinaryIO) -> None:
        """Read a state written by :meth:`save_state` from the binary file object ``f`` and
        restore it with :meth:`load_state_dict` (Poutyne's method).

        The file is read with ``torch.load(weights_only=True)``, to the CPU.

        Args:
            f: A file object open for binary reading.

        Raises:
            CheckpointError: The file is not a torch checkpoint, or holds a pickled object
                outside PyTorch's weights-only allow-list.
        """
        self.load_state_dict(torch_from_bytes(f.read(), source=getattr(f, "name", "<file>")))

    def _apply_state(
        self, state: dict[str, Any], restore: list[dict[str, Any]] | None
    ) -> None:
        scheduler = self.scheduler
        assert scheduler is not None and self._optimizer is not None
        scheduler.load_state_dict(state)
        groups = self._optimizer.param_groups
        last_lr = getattr(scheduler, "_last_lr", None)
        if last_lr is not None and len(last_lr) == len(groups):
            for group, lr in zip(groups, last_lr):
                group["lr"] = lr
        if restore is not None:
            for group, saved in zip(groups, restore):
                group.update(saved)

    # ------------------------------------------------------------------ hooks

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        """Build the PyTorch scheduler on ``self.model.optimizer`` (keep the current one
        when it is already on that optimizer and no state is waiting to be loaded)."""
        optimizer = self.model.optimizer
        if optimizer is None:
            raise ConfigurationError(
                f"{type(self).__name__} needs the Model's optimizer; this Model has none."
            )
        self._step_due = False
        self._training = True
        if (
            self.scheduler is not None
            and self._optimizer is optimizer
            and self._pending_state is None
        ):
            return
        pending = self._pending_state
        saved = None
        if pending is not None:
            saved = [{k: g[k] for k in _CYCLED_KEYS if k in g} for g in optimizer.param_groups]
        self._optimizer = optimizer
        self.scheduler = self.create(optimizer)
        if pending is not None:
            self._pending_state = None
            self._apply_state(pending, restore=saved)

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        """Step a per-epoch schedule; catch up a per-step schedule's pending step."""
        if self.step_per_batch:
            self._step_if_due()
        elif self.scheduler is not None:
            self.scheduler.step()

    def on_train_end(self, logs: dict[str, Any]) -> None:
        """Catch up a per-step schedule's pending step."""
        if self.step_per_batch:
            self._step_if_due()
        self._training = False

    def _step_if_due(self) -> None:
        if self._step_due and self.scheduler is not None:
            self._step_due = False
            if not scaler_skipped_last_step(getattr(self, "model", None)):
                self.scheduler.step()


class _PerStepScheduler(TorchLRScheduler):
    """A scheduler stepped once per optimizer step, after ``optimizer.step()``.

    ``on_backward_end`` marks a step as due (the optimizer is about to step); the scheduler
    steps at the next ``on_train_batch_begin`` (the optimizer has stepped by then), at
    ``on_epoch_end`` for an epoch's last optimizer step, or at the next ``on_backward_end``,
    whichever comes first. None of these hooks carries batch logs, so stepping a per-step
    schedule costs no device-to-host copy per batch.
    """

    step_per_batch = True

    def on_backward_end(self, batch_number: int) -> None:
        """Mark a scheduler step as due (a step still due from an earlier optimizer step is
        done first, so the coming optimizer step uses its learning rate)."""
        if self.step_per_batch:
            self._step_if_due()
            self._step_due = True

    def on_train_batch_begin(self, batch_number: int, logs: dict[str, Any]) -> None:
        """Step the schedule when the previous batch ended with an optimizer step."""
        if self.step_per_batch:
            self._step_if_due()


class _CompositeScheduler(_PerStepScheduler):
    """``SequentialLR`` / ``ChainedScheduler``: members are callbacks, factories or PyTorch
    schedulers; per step only when every member is a per-step callback."""

    step_per_batch = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        members = self._members()
        if not isinstance(members, Sequence) or isinstance(members, (str, bytes)):
            raise ConfigurationError(
                f"{type(self).__name__} takes a list of schedulers (callbacks of "
                "epochal.callbacks.lr_scheduler, factories optimizer -> scheduler, or torch "
                f"schedulers); got {type(members).__name__}."
            )
        for member in members:
            if not (isinstance(member, (TorchLRScheduler, _LRSchedulerBase)) or callable(member)):
                raise ConfigurationError(
                    f"{type(self).__name__} members must be scheduler callbacks, factories "
                    f"optimizer -> scheduler, or torch schedulers; got {type(member).__name__}."
                )
        self.step_per_batch = bool(members) and all(
            isinstance(m, TorchLRScheduler) and m.step_per_batch for m in members
        )

    def _members(self) -> Any:
        if "schedulers" in self.kwargs:
            return self.kwargs["schedulers"]
        return self.args[0] if self.args else []

    @staticmethod
    def _build(member: Any, optimizer: torch.optim.Optimizer) -> Any:
        if isinstance(member, TorchLRScheduler):
            return member.create(optimizer)
        if isinstance(member, _LRSchedulerBase):
            if getattr(member, "optimizer", optimizer) is not optimizer:
                raise ConfigurationError(
                    f"A torch scheduler given to a composite schedule ({type(member).__name__})"
                    " was built on another optimizer than the Model's; pass a callback or a "
                    "factory instead."
                )
            return member
        return member(optimizer)

    def create(self, optimizer: torch.optim.Optimizer) -> Any:
        """Build the members on ``optimizer``, then the composite PyTorch scheduler."""
        built = [self._build(m, optimizer) for m in self._members()]
        kwargs = dict(self.kwargs)
        args = self.args
        if "schedulers" in kwargs:
            kwargs["schedulers"] = built
        else:
            args = (built, *args[1:])
        if self.torch_class.__name__ == "ChainedScheduler":
            # ChainedScheduler(schedulers, optimizer=None): the optimizer is not first.
            if "optimizer" in inspect.signature(self.torch_class).parameters:
                kwargs["optimizer"] = optimizer
            return self.torch_class(*args, **kwargs)
        return self.torch_class(optimizer, *args, **kwargs)

    def _check_arguments(self) -> None:
        if self.torch_class.__name__ == "ChainedScheduler":
            try:
                signature = inspect.signature(self.torch_class)
            except (TypeError, ValueError):
                return
            parameters = [p for n, p in signature.parameters.items() if n != "optimizer"]
            try:
                signature.replace(parameters=parameters).bind(*self.args, **self.kwargs)
            except TypeError as exc:
                raise TypeError(f"ChainedScheduler: {exc}.") from None
            return
        super()._check_arguments()


class ReduceLROnPlateau(TorchLRScheduler):
    """Lower the learning rate when a monitored value stops improving
    (``torch.optim.lr_scheduler.ReduceLROnPlateau``), checked at the end of every epoch.

    Args:
        mode: ``'min'`` when a lower monitored value is better, ``'max'`` when higher is.
        factor: Learning rates are multiplied by this (< 1) on a plateau.
        patience: Epochs without improvement tolerated before reducing (PyTorch's rule:
            reduce when the count of bad epochs exceeds ``patience``).
        threshold: Smallest change that counts as an improvement (see ``threshold_mode``).
        threshold_mode: ``'rel'`` (relative to the best) or ``'abs'``.
        cooldown: Epochs to wait after a reduction before counting bad epochs again.
        min_lr: Lower bound of the learning rate (one float, or one per parameter group).
        eps: Reductions smaller than this are skipped.
        monitor: The epoch log key to watch (``'val_loss'``, ``'loss'``, ``'val_acc'``...).
        **kwargs: Further keyword arguments of PyTorch's class.

    The positional order is PyTorch's (``mode``, ``factor``, ...), as in Poutyne. An epoch
    whose logs lack the monitored key (a stop request cut its training short, so it was not
    validated) does not step the scheduler.

    Raises:
        ConfigurationError: ``mode`` is not ``'min'``/``'max'`` or ``monitor`` is empty.
        MonitorKeyError: At train begin, when the training will never log ``monitor``; the
            message lists the logged keys.
    """

    torch_class = _torch_lr_scheduler.ReduceLROnPlateau

    def __init__(
        self,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | Sequence[float] = 0.0,
        eps: float = 1e-8,
        *,
        monitor: str = "val_loss",
        **kwargs: Any,
    ) -> None:
        if mode not in ("min", "max"):
            raise ConfigurationError(f"mode must be 'min' or 'max'; got {mode!r}.")
        if not isinstance(monitor, str) or not monitor:
            raise ConfigurationError(f"monitor must be a non-empty log key; got {monitor!r}.")
        super().__init__(
            mode=mode, factor=factor, patience=patience, threshold=threshold,
            threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr, eps=eps, **kwargs,
        )
        self.monitor = monitor

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        """Check that the monitored key will be logged, then build the scheduler."""
        keys = tuple(getattr(self.model, "epoch_log_keys", ()) or ())
        if keys and self.monitor not in keys:
            close = difflib.get_close_matches(self.monitor, keys, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise MonitorKeyError(
                f"ReduceLROnPlateau monitors {self.monitor!r}, which this training will never "
                f"log. Logged keys: {', '.join(keys)}.{hint}"
            )
        super().on_train_begin(logs)

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        """Step on ``logs[monitor]`` (skipped when the epoch did not log it)."""
        if self.scheduler is None or self.monitor not in logs:
            return
        self.scheduler.step(float(logs[self.monitor]))


def _is_scheduler_class(name: str, obj: Any) -> bool:
    return (
        inspect.isclass(obj)
        and not name.startswith("_")
        and issubclass(obj, _LRSchedulerBase)
        and obj is not _LRSchedulerBase
        and obj is not _torch_lr_scheduler.ReduceLROnPlateau
        and obj.__module__ == _torch_lr_scheduler.__name__
    )


def _make_callback_class(name: str, torch_class: type[Any]) -> type[TorchLRScheduler]:
    if name in _COMPOSITE:
        base: type[TorchLRScheduler] = _CompositeScheduler
    elif name in _PER_STEP:
        base = _PerStepScheduler
    else:
        base = TorchLRScheduler
    when = (
        "once per optimizer step (after ``optimizer.step()``)"
        if name in _PER_STEP
        else "per optimizer step if all its members are per-step callbacks, else per epoch"
        if name in _COMPOSITE
        else "once per epoch, at ``on_epoch_end``"
    )
    doc = (
        f"``torch.optim.lr_scheduler.{name}`` as a callback, stepped {when}.\n\n"
        f"Takes the arguments of ``torch.optim.lr_scheduler.{name}`` minus the optimizer; the "
        "scheduler is built on the model's optimizer at ``on_train_begin`` and exposed as "
        "``.scheduler``. See :class:`TorchLRScheduler`."
    )
    namespace: dict[str, Any] = {
        "torch_class": torch_class,
        "__doc__": doc,
        "__module__": __name__,
        "__qualname__": name,
    }
    cls = type(name, (base,), namespace)
    signature = _signature_without_optimizer(torch_class)
    if signature is not None:
        cls.__signature__ = signature  # type: ignore[attr-defined]
    return cls


_SCHEDULERS: dict[str, type[TorchLRScheduler]] = {}
for _name, _obj in sorted(vars(_torch_lr_scheduler).items()):
    if _is_scheduler_class(_name, _obj):
        _SCHEDULERS[_name] = _make_callback_class(_name, _obj)
        globals()[_name] = _SCHEDULERS[_name]
        __all__.append(_name)
_SCHEDULERS["ReduceLROnPlateau"] = ReduceLROnPlateau
del _name, _obj


def scheduler_names() -> list[str]:
    """Names :func:`get_scheduler` accepts (the PyTorch class names), sorted."""
    return sorted(_SCHEDULERS)


def _normalise(name: str) -> str:
    return name.replace("_", "").lower()


def get_scheduler(name: str, *args: Any, **kwargs: Any) -> TorchLRScheduler:
    """The scheduler callback named ``name``, built with ``args`` and ``kwargs``.

    Args:
        name: A PyTorch scheduler class name (``'StepLR'``, ``'OneCycleLR'``,
            ``'ReduceLROnPlateau'``...); case and underscores are ignored (``'step_lr'``).
        *args: Positional arguments of the PyTorch class after the optimizer.
        **kwargs: Its keyword arguments (and ``monitor`` for ``ReduceLROnPlateau``).

    Returns:
        The callback, not yet bound to an optimizer.

    Raises:
        ConfigurationError: Unknown name; the message lists the valid names.
        TypeError: The arguments do not fit the class.
    """
    cls = _SCHEDULERS.get(name) if isinstance(name, str) else None
    if cls is None and isinstance(name, str):
        by_key = {_normalise(n): c for n, c in _SCHEDULERS.items()}
        cls = by_key.get(_normalise(name))
    if cls is None:
        close = difflib.get_close_matches(str(name), scheduler_names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigurationError(
            f"Unknown learning-rate scheduler {name!r}. Valid names: "
            f"{', '.join(scheduler_names())}.{hint}"
        )
    return cls(*args, **kwargs)


if TYPE_CHECKING:
    # The classes above are generated at import time; these declarations tell type checkers
    # about the ones every supported PyTorch (>= 2.1) has.
    class LambdaLR(TorchLRScheduler): ...
    class MultiplicativeLR(TorchLRScheduler): ...
    class StepLR(TorchLRScheduler): ...
    class MultiStepLR(TorchLRScheduler): ...
    class ConstantLR(TorchLRScheduler): ...
    class LinearLR(TorchLRScheduler): ...
    class ExponentialLR(TorchLRScheduler): ...
    class SequentialLR(TorchLRScheduler): ...
    class PolynomialLR(TorchLRScheduler): ...
    class CosineAnnealingLR(TorchLRScheduler): ...
    class ChainedScheduler(TorchLRScheduler): ...
    class CyclicLR(TorchLRScheduler): ...
    class OneCycleLR(TorchLRScheduler): ...
    class CosineAnnealingWarmRestarts(TorchLRScheduler): ...
