"""The Model: Poutyne's API on the core, with fakes and small synthetic data."""

from __future__ import annotations

import copy
import io
import itertools
import math

import attrs
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from epochal import Callback, Model, StopTraining
from epochal.core.records import EpochRecord, PassPhase, StepRecord
from epochal.exceptions import ConfigurationError, EmptyLoaderError, ShapeMismatchError
from epochal.testing import FakeClock, RecordingSink


def _data(n: int = 40, features: int = 4, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def _batches(x, y, size):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def _model(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    network = nn.Linear(4, 3)
    kwargs.setdefault("batch_metrics", ["accuracy"])
    return Model(network, torch.optim.SGD(network.parameters(), lr=0.1),
                 nn.CrossEntropyLoss(), **kwargs)


class TestConstruction:
    def test_optimizer_by_name_uses_pytorch_defaults_and_sgd_lr(self):
        """'sgd' gets lr 0.01 (Poutyne's convention) and 'adam' PyTorch's defaults."""
        model = Model(nn.Linear(2, 2), "sgd", "mse")
        assert isinstance(model.optimizer, torch.optim.SGD)
        assert model.optimizer.param_groups[0]["lr"] == 0.01
        model = Model(nn.Linear(2, 2), "adam", "mse")
        assert model.optimizer.param_groups[0]["lr"] == 1e-3

    def test_optimizer_by_dict(self):
        """{'optim': 'adam', 'lr': 0.5} builds Adam with lr 0.5."""
        model = Model(nn.Linear(2, 2), {"optim": "adam", "lr": 0.5}, "mse")
        assert isinstance(model.optimizer, torch.optim.Adam)
        assert model.optimizer.param_groups[0]["lr"] == 0.5

    def test_unknown_optimizer_name_lists_valid_names(self):
        """An unknown optimizer name is a ConfigurationError listing the valid names."""
        with pytest.raises(ConfigurationError, match="sgd") as info:
            Model(nn.Linear(2, 2), "sdg", "mse")
        assert "adam" in str(info.value)

    def test_foreign_optimizer_parameters_are_refused(self):
        """An optimizer over another network's parameters is refused with a clear error."""
        other = nn.Linear(2, 2)
        with pytest.raises(ConfigurationError, match="do not belong to the network"):
            Model(nn.Linear(2, 2), torch.optim.SGD(other.parameters(), lr=0.1), "mse")

    def test_unknown_metric_name_lists_valid_names(self):
        """An unknown metric name is a ConfigurationError naming valid ones."""
        with pytest.raises(ConfigurationError, match="accuracy"):
            Model(nn.Linear(2, 2), "sgd", "mse", batch_metrics=["acuracy"])

    def test_loss_by_name(self):
        """'cross_entropy' resolves to PyTorch's cross-entropy."""
        model = Model(nn.Linear(4, 3), "sgd", "cross_entropy")
        x, y = _data(8)
        expected = nn.functional.cross_entropy(model.network(x), y)
        assert torch.allclose(model.loss_function(model.network(x), y), expected)

    def test_network_must_be_a_module(self):
        """A network that is not an nn.Module is a TypeError."""
        with pytest.raises(TypeError, match=r"nn\.Module"):
            Model(lambda x: x, "sgd", "mse")  # type: ignore[arg-type]

    def test_fit_without_optimizer_is_refused(self):
        """fit on a Model built without optimizer raises a clear ValueError."""
        model = Model(nn.Linear(4, 3), None, "cross_entropy")
        x, y = _data(8)
        with pytest.raises(ValueError, match="optimizer"):
            model.fit(x, y, epochs=1, verbose=False)


class TestFit:
    def test_history_has_poutyne_keys(self):
        """fit_generator returns one dict per epoch with exactly Poutyne's keys: epoch, time,
        loss, acc, val_loss, val_acc (no lr)."""
        x, y = _data()
        history = _model().fit_generator(_batches(x, y, 8), _batches(x, y, 16), epochs=2,
                                         verbose=False)
        assert [h["epoch"] for h in history] == [1, 2]
        assert list(history[0]) == ["epoch", "time", "loss", "acc", "val_loss", "val_acc"]
        assert all(h["time"] >= 0 for h in history)

    def test_last_batch_weighs_by_its_size(self):
        """The epoch loss is the sample-weighted mean: a batch of 1 among batches of 8 weighs 1/N."""
        x, y = _data(17)
        model = _model()
        batches = _batches(x, y, 8)
        losses = [float(model.loss_function(model.network(bx), by)) * len(bx) for bx, by in batches]
        loss, _acc = model.evaluate_generator(batches, verbose=False)
        assert loss == pytest.approx(sum(losses) / 17, rel=1e-12)

    def test_steps_per_epoch_larger_than_loader_cycles_it(self):
        """steps_per_epoch=5 on a 2-batch loader runs 5 training steps per epoch."""
        x, y = _data(16)
        model = _model()
        sink = RecordingSink(StepRecord)
        sink.attach(model.bus)
        model.fit_generator(_batches(x, y, 8), epochs=2, steps_per_epoch=5, verbose=False)
        steps = [r for r in sink.of_type(StepRecord) if r.phase is PassPhase.TRAIN]
        assert [r.step for r in steps] == [1, 2, 3, 4, 5] * 2
        assert [r.global_step for r in steps] == list(range(1, 11))

    def test_fit_on_arrays_and_numpy(self):
        """fit accepts NumPy arrays and validation_data, and predict returns NumPy arrays."""
        x, y = _data(30)
        model = _model()
        history = model.fit(x.numpy(), y.numpy(), validation_data=(x.numpy(), y.numpy()),
                            batch_size=8, epochs=2, verbose=False)
        assert "val_acc" in history[-1]
        pred = model.predict(x.numpy(), batch_size=7, verbose=False)
        assert isinstance(pred, np.ndarray) and pred.shape == (30, 3)

    def test_empty_loader_is_a_clear_error(self):
        """An empty training loader raises EmptyLoaderError before any step."""
        with pytest.raises(EmptyLoaderError, match=r"training loader yielded no batch"):
            _model().fit_generator([], epochs=1, verbose=False)

    def test_output_shape_the_loss_rejects_names_both_shapes(self):
        """A network output the loss rejects gives both shapes in the message."""
        model = Model(nn.Linear(4, 2), "sgd", "mse")
        x, y = torch.randn(8, 4), torch.randn(8, 5)
        with pytest.raises(ShapeMismatchError, match=r"\(8, 2\).*\(8, 5\)"):
            model.fit(x, y, epochs=1, verbose=False)

    def test_stop_request_is_honoured_at_end_of_step(self):
        """model.stop_training set in on_train_batch_end at step 3 ends training after step 3."""

        class StopAt3(Callback):
            def on_train_batch_end(self, batch_number, logs):
                if batch_number == 3:
                    self.model.stop_training = True

        x, y = _data(80)
        model = _model()
        sink = RecordingSink(StepRecord, EpochRecord)
        sink.attach(model.bus)
        history = model.fit_generator(_batches(x, y, 8), _batches(x, y, 8), epochs=3,
                                      callbacks=[StopAt3()], verbose=False)
        train_steps = [r for r in sink.of_type(StepRecord) if r.phase is PassPhase.TRAIN]
        assert len(train_steps) == 3
        assert len(history) == 1 and "val_loss" not in history[0]
        assert sink.of_type(EpochRecord)[0].complete is False

    def test_returned_directive_stops_and_next_fit_clears_the_flag(self):
        """A hook returning StopTraining stops; the next fit starts with the flag cleared."""

        class StopAfterEpoch(Callback):
            def on_epoch_end(self, epoch_number, logs):
                return StopTraining(reason="test")

        x, y = _data(16)
        model = _model()
        assert len(model.fit_generator(_batches(x, y, 8), epochs=5, verbose=False,
                                       callbacks=[StopAfterEpoch()])) == 1
        assert len(model.fit_generator(_batches(x, y, 8), epochs=2, verbose=False)) == 2

    def test_callbacks_get_their_own_copy_of_logs(self):
        """A callback that mutates its logs does not change what the next callback sees."""
        seen = []

        class Vandal(Callback):
            def on_epoch_end(self, epoch_number, logs):
                logs["loss"] = -1.0
                logs.clear()

        class Reader(Callback):
            def on_epoch_end(self, epoch_number, logs):
                seen.append(dict(logs))

        x, y = _data(16)
        history = _model().fit_generator(_batches(x, y, 8), epochs=1, verbose=False,
                                         callbacks=[Vandal(), Reader()])
        assert seen[0]["loss"] == history[0]["loss"] > 0

    def test_hook_order_and_params(self):
        """Hooks run in Poutyne's order and params carry epochs, steps and valid_steps."""
        calls = []

        class Spy(Callback):
            def on_train_begin(self, logs):
                calls.append(("train_begin", dict(self.params)))

            def on_epoch_begin(self, e, logs):
                calls.append(("epoch_begin", e))

            def on_train_batch_begin(self, b, logs):
                calls.append(("batch_begin", b))

            def on_backward_end(self, b):
                calls.append(("backward_end", b))

            def on_train_batch_end(self, b, logs):
                calls.append(("batch_end", b, sorted(logs)))

            def on_valid_begin(self, logs):
                calls.append(("valid_begin",))

            def on_valid_end(self, logs):
                calls.append(("valid_end", sorted(logs)))

            def on_epoch_end(self, e, logs):
                calls.append(("epoch_end", e))

            def on_train_end(self, logs):
                calls.append(("train_end",))

        x, y = _data(16)
        _model().fit_generator(_batches(x, y, 8), _batches(x, y, 16), epochs=1,
                               callbacks=[Spy()], verbose=False)
        assert calls[0] == ("train_begin", {"epochs": 1, "steps": 2, "valid_steps": 1})
        assert [c[0] for c in calls[1:]] == [
            "epoch_begin", "batch_begin", "backward_end", "batch_end", "batch_begin",
            "backward_end", "batch_end", "valid_begin", "valid_end", "epoch_end", "train_end",
        ]
        assert calls[4][2] == ["acc", "batch", "loss", "size", "time"]
        assert calls[9][1] == ["time", "val_acc", "val_loss"]


class TestAccumulation:
    @given(
        sizes=st.lists(st.integers(1, 6), min_size=2, max_size=6),
        seed=st.integers(0, 1000),
    )
    def test_property_accumulated_step_equals_big_batch(self, sizes, seed):
        """batches_per_step=N over N batches of any sizes equals one step on their concatenation."""
        n = sum(sizes)
        x, y = _data(n, seed=seed)
        batches, start = [], 0
        for s in sizes:
            batches.append((x[start : start + s], y[start : start + s]))
            start += s
        a = _model(seed)
        b = copy.deepcopy(a)
        b.optimizer = torch.optim.SGD(b.network.parameters(), lr=0.1)
        a.fit_generator(batches, epochs=1, batches_per_step=len(sizes), verbose=False)
        b.fit_generator([(x, y)], epochs=1, verbose=False)
        for p, q in zip(a.network.parameters(), b.network.parameters()):
            assert torch.allclose(p, q, atol=1e-6, rtol=1e-5)

    def test_trailing_partial_group_is_stepped_and_does_not_leak(self):
        """With 3 batches and batches_per_step=2, the epoch makes 2 optimizer steps, and the next
        epoch starts from zeroed gradients."""
        x, y = _data(24)
        batches = _batches(x, y, 8)
        a = _model()
        ref = copy.deepcopy(a)
        ref.optimizer = torch.optim.SGD(ref.network.parameters(), lr=0.1)
        a.fit_generator(batches, epochs=2, batches_per_step=2, verbose=False)
        groups = [(torch.cat([x[:8], x[8:16]]), torch.cat([y[:8], y[8:16]])), (x[16:], y[16:])]
        ref.fit_generator(groups, epochs=2, verbose=False)
        for p, q in zip(a.network.parameters(), ref.network.parameters()):
            assert torch.allclose(p, q, atol=1e-6)


class TestEvaluateAndPredict:
    def test_two_identical_evaluations_give_identical_values(self):
        """Epoch metrics are reset: evaluating twice gives the same loss and metrics."""
        x, y = _data(30)
        model = _model(epoch_metrics=["f1"])
        first = model.evaluate(x, y, batch_size=7, verbose=False)
        second = model.evaluate(x, y, batch_size=7, verbose=False)
        assert first[0] == second[0]
        np.testing.assert_array_equal(first[1], second[1])

    def test_return_forms(self):
        """evaluate returns the loss alone without metrics, a float for one metric, an array for
        several, a dict with return_dict_format, and predictions/targets on request."""
        x, y = _data(20)
        plain = Model(nn.Linear(4, 3), None, "cross_entropy")
        assert isinstance(plain.evaluate(x, y, verbose=False), float)
        one = _model()
        _loss, acc = one.evaluate(x, y, verbose=False)
        assert isinstance(acc, float)
        two = _model(epoch_metrics=["f1"])
        _loss, metrics = two.evaluate(x, y, verbose=False)
        assert metrics.shape == (2,)
        logs = two.evaluate(x, y, verbose=False, return_dict_format=True)
        assert set(logs) == {"time", "test_loss", "test_acc", f"test_{two.epoch_metrics_names[0]}"}
        _loss, acc, pred, true = one.evaluate(x, y, batch_size=6, verbose=False,
                                             return_pred=True, return_ground_truth=True)
        assert pred.shape == (20, 3) and np.array_equal(true, y.numpy())

    def test_multi_input_and_multi_output(self):
        """Tuple inputs are spread as arguments; tuple outputs are concatenated per element."""

        class TwoHeads(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(4, 3)
                self.b = nn.Linear(2, 1)

            def forward(self, x1, x2):
                return self.a(x1), self.b(x2)

        model = Model(TwoHeads(), "sgd", None)
        x1, x2 = torch.randn(10, 4), torch.randn(10, 2)
        out = model.predict((x1, x2), batch_size=4, verbose=False)
        assert isinstance(out, tuple) and out[0].shape == (10, 3) and out[1].shape == (10, 1)

    def test_predict_generator_with_ground_truth(self):
        """has_ground_truth and return_ground_truth return outputs and concatenated targets."""
        x, y = _data(12)
        pred, true = _model().predict_generator(_batches(x, y, 5), has_ground_truth=True,
                                                return_ground_truth=True, verbose=False)
        assert pred.shape == (12, 3) and np.array_equal(true, y.numpy())

    def test_on_batch_methods(self):
        """train_on_batch updates the weights; evaluate_on_batch and predict_on_batch don't."""
        x, y = _data(8)
        model = _model()
        before = model.get_weight_copies()
        loss, acc = model.evaluate_on_batch(x, y)
        assert all(torch.equal(v, model.get_weight_copies()[k]) for k, v in before.items())
        assert model.predict_on_batch(x).shape == (8, 3)
        model.train_on_batch(x, y)
        assert not torch.equal(before["weight"], model.get_weight_copies()["weight"])
        assert math.isfinite(loss) and 0 <= acc <= 100


class TestRecords:
    def test_records_are_immutable_and_hold_no_graph(self):
        """Step and epoch records cannot be mutated and their tensors need no grad."""
        x, y = _data(16)
        model = _model()
        sink = RecordingSink(StepRecord, EpochRecord)
        sink.attach(model.bus)
        model.fit_generator(_batches(x, y, 8), epochs=1, verbose=False)
        step = sink.of_type(StepRecord)[0]
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            step.loss = 0.0  # type: ignore[misc]
        with pytest.raises(TypeError):
            step.metrics["acc"] = 1  # type: ignore[index]
        assert not step.loss.requires_grad and step.loss.grad_fn is None
        assert all(v.grad_fn is None for v in step.metrics.values())

    def test_injected_clock_times_the_epoch(self):
        """Durations come from the injected clock."""
        x, y = _data(16)
        model = _model()
        model.clock = FakeClock(tick_s=1.0)
        sink = RecordingSink(StepRecord, EpochRecord)
        sink.attach(model.bus)
        model.fit_generator(_batches(x, y, 8), epochs=1, verbose=False)
        # pass start, 2 reads per step for 2 steps, pass end: 5 ticks.
        assert sink.of_type(EpochRecord)[0].duration_s == 5.0
        assert [r.duration_s for r in sink.of_type(StepRecord)] == [1.0, 1.0]

    def test_step_records_nobody_reads_are_not_built(self):
        """Without a StepRecord subscriber the core builds no step record and reads the clock
        only at the pass's ends; the global step still advances."""
        x, y = _data(16)
        model = _model()
        model.clock = FakeClock(tick_s=1.0)
        sink = RecordingSink(EpochRecord)
        sink.attach(model.bus)
        model.fit_generator(_batches(x, y, 8), epochs=2, verbose=False)
        assert [r.duration_s for r in sink.records] == [1.0, 1.0]
        assert model.global_step == 4


class TestWeights:
    def test_save_and_load_weights_round_trip(self, tmp_path):
        """save_weights then load_weights restores identical weights (path and file object)."""
        model = _model()
        path = str(tmp_path / "w.ckpt")
        model.save_weights(path)
        other = _model(seed=1)
        result = other.load_weights(path)
        assert result.missing_keys == [] and result.unexpected_keys == []
        assert torch.equal(other.network.weight, model.network.weight)
        buffer = io.BytesIO()
        model.save_optimizer_state(buffer)
        buffer.seek(0)
        other.load_optimizer_state(buffer)

    def test_load_weights_non_strict_reports_keys(self, tmp_path):
        """load_weights(strict=False) returns missing and unexpected keys."""
        model = _model()
        path = str(tmp_path / "w.ckpt")
        torch.save({"weight": model.network.weight.detach(), "extra": torch.zeros(1)}, path)
        result = model.load_weights(path, strict=False)
        assert result.missing_keys == ["bias"] and result.unexpected_keys == ["extra"]

    def test_pickled_code_is_refused(self, tmp_path):
        """A checkpoint holding an arbitrary pickled object is refused with CheckpointError."""
        from epochal.exceptions import CheckpointError

        path = str(tmp_path / "evil.ckpt")
        torch.save({"weight": Exploit()}, path)
        with pytest.raises(CheckpointError, match="Refused"):
            _model().load_weights(path)

    def test_moving_to_cpu_keeps_optimizer_state(self):
        """to('cpu') keeps the optimizer's state tensors on the parameters' device."""
        x, y = _data(8)
        network = nn.Linear(4, 3)
        model = Model(network, "adam", "cross_entropy")
        model.train_on_batch(x, y)
        model.to("cpu")
        state = model.optimizer.state[network.weight]
        assert state["exp_avg"].device.type == "cpu"


class Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


class TestLaws:
    @given(
        cuts=st.lists(st.integers(1, 39), max_size=8, unique=True),
        seed=st.integers(0, 10_000),
    )
    def test_property_law_epoch_values_independent_of_batch_split(self, cuts, seed):
        """Loss, accuracy and F1 over any split of the data into batches equal the values over
        the whole data in one batch (float tolerance)."""
        x, y = _data(40, seed=seed)
        bounds = [0, *sorted(cuts), 40]
        batches = [(x[a:b], y[a:b]) for a, b in itertools.pairwise(bounds)]
        model = _model(seed, epoch_metrics=["f1"])
        split = model.evaluate_generator(batches, verbose=False, return_dict_format=True)
        whole = model.evaluate_generator([(x, y)], verbose=False, return_dict_format=True)
        assert split.keys() == whole.keys()
        for key in set(whole) - {"time"}:
            assert split[key] == pytest.approx(whole[key], rel=1e-6, abs=1e-9), key


class TestFriendlyErrors:
    def test_dataloader_kwargs_override_defaults(self):
        """dataloader_kwargs may set shuffle and batch_size without a duplicate-keyword error."""
        x, y = _data(20)
        model = _model()
        history = model.fit(x, y, epochs=1, verbose=False,
                            dataloader_kwargs={"shuffle": False, "batch_size": 5})
        assert len(history) == 1
        assert model.evaluate(x, y, verbose=False, dataloader_kwargs={"shuffle": True})

    def test_one_shot_generator_reused_says_so(self):
        """A plain generator used for a second epoch gets a message about one-shot iterators."""
        x, y = _data(16)
        batches = (b for b in _batches(x, y, 8))
        with pytest.raises(EmptyLoaderError, match="one-shot iterator"):
            _model().fit_generator(batches, epochs=2, verbose=False)

    def test_misspelled_optimizer_argument_lists_the_valid_ones(self):
        """{'optim': 'sgd', 'lrr': 0.1} names 'lrr' and SGD's arguments."""
        with pytest.raises(ConfigurationError, match=r"\['lrr'\].*momentum"):
            Model(nn.Linear(2, 2), {"optim": "sgd", "lrr": 0.1}, "mse")


class TestReviewRegressions:
    def test_grad_mode_is_restored_when_a_handler_raises(self):
        """A callback raising during validation leaves the caller's grad mode as it was."""

        class Boom(Callback):
            def on_valid_batch_end(self, batch_number, logs):
                raise RuntimeError("boom")

        x, y = _data(16)
        with pytest.raises(RuntimeError, match="boom"):
            _model().fit_generator(_batches(x, y, 8), _batches(x, y, 8), epochs=1,
                                   callbacks=[Boom()], verbose=False)
        assert torch.is_grad_enabled()

    def test_numpy_targets_with_tensor_inputs_train_without_a_device(self):
        """A (tensor, NumPy array) batch trains with device=None, as with a device."""
        x, y = _data(16)
        batches = [(bx, by.numpy()) for bx, by in _batches(x, y, 8)]
        assert len(_model().fit_generator(batches, epochs=1, verbose=False)) == 1

    def test_nested_callback_list_subscribes_only_the_hooks_used(self):
        """A CallbackList nested in the callbacks subscribes only its members' hooks (no
        per-step batch logs for an epoch-only callback)."""
        from epochal import CallbackList

        calls = []

        class EpochOnly(Callback):
            def on_epoch_end(self, epoch_number, logs):
                calls.append(epoch_number)

        x, y = _data(16)
        model = _model()
        model.fit_generator(_batches(x, y, 8), epochs=1, verbose=False,
                            callbacks=[CallbackList([EpochOnly()])])
        assert calls == [1]
        assert not model.bus.has_subscribers(StepRecord)

    def test_fit_under_no_grad_still_trains(self):
        """fit called inside torch.no_grad() still computes gradients and updates weights."""
        x, y = _data(16)
        model = _model()
        before = model.get_weight_copies()["weight"]
        with torch.no_grad():
            model.fit_generator(_batches(x, y, 8), epochs=1, verbose=False)
        assert not torch.equal(before, model.get_weight_copies()["weight"])


class _Counting(Callback):
    """Counts training batches that ran."""

    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch_number, logs):
        self.batches += 1


class _BatchLogs(Callback):
    def __init__(self):
        super().__init__()
        self.logs: dict[str, list] = {}

    def _keep(self, name, logs):
        self.logs.setdefault(name, []).append(logs)

    def on_train_batch_end(self, batch_number, logs):
        self._keep("train", logs)

    def on_valid_batch_end(self, batch_number, logs):
        self._keep("valid", logs)

    def on_test_batch_end(self, batch_number, logs):
        self._keep("test", logs)


class TestPoutyneBehaviour:
    def test_batch_logs_carry_phase_prefixes_and_int_counts(self):
        """Validation and test batch logs use val_/test_ keys; batch and size are ints."""
        x, y = _data(16)
        spy = _BatchLogs()
        model = _model()
        model.fit_generator(_batches(x, y, 8), _batches(x, y, 8), epochs=1, verbose=False,
                            callbacks=[spy])
        model.evaluate_generator(_batches(x, y, 8), verbose=False, callbacks=[spy])
        assert set(spy.logs["train"][0]) == {"batch", "size", "time", "loss", "acc"}
        assert set(spy.logs["valid"][0]) == {"batch", "size", "time", "val_loss", "val_acc"}
        assert set(spy.logs["test"][0]) == {"batch", "size", "time", "test_loss", "test_acc"}
        assert type(spy.logs["valid"][1]["batch"]) is int and spy.logs["valid"][1]["size"] == 8

    def test_epoch_log_keys_hold_no_lr(self):
        """epoch_log_keys and every history row hold Poutyne's keys only; lrs stay readable."""
        x, y = _data(16)
        model = _model()
        history = model.fit_generator(_batches(x, y, 8), epochs=1, verbose=False)
        assert model.epoch_log_keys == ("epoch", "time", "loss", "acc") == tuple(history[0])
        assert model.learning_rates() == {"lr": 0.1}

    def test_on_batch_results_use_batch_metrics_and_plain_keys(self):
        """*_on_batch return loss and batch metrics only; dict keys have no prefix."""
        x, y = _data(8)
        model = _model(epoch_metrics=["f1"])
        logs = model.evaluate_on_batch(x, y, return_dict_format=True)
        assert set(logs) == {"loss", "acc"}
        loss, acc = model.train_on_batch(x, y)
        assert isinstance(loss, float) and isinstance(acc, float)
        loss, acc, pred = model.evaluate_on_batch(x, y, return_pred=True, convert_to_numpy=False)
        assert isinstance(pred, torch.Tensor) and pred.shape == (8, 3)

    def test_convert_to_numpy_false_keeps_tensors(self):
        """predict/evaluate with convert_to_numpy=False return tensors, concatenated."""
        x, y = _data(20)
        model = _model()
        pred = model.predict(x, batch_size=6, verbose=False, convert_to_numpy=False)
        assert isinstance(pred, torch.Tensor) and pred.shape == (20, 3)
        *_, true = model.evaluate_generator(_batches(x, y, 6), verbose=False,
                                            return_ground_truth=True, convert_to_numpy=False)
        assert torch.equal(true, y)
        assert isinstance(model.predict_on_batch(x, convert_to_numpy=False), torch.Tensor)

    def test_return_ground_truth_implies_has_ground_truth(self):
        """predict_generator(return_ground_truth=True) reads (x, y) batches without the flag."""
        x, y = _data(12)
        pred, true = _model().predict_generator(_batches(x, y, 5), return_ground_truth=True,
                                                verbose=False)
        assert pred.shape == (12, 3) and np.array_equal(true, y.numpy())

    def test_set_model_is_called_before_set_params(self):
        """Callbacks receive the model before the params, as in Poutyne."""
        order = []

        class Spy(Callback):
            def set_model(self, model):
                order.append("model")
                super().set_model(model)

            def set_params(self, params):
                order.append("params")
                super().set_params(params)

        x, y = _data(8)
        _model().fit_generator(_batches(x, y, 8), epochs=1, verbose=False, callbacks=[Spy()])
        assert order == ["model", "params"]

    def test_validation_generator_without_len_uses_steps_per_epoch(self):
        """A validation generator without len() runs steps_per_epoch batches, cycled."""
        x, y = _data(16)
        seen = []

        class Endless:
            def __iter__(self):
                for batch in _batches(x, y, 8):
                    seen.append(1)
                    yield batch

        spy = _BatchLogs()
        model = _model()
        model.fit_generator(_batches(x, y, 8) * 3, Endless(), epochs=1, steps_per_epoch=3,
                            verbose=False, callbacks=[spy])
        assert len(spy.logs["valid"]) == 3 and len(seen) == 3

    def test_generator_without_len_and_count_runs_until_exhausted(self):
        """Without a count, a generator without len() is read until it is exhausted."""
        x, y = _data(24)
        counting = _Counting()
        _model().fit_generator((b for b in _batches(x, y, 8)), epochs=1, verbose=False,
                               callbacks=[counting])
        assert counting.batches == 3

    def test_signatures_cover_poutyne_keywords(self):
        """Every keyword of poutyne.Model's public methods exists on epochal.Model with the
        same default (cpu/cuda's *args aside)."""
        import inspect

        poutyne = pytest.importorskip("poutyne")
        missing = []
        for name in dir(poutyne.Model):
            if name.startswith("_") or name in ("cpu", "cuda"):
                continue
            theirs = getattr(poutyne.Model, name)
            if not callable(theirs):
                continue
            ours = getattr(Model, name, None)
            if ours is None:
                missing.append(name)
                continue
            params = inspect.signature(ours).parameters
            for key, value in inspect.signature(theirs).parameters.items():
                if key not in params or params[key].default != value.default:
                    missing.append(f"{name}({key})")
        assert missing == []

    def test_non_strict_weights_warn_with_both_key_sets(self):
        """set_weights(strict=False) warns naming missing and unexpected keys; no match at
        all is a CheckpointError naming both key sets, and nothing is loaded."""
        from epochal.exceptions import CheckpointError

        model = Model(nn.Linear(2, 2), None, None)
        before = model.get_weight_copies()
        with pytest.warns(UserWarning, match=r"missing keys .*bias.*unexpected keys .*extra"):
            model.set_weights({"weight": torch.zeros(2, 2), "extra": torch.ones(1)},
                              strict=False)
        assert torch.equal(model.network.weight, torch.zeros(2, 2))
        with pytest.raises(CheckpointError, match=r"module\.weight.*Network's keys: .*bias"):
            model.set_weights({"module.weight": torch.ones(2, 2)}, strict=False)
        assert torch.equal(model.network.bias, before["bias"])

    def test_load_weights_of_missing_file_names_it(self, tmp_path):
        """load_weights of a missing file names the file and says what to pass."""
        path = tmp_path / "nothing.ckpt"
        with pytest.raises(FileNotFoundError, match=r"nothing\.ckpt.*save_weights") as info:
            Model(nn.Linear(2, 2), None, None).load_weights(str(path))
        assert "names()" not in str(info.value)


class TestFailFast:
    def test_empty_validation_loader_fails_before_training(self):
        """An empty validation loader is an EmptyLoaderError before any training step."""
        x, y = _data(16)
        counting = _Counting()
        model = _model()
        weights = model.get_weight_copies()
        with pytest.raises(EmptyLoaderError, match="validation loader yielded no batch") as info:
            model.fit_generator(_batches(x, y, 8), [], epochs=1, verbose=False,
                                callbacks=[counting])
        assert "before training" in str(info.value) and "batch_size" in str(info.value)
        assert counting.batches == 0
        assert torch.equal(model.network.weight, weights["weight"])

    def test_validation_data_without_targets_fails_before_training(self):
        """fit(validation_data=x_val) is a ConfigurationError naming validation_data and the
        expected (x_val, y_val) pair, before any step."""
        x, y = _data(16)
        counting = _Counting()
        with pytest.raises(ConfigurationError, match=r"validation_data must be an \(x_val, y_val\)"):
            _model().fit(x, y, validation_data=x, epochs=1, verbose=False, callbacks=[counting])
        assert counting.batches == 0

    def test_network_rejecting_the_input_names_phase_batch_shapes_and_expected(self):
        """A forward error is a ShapeMismatchError with phase, batch, shapes, dtypes and the
        first layer's expected input, chained to PyTorch's error."""
        x, y = _data(16, features=5)
        model = _model()
        with pytest.raises(ShapeMismatchError) as info:
            model.fit_generator(_batches(x, y, 8), epochs=1, verbose=False)
        message = str(info.value)
        assert "train pass (epoch 1, batch 1)" in message
        assert "(8, 5) float32" in message and "last dimension is 4" in message
        assert isinstance(info.value.__cause__, RuntimeError)
        assert isinstance(info.value, RuntimeError)  # code catching PyTorch's error still does
        with pytest.raises(ShapeMismatchError, match=r"test pass \(batch 1\)"):
            model.evaluate(x, y, verbose=False)

    def test_float64_numpy_inputs_train_a_float32_network(self):
        """fit on float64 NumPy arrays casts them to the network's float32 and trains."""
        x, y = _data(16)
        history = _model().fit(x.double().numpy(), y.numpy(), validation_data=(
            x.double().numpy(), y.numpy()), epochs=1, batch_size=8, verbose=False)
        assert math.isfinite(history[0]["val_loss"])

    def test_python_lists_get_a_message_saying_what_to_pass(self):
        """A Python list of numbers is a TypeError saying to pass an array, before any step."""
        with pytest.raises(TypeError, match=r"x is a Python list of numbers.*np\.asarray"):
            _model().fit([[0.0] * 4] * 8, [0] * 8, epochs=1, verbose=False)

    def test_non_finite_loss_warns_once_naming_epoch_and_batch(self):
        """A nan loss warns once, at the end of the first epoch it appears in, naming the epoch,
        the first non-finite batch and TerminateOnNaN."""
        x, y = _data(24)
        x[9] = float("nan")  # second batch of 8
        with pytest.warns(RuntimeWarning) as record:
            _model().fit_generator(_batches(x, y, 8), epochs=2, verbose=False)
        messages = [str(w.message) for w in record if "non-finite" in str(w.message)]
        assert len(messages) == 1
        assert "epoch 1, first at batch 2" in messages[0] and "TerminateOnNaN" in messages[0]

    def test_loss_error_has_no_doubled_period(self):
        """A target out of bounds reads 'out of bounds. Check', not '..'."""
        x, _y = _data(8)
        with pytest.raises(ShapeMismatchError) as info:
            _model().fit(x, torch.full((8,), 3), epochs=1, verbose=False)
        assert ".." not in str(info.value) and "out of bounds" in str(info.value)


class TestStepCountFromLen:
    def test_a_generator_with_len_gives_the_step_count(self):
        """An endless iterable with len() 3 trains 3 steps per epoch, and callbacks see
        params['steps'] == 3 (Poutyne takes the step count from len())."""
        x, y = _data(16)
        batches = _batches(x, y, 8)

        class EndlessWithLen:
            def __len__(self):
                return 3

            def __iter__(self):
                while True:
                    yield from batches

        class Steps(_Counting):
            def on_train_begin(self, logs):
                self.steps = self.params["steps"]

        counting = Steps()
        _model().fit_generator(EndlessWithLen(), epochs=2, verbose=False, callbacks=[counting])
        assert counting.steps == 3 and counting.batches == 6
