"""Learning-rate schedules as callbacks: one per scheduler class of ``torch.optim.lr_scheduler``.

Each callback takes the arguments of its PyTorch namesake minus the optimizer
(``StepLR(step_size=2, gamma=0.1)``) and builds the PyTorch scheduler on ``on_train_begin``
with the model's optimizer (``self.model.optimizer``); the scheduler is then available as
``callback.scheduler``. The classes are generated from the public scheduler classes of the
installed PyTorch, so a scheduler PyTorch adds is available here too.

Every schedule steps once per epoch, as in Poutyne (whose wrappers call ``scheduler.step()``
at ``on_epoch_end``):

* Each scheduler, ``OneCycleLR`` and ``CyclicLR`` included, steps once at ``on_epoch_end``
  (also after an epoch a stop request cut short). The learning rate is constant within an
  epoch, and the ``lr`` in that epoch's logs is the learning rate the epoch trained with.
  So ``total_steps`` / ``steps_per_epoch`` of ``OneCycleLR`` and ``step_size_up`` of
  ``CyclicLR`` count epochs: ``OneCycleLR(max_lr=0.1, total_steps=4)`` fits a 4-epoch
  training (``OneCycleLR(max_lr=0.1, epochs=4, steps_per_epoch=1)`` too); more epochs than
  that make PyTorch raise ``ValueError: Tried to step ... times``, as in Poutyne. For a
  learning rate that changes within an epoch use :class:`~epochal.OptimizerPolicy`.
* :class:`ReduceLROnPlateau` steps at ``on_epoch_end`` on the monitored log value.

``SequentialLR`` and ``ChainedScheduler`` take other schedulers: pass callbacks of this module
(``SequentialLR(schedulers=[LinearLR(total_iters=2), ExponentialLR(gamma=0.9)],
milestones=[2])``), factories ``optimizer -> torch scheduler``, or PyTorch schedulers already
built on the model's optimizer. They step once per epoch like the others.

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


def _refuse_positional_optimizer(name: str, torch_class: type[Any], args: Sequence[Any]) -> None:
    """Raise Poutyne's error (as a ConfigurationError, a ValueError) when a positional
    argument of the callback ``name`` is an optimizer."""
    optimizer = next((a for a in args if isinstance(a, torch.optim.Optimizer)), None)
    if optimizer is None:
        return
    signature = _signature_without_optimizer(torch_class)
    first = next(iter(signature.parameters), None) if signature is not None else None
    right = f"{name}({first}=...)" if first else f"{name}(...)"
    raise ConfigurationError(
        "In the LR scheduler callbacks, the optimizer is automatically passed to the "
        "PyTorch's LR scheduler. You must remove it from the arguments. "
        f"{name} got a {type(optimizer).__name__} optimizer as a positional argument; it "
        f"takes the arguments of torch.optim.lr_scheduler.{torch_class.__name__} minus the "
        f"optimizer: write {right}, not {name}(optimizer, ...). The Model's optimizer is "
        "used at the start of training."
    )


class TorchLRScheduler(Callback):
    """Base of the scheduler callbacks: wraps one ``torch.optim.lr_scheduler`` class.

    Subclasses set ``torch_class``; the constructor takes that class's arguments minus the
    optimizer and checks them against its signature right away. The scheduler steps once per
    epoch, at ``on_epoch_end``, as in Poutyne (:class:`ReduceLROnPlateau` on a log value).

    Attributes:
        torch_class: The PyTorch scheduler class.
        scheduler: The PyTorch scheduler, built at ``on_train_begin``; None before.

    Raises:
        TypeError: The arguments do not fit the PyTorch class's signature (the message is
            Python's, naming the argument).
        ConfigurationError: An optimizer was passed, positionally (``StepLR(optimizer, 1)``,
            Poutyne's ``ValueError``; ConfigurationError subclasses ValueError) or as
            ``optimizer=``: it comes from the Model.
    """

    torch_class: ClassVar[type[Any]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        name = type(self).__name__
        torch_name = f"torch.optim.lr_scheduler.{self.torch_class.__name__}"
        _refuse_positional_optimizer(name, self.torch_class, args)
        if "optimizer" in kwargs:
            raise ConfigurationError(
                f"{name} takes the arguments of {torch_name} minus the optimizer, "
                "which comes from the Model at the start of training; remove optimizer=."
            )
        self.args = args
        self.kwargs = kwargs
        self._check_arguments()
        self.scheduler: Any | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._pending_state: dict[str, Any] | None = None
        self._training = False

    @property
    def used_hooks(self) -> frozenset[str]:
        """The hooks this callback acts on (the bus adapter may subscribe only those): no
        batch hook."""
        return frozenset({"on_train_begin", "on_epoch_end", "on_train_end"})

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
        """Step the schedule once (Poutyne's ``scheduler.step()`` at every epoch end)."""
        if self.scheduler is not None:
            self.scheduler.step()

    def on_train_end(self, logs: dict[str, Any]) -> None:
        """Mark the training as over: a state loaded from now on waits for the next
        ``on_train_begin``."""
        self._training = False


class _CompositeScheduler(TorchLRScheduler):
    """``SequentialLR`` / ``ChainedScheduler``: members are callbacks, factories or PyTorch
    schedulers; the composite steps once per epoch, like every schedule."""

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
        ConfigurationError: ``mode`` is not ``'min'``/``'max'`` (an optimizer passed first
            gets Poutyne's message: the optimizer comes from the Model) or ``monitor`` is
            empty.
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
        _refuse_positional_optimizer(type(self).__name__, self.torch_class, (mode,))
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
    base: type[TorchLRScheduler] = (
        _CompositeScheduler if name in _COMPOSITE else TorchLRScheduler
    )
    doc = (
        f"``torch.optim.lr_scheduler.{name}`` as a callback, stepped once per epoch, at "
        "``on_epoch_end``, as in Poutyne.\n\n"
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
