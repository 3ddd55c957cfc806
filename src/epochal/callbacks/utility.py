"""Utility callbacks: hooks from plain functions (``LambdaCallback``) and delayed callbacks
(``DelayCallback``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from epochal.callbacks.base import _HOOKS, Callback, CallbackList, hook_method, hooks_used_by
from epochal.exceptions import ConfigurationError
from epochal.ports import TrainingContext

if TYPE_CHECKING:
    pass

__all__ = ["DelayCallback", "LambdaCallback", "hooks_used_by"]

HookFunction = Callable[..., Any]


class LambdaCallback(Callback):
    """A callback made of functions, one keyword per Poutyne hook.

    Each function takes the hook's arguments: ``(logs)`` for ``on_train_begin``,
    ``on_train_end``, ``on_valid_begin``/``_end``, ``on_test_begin``/``_end``,
    ``on_predict_begin``/``_end``; ``(epoch_number, logs)`` for ``on_epoch_begin``/``_end``;
    ``(batch_number, logs)`` for the ``on_<phase>_batch_begin``/``_end`` hooks; and
    ``(batch_number)`` for ``on_backward_end`` (once per optimizer step, before it). A
    function's return value is returned by the hook (so it may return
    ``epochal.StopTraining()``). Hooks left as None do nothing.

    Attributes:
        used_hooks: Names of the hooks given a function (the bus adapter may subscribe only
            those).

    Raises:
        TypeError: A hook argument is neither None nor callable.
    """

    def __init__(
        self,
        *,
        on_epoch_begin: HookFunction | None = None,
        on_epoch_end: HookFunction | None = None,
        on_train_batch_begin: HookFunction | None = None,
        on_train_batch_end: HookFunction | None = None,
        on_valid_batch_begin: HookFunction | None = None,
        on_valid_batch_end: HookFunction | None = None,
        on_test_batch_begin: HookFunction | None = None,
        on_test_batch_end: HookFunction | None = None,
        on_predict_batch_begin: HookFunction | None = None,
        on_predict_batch_end: HookFunction | None = None,
        on_train_begin: HookFunction | None = None,
        on_train_end: HookFunction | None = None,
        on_valid_begin: HookFunction | None = None,
        on_valid_end: HookFunction | None = None,
        on_test_begin: HookFunction | None = None,
        on_test_end: HookFunction | None = None,
        on_predict_begin: HookFunction | None = None,
        on_predict_end: HookFunction | None = None,
        on_backward_end: HookFunction | None = None,
    ) -> None:
        super().__init__()
        given = dict(locals())
        self._functions: dict[str, HookFunction] = {}
        for hook in _HOOKS:
            function = given[hook]
            if function is None:
                continue
            if not callable(function):
                raise TypeError(f"LambdaCallback({hook}=...) takes a callable or None; got "
                                f"{type(function).__name__}.")
            self._functions[hook] = function
        self.used_hooks: frozenset[str] = frozenset(self._functions)

    def _call(self, hook: str, *args: Any) -> Any:
        function = self._functions.get(hook)
        return None if function is None else function(*args)


def _lambda_hook(hook: str) -> Callable[..., Any]:
    method = hook_method(hook, LambdaCallback._call)
    method.__qualname__ = f"LambdaCallback.{hook}"
    method.__doc__ = f"Call the ``{hook}`` function, if one was given."
    return method


for _hook in _HOOKS:
    setattr(LambdaCallback, _hook, _lambda_hook(_hook))
del _hook


def _check_delay(name: str, value: int | None) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{name} must be a non-negative int or None; got {value!r}.")
    return value


_EPOCH_HOOKS = ("on_epoch_begin", "on_epoch_end")
_TRAIN_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_backward_end")
#: The hooks DelayCallback forwards (Poutyne's): training, epochs, training batches, backward.
_FORWARDED_HOOKS = frozenset({"on_train_begin", "on_train_end", *_EPOCH_HOOKS, *_TRAIN_BATCH_HOOKS})


class DelayCallback(Callback):
    """Forward hooks to ``callbacks`` only once ``epoch_delay`` epochs and ``batch_delay``
    training batches have passed (Poutyne's semantics).

    Only Poutyne's forwarded hooks reach ``callbacks``: ``on_train_begin`` and
    ``on_train_end`` (always), the epoch hooks, the training batch hooks and
    ``on_backward_end``; the validation, test and predict hooks are never forwarded (as in
    Poutyne). Epoch ``e`` (1-based) is forwarded (``on_epoch_begin``, ``on_epoch_end``) when ``e > epoch_delay`` and its
    training batches reach past the first ``batch_delay`` batches of the training; a training
    batch (``on_train_batch_begin``, ``on_backward_end``, ``on_train_batch_end``) when its
    epoch is past ``epoch_delay`` and it comes after the first ``batch_delay`` batches.
    Batches are counted over the whole training, not per epoch; when training starts at
    ``initial_epoch > 1`` the earlier epochs count as ``params['steps']`` batches each. When
    both delays are given, the later point wins.

    Args:
        callbacks: A callback or a list of callbacks to delay.
        epoch_delay: Epochs to skip (None or 0: none).
        batch_delay: Training batches to skip (None or 0: none).

    Attributes:
        callbacks: The delayed callbacks, as a ``CallbackList``.
        used_hooks: The hooks this callback needs (its members' and those it counts with).

    Raises:
        ConfigurationError: A delay is negative or not an int.
        TypeError: A member is not a ``Callback``.
    """

    def __init__(
        self,
        callbacks: Callback | Iterable[Callback],
        *,
        epoch_delay: int | None = None,
        batch_delay: int | None = None,
    ) -> None:
        super().__init__()
        members = [callbacks] if isinstance(callbacks, Callback) else list(callbacks)
        self.callbacks = CallbackList(members)
        self.epoch_delay = _check_delay("epoch_delay", epoch_delay)
        self.batch_delay = _check_delay("batch_delay", batch_delay)
        self._epoch = 0
        self._batches = 0
        self._started = False
        self._epoch_forwarded = False
        self._batch_forwarded = False
        used = set(hooks_used_by(self.callbacks) & _FORWARDED_HOOKS)
        used.update({"on_train_begin", "on_epoch_begin"})
        if self.batch_delay:
            used.add("on_train_batch_begin")
        self.used_hooks: frozenset[str] = frozenset(used)

    # ------------------------------------------------------------------ plumbing

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        self.callbacks.set_params(dict(params))

    def set_model(self, model: TrainingContext) -> None:
        super().set_model(model)
        self.callbacks.set_model(model)

    def state_dict(self) -> dict[str, Any]:
        """The delayed callbacks' states (see ``CallbackList.state_dict``)."""
        return {"callbacks": self.callbacks.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.callbacks.load_state_dict(state.get("callbacks", {}))

    def _steps(self) -> int | None:
        steps = self.params.get("steps") if self.params else None
        return steps if isinstance(steps, int) else None

    def _epoch_passed(self) -> bool:
        """The epoch delay has passed and this epoch trained past the batch delay."""
        batches_passed = self.batch_delay == 0 or self._batches > self.batch_delay
        return self._epoch > self.epoch_delay and batches_passed

    def has_delay_passed(self) -> bool:
        """Whether the current epoch is past ``epoch_delay`` and the training batches seen so
        far (counted over the whole training) are past ``batch_delay`` (Poutyne's method).

        Returns:
            True once both delays have passed; hooks are forwarded from then on.
        """
        return self._epoch_passed()

    # ------------------------------------------------------------------ hooks

    def on_train_begin(self, logs: dict[str, Any]) -> Any:
        """Reset the counters; forward."""
        self._batches = 0
        self._started = False
        self._epoch_forwarded = False
        self._batch_forwarded = False
        return self.callbacks.on_train_begin(logs)

    def on_train_end(self, logs: dict[str, Any]) -> Any:
        """Forward (always)."""
        return self.callbacks.on_train_end(logs)

    def on_epoch_begin(self, epoch_number: int, logs: dict[str, Any]) -> Any:
        """Forward when this epoch is past both delays (see the class docstring)."""
        steps = self._steps()
        if not self._started:
            self._started = True
            if epoch_number > 1 and steps is not None:
                self._batches = (epoch_number - 1) * steps
        self._epoch = epoch_number
        reaches = (
            self._batches + steps > self.batch_delay
            if steps is not None
            else self._batches >= self.batch_delay
        )
        self._epoch_forwarded = epoch_number > self.epoch_delay and reaches
        self._batch_forwarded = False
        if self._epoch_forwarded:
            return self.callbacks.on_epoch_begin(epoch_number, logs)
        return None

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> Any:
        """Forward when the epoch's begin was forwarded or the delays passed during it."""
        if self._epoch_forwarded or self._epoch_passed():
            return self.callbacks.on_epoch_end(epoch_number, logs)
        return None

    def on_train_batch_begin(self, batch_number: int, logs: dict[str, Any]) -> Any:
        """Count the batch; forward when it is past both delays."""
        self._batches += 1
        self._batch_forwarded = self._epoch_passed()
        if self._batch_forwarded:
            return self.callbacks.on_train_batch_begin(batch_number, logs)
        return None

    def on_backward_end(self, batch_number: int) -> Any:
        """Forward when the current batch is forwarded."""
        if self._batch_forwarded or (self.batch_delay == 0 and self._epoch_passed()):
            return self.callbacks.on_backward_end(batch_number)
        return None

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> Any:
        """Forward when the current batch is forwarded."""
        if self._batch_forwarded or (self.batch_delay == 0 and self._epoch_passed()):
            return self.callbacks.on_train_batch_end(batch_number, logs)
        return None
