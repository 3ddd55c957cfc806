"""Checkpoint callbacks: save the weights, the optimizer, an LR scheduler, any stateful
objects or the random states as training goes, keep the best, restore it at the end.

Each is a :class:`~epochal.callbacks.periodic.PeriodicSaveCallback` (the filename, period,
``save_best_only``, ``restore_best`` and storage arguments are described there). Files are
``torch.save`` files, read back with ``torch.load(weights_only=True)``: a checkpoint cannot
run code.

``get_random_states``/``set_random_states`` live in :mod:`epochal.seeding` and
``BestModelRestore`` in :mod:`epochal.callbacks.best`; both are re-exported here.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import IO, Any

from epochal._io import torch_from_bytes
from epochal.callbacks.base import Callback, hooks_used_by
from epochal.callbacks.best import BestModelRestore
from epochal.callbacks.periodic import PeriodicSaveCallback, PeriodicSaveLambda
from epochal.exceptions import ConfigurationError
from epochal.precision import load_optimizer_file, optimizer_file_state
from epochal.seeding import get_random_states, set_random_states

__all__ = [
    "BestModelRestore",
    "LRSchedulerCheckpoint",
    "ModelCheckpoint",
    "OptimizerCheckpoint",
    "PeriodicSaveCallback",
    "PeriodicSaveLambda",
    "RandomStatesCheckpoint",
    "StateCheckpoint",
    "get_random_states",
    "set_random_states",
]


def _load(fd: IO[Any], owner: str) -> Any:
    data = fd.read()
    return torch_from_bytes(data if isinstance(data, bytes) else data.encode("utf-8"),
                            source=f"{owner}'s file")


class ModelCheckpoint(PeriodicSaveCallback):
    """Save the network's weights (``network.state_dict()``) during training; optionally keep
    only the best and load them back when training ends (``restore_best``).

    Args:
        filename: Path or fsspec URL template, e.g. ``'saves/last_epoch.ckpt'`` or
            ``'s3://bucket/run/w.{epoch:02d}-{val_loss:.3f}.ckpt'``; never a directory.
        **kwargs: ``monitor``, ``mode``, ``save_best_only``, ``keep_only_last_best``,
            ``restore_best``, ``period``, ``verbose``, ``temporary_filename``,
            ``atomic_write``, ``open_mode``, ``read_mode``, ``store``, ``storage_options``:
            as :class:`PeriodicSaveCallback`.

    Writes:
        ``torch.save(network.state_dict())`` at the formatted filename; read it back with
        ``Model.load_weights``. Never a file of non-finite weights.

    Raises:
        ConfigurationError, MonitorKeyError: See :class:`PeriodicSaveCallback`.
    """

    def payload(self) -> Any:
        return self.model.network.state_dict()

    def restore(self, fd: IO[Any]) -> None:
        """Load the weights in ``fd`` into the network."""
        self.model.network.load_state_dict(_load(fd, type(self).__name__))


class OptimizerCheckpoint(PeriodicSaveCallback):
    """Save the optimizer's ``state_dict()`` during training (arguments as
    :class:`PeriodicSaveCallback`); load it back with ``Model.load_optimizer_state``, or
    with ``restore_best``. With ``precision='16-mixed'`` the file also holds the loss
    scaler's state, as ``Model.save_optimizer_state`` writes it.

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
        return optimizer_file_state(optimizer, getattr(self.model, "mixed_precision", None))

    def restore(self, fd: IO[Any]) -> None:
        """Load the optimizer state in ``fd`` into the optimizer."""
        optimizer = self.model.optimizer
        assert optimizer is not None
        load_optimizer_file(
            optimizer, getattr(self.model, "mixed_precision", None),
            _load(fd, type(self).__name__),
        )


#: The hooks Poutyne's LRSchedulerCheckpoint forwards to the scheduler callback it wraps.
_SCHEDULER_HOOKS = frozenset({
    "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
    "on_train_batch_begin", "on_train_batch_end", "on_backward_end",
})


