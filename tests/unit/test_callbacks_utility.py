"""LambdaCallback and DelayCallback: hooks from functions, hooks after a delay."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from epochal import Callback, Model, StopTraining
from epochal.callbacks.base import _HOOKS
from epochal.callbacks.utility import DelayCallback, LambdaCallback, hooks_used_by
from epochal.exceptions import ConfigurationError


def _batches(n_batches: int, size: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_batches * size, 3, generator=g)
    y = torch.randn(n_batches * size, 1, generator=g)
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def _model() -> Model:
    torch.manual_seed(0)
    return Model(nn.Linear(3, 1), "sgd", "mse")


def _recorder(calls: list[tuple]) -> LambdaCallback:
    """A LambdaCallback recording (hook, *args) for every hook."""

    def record(hook):
        def function(*args):
            calls.append((hook, *args))

        return function

    return LambdaCallback(**{hook: record(hook) for hook in _HOOKS})


def _training_calls(calls):
    """Calls as (hook, number) with logs dropped, batch logs reduced to their 'batch'."""
    out = []
    for hook, *args in calls:
        out.append((hook, args[0]) if args and isinstance(args[0], int) else (hook,))
    return out


class TestLambdaCallback:
    def test_hooks_called_in_order_with_arguments(self):
        """A fit calls the given functions in Poutyne's order with the hooks' arguments."""
        calls: list[tuple] = []
        model = _model()
        model.fit_generator(_batches(2), _batches(1, seed=1), epochs=2, verbose=False,
                            callbacks=[_recorder(calls)])
        expected = [("on_train_begin",)]
        for epoch in (1, 2):
            expected.append(("on_epoch_begin", epoch))
            for batch in (1, 2):
                expected += [("on_train_batch_begin", batch), ("on_backward_end", batch),
                             ("on_train_batch_end", batch)]
            expected += [("on_valid_begin",), ("on_valid_batch_begin", 1),
                         ("on_valid_batch_end", 1), ("on_valid_end",),
                         ("on_epoch_end", epoch)]
        expected.append(("on_train_end",))
        assert _training_calls(calls) == expected
        epoch_end = next(c for c in calls if c[0] == "on_epoch_end")
        assert {"epoch", "loss", "val_loss"} <= set(epoch_end[2])
        assert "lr" not in epoch_end[2]  # Poutyne's epoch logs hold no learning rate
        batch_end = next(c for c in calls if c[0] == "on_train_batch_end")
        assert batch_end[2]["size"] == 2

    def test_evaluate_and_predict_hooks(self):
        """evaluate calls the test hooks and predict the predict hooks."""
        calls: list[tuple] = []
        model = _model()
        recorder = _recorder(calls)
        model.evaluate_generator(_batches(1), callbacks=[recorder], verbose=False)
        model.predict_generator([x for x, _ in _batches(1)], callbacks=[recorder], verbose=False)
        assert _training_calls(calls) == [
            ("on_test_begin",), ("on_test_batch_begin", 1), ("on_test_batch_end", 1),
            ("on_test_end",), ("on_predict_begin",), ("on_predict_batch_begin", 1),
            ("on_predict_batch_end", 1), ("on_predict_end",),
        ]
        assert "test_loss" in calls[3][1]

    def test_return_value_is_a_directive(self):
        """A function returning StopTraining() stops the training."""
        model = _model()
        history = model.fit_generator(
            _batches(2), epochs=5, verbose=False,
            callbacks=[LambdaCallback(on_epoch_end=lambda e, logs: StopTraining())],
        )
        assert len(history) == 1

    def test_used_hooks_are_the_given_ones(self):
        """used_hooks names exactly the hooks given a function."""
        callback = LambdaCallback(on_epoch_end=print, on_backward_end=print)
        assert callback.used_hooks == {"on_epoch_end", "on_backward_end"}
        assert hooks_used_by(callback) == {"on_epoch_end", "on_backward_end"}

    def test_non_callable_is_refused(self):
        """A hook argument that is not callable is a TypeError naming the hook."""
        with pytest.raises(TypeError, match="on_epoch_end"):
            LambdaCallback(on_epoch_end=3)


class TestDelayCallback:
    def test_epoch_delay(self):
        """With epoch_delay=2 the wrapped callback sees train begin/end and epochs 3 onward."""
        calls: list[tuple] = []
        _model().fit_generator(_batches(2), epochs=4, verbose=False,
                               callbacks=[DelayCallback(_recorder(calls), epoch_delay=2)])
        hooks = _training_calls(calls)
        assert hooks[0] == ("on_train_begin",) and hooks[-1] == ("on_train_end",)
        assert [h[1] for h in hooks if h[0] == "on_epoch_begin"] == [3, 4]
        assert [h[1] for h in hooks if h[0] == "on_epoch_end"] == [3, 4]
        assert len([h for h in hooks if h[0] == "on_train_batch_end"]) == 4

    def test_batch_delay_in_the_middle_of_an_epoch(self):
        """batch_delay=5 with 2 batches per epoch: epoch 3 is forwarded from its second batch
        (the 6th overall), including its begin and end."""
        calls: list[tuple] = []
        _model().fit_generator(_batches(2), _batches(1), epochs=4, verbose=False,
                               callbacks=[DelayCallback([_recorder(calls)], batch_delay=5)])
        hooks = _training_calls(calls)
        assert hooks[:3] == [("on_train_begin",), ("on_epoch_begin", 3),
                             ("on_train_batch_begin", 2)]
        assert ("on_backward_end", 2) in hooks
        assert [h[1] for h in hooks if h[0] == "on_epoch_end"] == [3, 4]
        assert not [h for h in hooks if h[0].startswith("on_valid")]
        assert len([h for h in hooks if h[0] == "on_train_batch_end"]) == 3

    def test_batch_delay_at_an_epoch_boundary(self):
        """batch_delay=4 with 2 batches per epoch starts forwarding with epoch 3, batch 1."""
        calls: list[tuple] = []
        _model().fit_generator(_batches(2), epochs=3, verbose=False,
                               callbacks=[DelayCallback(_recorder(calls), batch_delay=4)])
        hooks = _training_calls(calls)
        assert hooks[1:3] == [("on_epoch_begin", 3), ("on_train_batch_begin", 1)]

    def test_no_delay_forwards_everything(self):
        """Without delays the wrapped callback sees the same training calls as unwrapped,
        and never the validation hooks (Poutyne forwards only the training ones)."""
        direct: list[tuple] = []
        delayed: list[tuple] = []
        for calls, wrap in ((direct, False), (delayed, True)):
            recorder = _recorder(calls)
            _model().fit_generator(_batches(2), _batches(1), epochs=2, verbose=False,
                                   callbacks=[DelayCallback(recorder) if wrap else recorder])
        assert _training_calls(delayed) == [
            h for h in _training_calls(direct) if not h[0].startswith("on_valid")]
        assert any(h[0].startswith("on_valid") for h in _training_calls(direct))

    def test_both_delays_the_later_wins(self):
        """epoch_delay=1 and batch_delay=5 (2 batches/epoch): forwarding starts at batch 6."""
        calls: list[tuple] = []
        _model().fit_generator(_batches(2), epochs=4, verbose=False, callbacks=[
            DelayCallback(_recorder(calls), epoch_delay=1, batch_delay=5)])
        assert len([h for h in _training_calls(calls) if h[0] == "on_train_batch_end"]) == 3

    def test_wrapped_callbacks_get_model_and_params(self):
        """set_model and set_params reach the wrapped callbacks."""
        inner = Callback()
        model = _model()
        model.fit_generator(_batches(1), epochs=1, verbose=False,
                            callbacks=[DelayCallback(inner, epoch_delay=3)])
        assert inner.model is model and inner.params["epochs"] == 1

    def test_negative_delay_is_refused(self):
        """A negative delay is a ConfigurationError."""
        with pytest.raises(ConfigurationError, match="epoch_delay"):
            DelayCallback(Callback(), epoch_delay=-1)


class TestPoutyneForwarding:
    def test_delay_never_forwards_test_and_predict_hooks(self):
        """evaluate and predict hooks are not forwarded by DelayCallback (Poutyne's set)."""
        calls: list[tuple] = []
        model = _model()
        delayed = DelayCallback(_recorder(calls))
        model.evaluate_generator(_batches(1), callbacks=[delayed], verbose=False)
        model.predict_generator([x for x, _ in _batches(1)], callbacks=[delayed], verbose=False)
        assert calls == []

    def test_lambda_callback_signature_is_poutynes(self):
        """LambdaCallback's keyword names and their order are Poutyne's."""
        import inspect

        import poutyne

        ours = list(inspect.signature(LambdaCallback).parameters)
        theirs = list(inspect.signature(poutyne.LambdaCallback).parameters)
        assert ours == theirs


class TestHookParameterNames:
    def test_lambda_and_list_hooks_take_poutynes_keywords(self):
        """LambdaCallback and CallbackList hooks accept epoch_number, batch_number and logs by
        keyword, as Poutyne's do, and hand them to the functions in order."""
        from epochal.callbacks.base import CallbackList

        calls: list[tuple] = []
        listed = CallbackList([_recorder(calls)])
        listed.on_epoch_end(epoch_number=3, logs={"loss": 1.0})
        listed.on_valid_batch_end(batch_number=2, logs={"size": 4})
        listed.on_backward_end(batch_number=5)
        listed.on_test_begin(logs={})
        assert calls == [("on_epoch_end", 3, {"loss": 1.0}), ("on_valid_batch_end", 2, {"size": 4}),
                         ("on_backward_end", 5), ("on_test_begin", {})]

    def test_a_list_hands_each_member_its_own_logs(self):
        """A CallbackList gives each member a copy: a member changing its logs does not change
        what the next member sees."""
        from epochal.callbacks.base import CallbackList

        seen: list[dict] = []
        first = LambdaCallback(on_epoch_end=lambda epoch, logs: logs.pop("loss"))
        second = LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(dict(logs)))
        CallbackList([first, second]).on_epoch_end(1, {"loss": 2.0})
        assert seen == [{"loss": 2.0}]


class TestHasDelayPassed:
    def test_reports_when_both_delays_have_passed(self):
        """has_delay_passed is False until the epoch and the batch delay have both passed."""
        delayed = DelayCallback(Callback(), epoch_delay=1, batch_delay=3)
        delayed.set_params({"steps": 2, "epochs": 4})
        delayed.on_train_begin({})
        states = []
        for epoch in (1, 2, 3):
            delayed.on_epoch_begin(epoch, {})
            for batch in (1, 2):
                delayed.on_train_batch_begin(batch, {})
                states.append(delayed.has_delay_passed())
        assert states == [False, False, False, True, True, True]
