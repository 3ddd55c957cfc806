"""Poutyne's ``Callback`` API, adapted onto the record bus.

A ``Callback`` subclass overrides any of the hooks below; ``CallbackBusAdapter`` subscribes
only the hooks a callback overrides, so an unused hook costs nothing per step. Each hook call
receives its own copy of the logs: a callback that mutates its ``logs`` cannot change what the
next one sees. To stop training a callback sets ``self.model.stop_training = True`` (honoured
at the end of the current step) or returns ``epochal.StopTraining()`` from a hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from epochal.bus import RecordBus, Subscription
from epochal.core.directives import StopTraining
from epochal.core.records import (
    BackwardEnd,
    EpochBegin,
    EpochEnd,
    EpochRecord,
    PassPhase,
    PhaseBegin,
    StepBegin,
    StepRecord,
    TrainBegin,
    TrainEnd,
)
from epochal.ports import TrainingContext

__all__ = ["Callback", "CallbackBusAdapter", "CallbackList", "hooks_used_by"]

_HOOKS = (
    "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
    "on_train_batch_begin", "on_train_batch_end", "on_valid_begin", "on_valid_end",
    "on_valid_batch_begin", "on_valid_batch_end", "on_test_begin", "on_test_end",
    "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
    "on_predict_batch_begin", "on_predict_batch_end", "on_backward_end",
)


class Callback:
    """Base class of callbacks, with Poutyne's hooks (all no-ops here).

    Attributes:
        params: ``{'epochs': int, 'steps': int | None, 'valid_steps': int | None}``, set by
            ``set_params`` before training begins.
        model: The training it is attached to, set by ``set_model``: an ``epochal.Model``
            (a :class:`epochal.ports.TrainingContext`; epochal's own callbacks read only that
            port's members).

    Hooks get ``logs``, a fresh ``dict`` per call: batch logs have ``batch``, ``size``,
    ``time``, ``loss`` and the batch metrics; epoch logs have ``epoch``, ``time``, ``loss``,
    the metrics, ``val_loss`` and ``val_<metric>`` (Poutyne's keys; the learning rates are
    ``self.model.learning_rates()``).
    """

    params: dict[str, Any]
    model: TrainingContext

    def __init__(self) -> None:
        self.params = {}

    def set_params(self, params: dict[str, Any]) -> None:
        """Receive the training parameters (``epochs``, ``steps``, ``valid_steps``)."""
        self.params = params

    def set_model(self, model: TrainingContext) -> None:
        """Receive the model being trained."""
        self.model = model

    def on_train_begin(self, logs: dict[str, Any]) -> Any:
        """Called once at the start of ``fit``."""

    def on_train_end(self, logs: dict[str, Any]) -> Any:
        """Called once at the end of ``fit`` (also after an early stop), with an empty dict
        (as in Poutyne); the last epoch's logs went to ``on_epoch_end``."""

    def on_epoch_begin(self, epoch_number: int, logs: dict[str, Any]) -> Any:
        """Called at the start of each epoch (1-based)."""

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> Any:
        """Called at the end of each epoch, after validation, with the epoch's log row."""

    def on_train_batch_begin(self, batch_number: int, logs: dict[str, Any]) -> Any:
        """Called before each training batch (1-based within the epoch)."""

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> Any:
        """Called after each training batch with its logs."""

    def on_valid_begin(self, logs: dict[str, Any]) -> Any:
        """Called before the validation pass of an epoch."""

    def on_valid_end(self, logs: dict[str, Any]) -> Any:
        """Called after the validation pass with ``val_loss`` and ``val_<metric>``."""

    def on_valid_batch_begin(self, batch_number: int, logs: dict[str, Any]) -> Any:
        """Called before each validation batch."""

    def on_valid_batch_end(self, batch_number: int, logs: dict[str, Any]) -> Any:
        """Called after each validation batch."""

    def on_test_begin(self, logs: dict[str, Any]) -> Any:
        """Called before an evaluation pass (``evaluate*``)."""

    def on_test_end(self, logs: dict[str, Any]) -> Any:
        """Called after an evaluation pass with ``test_loss`` and ``test_<metric>``."""

    def on_test_batch_begin(self, batch_number: int, logs: dict[str, Any]) -> Any:
        """Called before each evaluation batch."""

    def on_test_batch_end(self, batch_number: int, logs: dict[str, Any]) -> Any:
        """Called after each evaluation batch."""

    def on_predict_begin(self, logs: dict[str, Any]) -> Any:
        """Called before a prediction pass."""

    def on_predict_end(self, logs: dict[str, Any]) -> Any:
        """Called after a prediction pass."""

    def on_predict_batch_begin(self, batch_number: int, logs: dict[str, Any]) -> Any:
        """Called before each prediction batch."""

    def on_predict_batch_end(self, batch_number: int, logs: dict[str, Any]) -> Any:
        """Called after each prediction batch."""

    def on_backward_end(self, batch_number: int) -> Any:
        """Called once per optimizer step, after the gradients are final (accumulated over
        ``batches_per_step`` batches and normalised) and before ``optimizer.step()``."""


def hooks_used_by(callback: Callback) -> frozenset[str]:
    """The hooks ``callback`` acts on: its ``used_hooks`` when it declares them, else the
    hooks its class overrides (for a ``CallbackList``, the union over its members, nested
    lists included)."""
    declared = getattr(callback, "used_hooks", None)
    if declared is not None:
        return frozenset(declared)
    if isinstance(callback, CallbackList):
        return frozenset().union(*(hooks_used_by(c) for c in callback.callbacks))
    return frozenset(
        hook for hook in _HOOKS if getattr(type(callback), hook, None) is not getattr(Callback, hook)
    )


class CallbackList(Callback):
    """Several callbacks acting as one, in order. Hooks fan out to each member with a fresh
    copy of the logs; the first non-None return value (a directive) is returned."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        super().__init__()
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(
                    f"CallbackList takes Callback instances; got {type(callback).__name__}."
                )

    def append(self, callback: Callback) -> None:
        """Add a callback at the end."""
        self.callbacks.append(callback)

    def __iter__(self) -> Any:
        return iter(self.callbacks)

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        for callback in self.callbacks:
            callback.set_params(dict(params))

    def set_model(self, model: TrainingContext) -> None:
        super().set_model(model)
        for callback in self.callbacks:
            callback.set_model(model)

    def _fan_out(self, hook: str, *args: Any) -> Any:
        result = None
        for callback in self.callbacks:
            copied = tuple(dict(a) if isinstance(a, dict) else a for a in args)
            value = getattr(callback, hook)(*copied)
            if isinstance(value, StopTraining) and getattr(self, "model", None) is not None:
                # Applied at once, so that the members after this one (a bundle committing
                # its state, say) already see the stop request.
                self.model.stop_training = True
            if result is None and value is not None:
                result = value
        return result

    def state_dict(self) -> dict[str, Any]:
        """The state of each member that has one, by position."""
        return {
            str(i): cb.state_dict()  # type: ignore[attr-defined]
            for i, cb in enumerate(self.callbacks)
            if hasattr(cb, "state_dict")
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        for i, cb in enumerate(self.callbacks):
            if str(i) in state and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(state[str(i)])


def hook_method(hook: str, call: Callable[..., Any]) -> Callable[..., Any]:
    """A method for ``hook`` with the hook's own parameter names, calling
    ``call(self, hook, *arguments)``.

    The parameters are Poutyne's (``logs``; ``epoch_number, logs``; ``batch_number, logs``;
    ``batch_number`` for ``on_backward_end``), so callers may pass them by keyword.
    """
    method: Callable[..., Any]
    if hook == "on_backward_end":
        def method(self: Any, batch_number: int) -> Any:
            return call(self, hook, batch_number)
    elif hook in ("on_epoch_begin", "on_epoch_end"):
        def method(self: Any, epoch_number: int, logs: dict[str, Any]) -> Any:
            return call(self, hook, epoch_number, logs)
    elif hook.endswith(("_batch_begin", "_batch_end")):
        def method(self: Any, batch_number: int, logs: dict[str, Any]) -> Any:
            return call(self, hook, batch_number, logs)
    else:
        def method(self: Any, logs: dict[str, Any]) -> Any:
            return call(self, hook, logs)
    method.__name__ = hook
    return method


def _make_fan_out(hook: str) -> Callable[..., Any]:
    method = hook_method(hook, CallbackList._fan_out)
    method.__qualname__ = f"CallbackList.{hook}"
    method.__doc__ = getattr(Callback, hook).__doc__
    return method


for _hook in _HOOKS:
    setattr(CallbackList, _hook, _make_fan_out(_hook))


_BEGIN_HOOK = {PassPhase.VALID: "on_valid_begin", PassPhase.TEST: "on_test_begin",
               PassPhase.PREDICT: "on_predict_begin"}
_END_HOOK = {PassPhase.VALID: "on_valid_end", PassPhase.TEST: "on_test_end",
             PassPhase.PREDICT: "on_predict_end"}
_BATCH_BEGIN = {p: f"on_{p.value}_batch_begin" for p in PassPhase}
_BATCH_END = {p: f"on_{p.value}_batch_end" for p in PassPhase}


def _pass_end_logs(record: EpochRecord) -> dict[str, Any]:
    """Poutyne's logs of ``on_valid_end``/``on_test_end``: ``time`` then the prefixed loss and
    metrics; ``on_predict_end`` gets ``time`` alone."""
    if record.phase is PassPhase.PREDICT:
        return {"time": record.duration_s}
    return {"time": record.duration_s, **record.logs()}


class CallbackBusAdapter:
    """Subscribes a Poutyne-style callback's overridden hooks to the bus (``Attachable``).

    Record to hook: ``TrainBegin`` → ``on_train_begin``; ``EpochBegin`` → ``on_epoch_begin``;
    ``PhaseBegin`` → ``on_valid_begin``/``on_test_begin``/``on_predict_begin``; ``StepBegin`` →
    ``on_<phase>_batch_begin``; ``StepRecord`` → ``on_<phase>_batch_end``; ``BackwardEnd`` →
    ``on_backward_end``; ``EpochRecord`` → ``on_valid_end``/``on_test_end``/``on_predict_end``;
    ``EpochEnd`` → ``on_epoch_end``; ``TrainEnd`` → ``on_train_end``. A hook's return value is
    passed back to the bus as a directive.
    """

    def __init__(self, callback: Callback) -> None:
        self.callback = callback
        self._subscriptions: list[Subscription] = []

    def attach(self, bus: RecordBus) -> None:
        cb = self.callback
        wanted = hooks_used_by(cb)

        def sub(record_type: type, handler: Callable[[Any], Any]) -> None:
            self._subscriptions.append(bus.subscribe(record_type, handler))

        if "on_train_begin" in wanted:
            sub(TrainBegin, lambda r: cb.on_train_begin({}))
        if "on_train_end" in wanted:
            sub(TrainEnd, lambda r: cb.on_train_end({}))
        if "on_epoch_begin" in wanted:
            sub(EpochBegin, lambda r: cb.on_epoch_begin(r.epoch, {}))
        if "on_epoch_end" in wanted:
            sub(EpochEnd, lambda r: cb.on_epoch_end(r.epoch, dict(r.logs)))
        if "on_backward_end" in wanted:
            sub(BackwardEnd, lambda r: cb.on_backward_end(r.step))
        begin = {p: h for p, h in _BEGIN_HOOK.items() if h in wanted}
        if begin:
            sub(PhaseBegin, lambda r: getattr(cb, begin[r.phase])({}) if r.phase in begin else None)
        end = {p: h for p, h in _END_HOOK.items() if h in wanted}
        if end:
            sub(EpochRecord, lambda r: getattr(cb, end[r.phase])(_pass_end_logs(r))
                if r.phase in end else None)
        batch_begin = {p: h for p, h in _BATCH_BEGIN.items() if h in wanted}
        if batch_begin:
            sub(
                StepBegin,
                lambda r: getattr(cb, batch_begin[r.phase])(r.step, {})
                if r.phase in batch_begin else None,
            )
        batch_end = {p: h for p, h in _BATCH_END.items() if h in wanted}
        if batch_end:
            sub(
                StepRecord,
                lambda r: getattr(cb, batch_end[r.phase])(r.step, r.logs())
                if r.phase in batch_end else None,
            )

    def detach(self) -> None:
        for subscription in self._subscriptions:
            subscription.cancel()
        self._subscriptions.clear()