class LRSchedulerCheckpoint(PeriodicSaveCallback):
    """Drive an LR scheduler callback and save its state during training.

    It is both the scheduler and its checkpoint: pass it to ``fit`` INSTEAD of the scheduler
    callback (passing both steps the schedule twice). Each hook is forwarded to the
    scheduler first (the training hooks: train, epoch, training batch and backward), then the
    state after that epoch's step is saved.

    Args:
        lr_scheduler: An epochal LR scheduler callback (``StepLR(step_size=2)``,
            ``ReduceLROnPlateau(...)``, any ``TorchLRScheduler``).
        *args: ``filename`` and the other arguments of :class:`PeriodicSaveCallback`.
        **kwargs: As :class:`PeriodicSaveCallback`.

    Writes:
        ``torch.save(lr_scheduler.state_dict())``; load it back with
        ``lr_scheduler.load_state_dict(torch.load(...))`` or ``restore_best``.

    Raises:
        ConfigurationError: ``lr_scheduler`` is not a scheduler callback (e.g. a raw
            ``torch.optim.lr_scheduler`` object: wrap it in the epochal callback of the same
            name).
    """

    def __init__(self, lr_scheduler: Callback, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(lr_scheduler, Callback) or not all(
            callable(getattr(lr_scheduler, m, None)) for m in ("state_dict", "load_state_dict")
        ):
            raise ConfigurationError(
                f"LRSchedulerCheckpoint needs an LR scheduler callback (e.g. "
                f"epochal.StepLR(step_size=2), epochal.ReduceLROnPlateau()); got "
                f"{type(lr_scheduler).__name__}. A torch scheduler object goes through the "
                "epochal callback of the same name, which builds it on the Model's optimizer."
            )
        self.lr_scheduler = lr_scheduler

    @property
    def used_hooks(self) -> frozenset[str]:
        """This checkpoint's hooks plus the scheduler's training hooks."""
        own = {"on_train_begin", "on_epoch_end", "on_train_end"}
        return frozenset(own | (hooks_used_by(self.lr_scheduler) & _SCHEDULER_HOOKS))

    def payload(self) -> Any:
        return self.lr_scheduler.state_dict()  # type: ignore[attr-defined]

    def restore(self, fd: IO[Any]) -> None:
        """Load the scheduler state in ``fd`` into the scheduler callback."""
        self.lr_scheduler.load_state_dict(_load(fd, type(self).__name__))  # type: ignore[attr-defined]

    def set_params(self, params: dict[str, Any]) -> None:
        self.lr_scheduler.set_params(params)
        super().set_params(params)

    def set_model(self, model: Any) -> None:
        self.lr_scheduler.set_model(model)
        super().set_model(model)

    def on_train_begin(self, logs: dict[str, Any]) -> Any:
        result = self.lr_scheduler.on_train_begin(logs)
        super().on_train_begin(logs)
        return result

    def on_epoch_begin(self, epoch_number: int, logs: dict[str, Any]) -> Any:
        return self.lr_scheduler.on_epoch_begin(epoch_number, logs)

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> Any:
        result = self.lr_scheduler.on_epoch_end(epoch_number, logs)
        super().on_epoch_end(epoch_number, logs)
        return result

    def on_train_batch_begin(self, batch_number: int, logs: dict[str, Any]) -> Any:
        return self.lr_scheduler.on_train_batch_begin(batch_number, logs)

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> Any:
        return self.lr_scheduler.on_train_batch_end(batch_number, logs)

    def on_backward_end(self, batch_number: int) -> Any:
        return self.lr_scheduler.on_backward_end(batch_number)

    def on_train_end(self, logs: dict[str, Any]) -> Any:
        result = self.lr_scheduler.on_train_end(logs)
        super().on_train_end(logs)
        return result


class StateCheckpoint(PeriodicSaveCallback):
    """Save the ``state_dict()`` of several named objects in one file.

    Args:
        name_to_stateful: ``{name: object}``, each object with ``state_dict()`` and
            ``load_state_dict()`` (networks, optimizers, schedulers, callbacks...).
        *args: ``filename`` and the other arguments of :class:`PeriodicSaveCallback`.
        **kwargs: As :class:`PeriodicSaveCallback`.

    Writes:
        ``torch.save({name: object.state_dict()})``. :meth:`restore` loads each saved state
        into the object of the same name, warning about saved names it does not know
        ("Unexpected key(s)") and known names the file lacks ("Missing key(s)").

    Raises:
        ConfigurationError: An object has no ``state_dict``/``load_state_dict``.
    """

    def __init__(self, name_to_stateful: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, obj in name_to_stateful.items():
            if not (callable(getattr(obj, "state_dict", None))
                    and callable(getattr(obj, "load_state_dict", None))):
                raise ConfigurationError(
                    f"StateCheckpoint: {name!r} ({type(obj).__name__}) has no state_dict() "
                    "and load_state_dict(); pass objects such as networks, optimizers or "
                    "schedulers."
                )
        self.name_to_stateful = dict(name_to_stateful)

    def payload(self) -> Any:
        return {name: obj.state_dict() for name, obj in self.name_to_stateful.items()}

    def restore(self, fd: IO[Any]) -> None:
        """Load each saved state into the object of the same name."""
        states = _load(fd, type(self).__name__)
        unexpected = sorted(set(states) - set(self.name_to_stateful))
        missing = sorted(set(self.name_to_stateful) - set(states))
        if unexpected:
            warnings.warn(f"Unexpected key(s): {', '.join(map(repr, unexpected))}.",
                          stacklevel=2)
        if missing:
            warnings.warn(f"Missing key(s): {', '.join(map(repr, missing))}.", stacklevel=2)
        for name, state in states.items():
            if name in self.name_to_stateful:
                self.name_to_stateful[name].load_state_dict(state)


class RandomStatesCheckpoint(PeriodicSaveCallback):
    """Save the random states (Python ``random``, NumPy's global generator, PyTorch CPU and
    every CUDA device) during training, as :func:`get_random_states` returns them.

    The file loads with ``torch.load(weights_only=True)``; pass the loaded dict to
    :func:`set_random_states` (or use ``restore_best``) to continue with identical draws.
    Arguments as :class:`PeriodicSaveCallback`.
    """

    def payload(self) -> Any:
        return get_random_states()

    def restore(self, fd: IO[Any]) -> None:
        """Set the random states saved in ``fd``."""
        set_random_states(_load(fd, type(self).__name__))




