"""Learning-rate scheduler callbacks: every schedule steps once per epoch and matches
PyTorch's (and Poutyne's: tests/integration/test_poutyne_scripts.py runs both)."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as torch_sched

from epochal import Model
from epochal.callbacks import lr_scheduler as sched
from epochal.callbacks.base import Callback
from epochal.callbacks.utility import LambdaCallback
from epochal.exceptions import ConfigurationError, MonitorKeyError


def _batches(n_batches: int, size: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_batches * size, 3, generator=g)
    y = torch.randn(n_batches * size, 1, generator=g)
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def _model(lr: float = 0.1, seed: int = 0) -> Model:
    torch.manual_seed(seed)
    network = nn.Linear(3, 1)
    return Model(network, torch.optim.SGD(network.parameters(), lr=lr, momentum=0.9), "mse")


class _LearningRates(Callback):
    """Records the learning rates each epoch trains with (Poutyne's logs do not hold them:
    its loggers read the optimizer, as this does)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []

    def on_epoch_begin(self, epoch_number, logs):
        self.rows.append(self.model.learning_rates())


def _fit(model: Model, *args, callbacks=(), **kwargs) -> list[dict]:
    """fit_generator, with each history row extended by the epoch's learning rates."""
    recorder = _LearningRates()
    history = model.fit_generator(*args, callbacks=[*callbacks, recorder], **kwargs)
    return [dict(row, **lrs) for row, lrs in zip(history, recorder.rows, strict=True)]


def _hand_optimizer(lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


class TestGeneratedClasses:
    def test_every_torch_scheduler_has_a_callback(self):
        """Each public LRScheduler subclass of torch.optim.lr_scheduler has a callback of the
        same name whose torch_class is that class."""
        base = torch_sched.LRScheduler
        names = [
            n for n, o in vars(torch_sched).items()
            if inspect.isclass(o) and issubclass(o, base) and o is not base
            and not n.startswith("_") and o.__module__ == torch_sched.__name__
        ]
        assert "OneCycleLR" in names and "StepLR" in names
        for name in names:
            cls = getattr(sched, name)
            assert cls.torch_class is getattr(torch_sched, name)
            assert name in sched.__all__

    def test_signature_is_torchs_minus_the_optimizer(self):
        """A generated class reports the torch signature without ``optimizer``."""
        params = list(inspect.signature(sched.StepLR).parameters)
        assert params[:2] == ["step_size", "gamma"]
        assert "optimizer" not in params

    def test_wrong_argument_fails_at_construction(self):
        """An argument torch's class does not take is a TypeError when the callback is made."""
        with pytest.raises(TypeError, match="gamm"):
            sched.StepLR(step_size=2, gamm=0.5)

    def test_optimizer_argument_is_refused(self):
        """Passing an optimizer is a ConfigurationError saying it comes from the Model."""
        with pytest.raises(ConfigurationError, match="optimizer"):
            sched.StepLR(optimizer=_hand_optimizer(), step_size=2)

    @pytest.mark.parametrize("callback", [
        sched.StepLR(step_size=1),
        sched.OneCycleLR(max_lr=0.1, total_steps=10),
        sched.CyclicLR(base_lr=0.01, max_lr=0.1),
        sched.SequentialLR(schedulers=[sched.OneCycleLR(max_lr=0.1, total_steps=2)],
                           milestones=[]),
    ], ids=lambda c: type(c).__name__)
    def test_used_hooks_hold_no_batch_hook(self, callback):
        """Every schedule, OneCycleLR and CyclicLR included, acts at train begin, epoch end
        and train end only: it steps once per epoch, as Poutyne's wrappers do."""
        assert callback.used_hooks == {"on_train_begin", "on_epoch_end", "on_train_end"}

    @pytest.mark.parametrize("make", [
        lambda o: sched.StepLR(o, 1),
        lambda o: sched.OneCycleLR(o, max_lr=0.1, total_steps=4),
        lambda o: sched.SequentialLR(o, [sched.ExponentialLR(gamma=0.5)], milestones=[]),
        lambda o: sched.ReduceLROnPlateau(o),
    ], ids=["StepLR", "OneCycleLR", "SequentialLR", "ReduceLROnPlateau"])
    def test_positional_optimizer_is_refused_with_poutynes_message(self, make):
        """An optimizer passed first (the PyTorch habit, StepLR(optimizer, 1)) is refused at
        construction with Poutyne's ValueError text, the callback's name and what to write
        instead, not a TypeError from inside the schedule."""
        with pytest.raises(ConfigurationError) as info:
            make(_hand_optimizer())
        message = str(info.value)
        assert isinstance(info.value, ValueError)
        assert message.startswith(
            "In the LR scheduler callbacks, the optimizer is automatically passed to the "
            "PyTorch's LR scheduler. You must remove it from the arguments."
        )
        assert "got a SGD optimizer as a positional argument" in message
        assert "not " in message and "(optimizer, ...)" in message

    def test_positional_optimizer_names_the_right_call(self):
        """The message shows the call to write: the callback with its first argument."""
        with pytest.raises(ConfigurationError, match=r"write StepLR\(step_size=\.\.\.\)"):
            sched.StepLR(_hand_optimizer(), 1)


class TestGetScheduler:
    def test_by_name(self):
        """get_scheduler builds the named callback with the given arguments."""
        callback = sched.get_scheduler("StepLR", step_size=3, gamma=0.5)
        assert isinstance(callback, sched.StepLR)
        assert callback.kwargs == {"step_size": 3, "gamma": 0.5}

    def test_case_and_underscores_are_ignored(self):
        """'step_lr' and 'reducelronplateau' name StepLR and ReduceLROnPlateau."""
        assert isinstance(sched.get_scheduler("step_lr", step_size=1), sched.StepLR)
        assert isinstance(sched.get_scheduler("reducelronplateau"), sched.ReduceLROnPlateau)

    def test_unknown_name_lists_valid_names(self):
        """An unknown name is a ConfigurationError listing every valid name."""
        with pytest.raises(ConfigurationError) as info:
            sched.get_scheduler("StepLRR")
        message = str(info.value)
        for name in sched.scheduler_names():
            assert name in message
        assert "Did you mean 'StepLR'" in message


class TestPerEpochSchedules:
    def test_step_lr_matches_torch(self):
        """StepLR steps once per epoch; the logged lr equals a torch StepLR driven by hand."""
        model = _model()
        callback = sched.StepLR(step_size=2, gamma=0.1)
        history = _fit(model, _batches(3), epochs=6, callbacks=[callback], verbose=False)
        optimizer = _hand_optimizer()
        reference = torch_sched.StepLR(optimizer, step_size=2, gamma=0.1)
        expected = []
        for _ in range(6):
            expected.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            reference.step()
        assert [h["lr"] for h in history] == pytest.approx(expected, rel=1e-12)
        assert isinstance(callback.scheduler, torch_sched.StepLR)

    def test_two_param_groups_log_lr_group_keys(self):
        """With two parameter groups the logs hold lr_group_0 and lr_group_1, each scheduled."""
        torch.manual_seed(0)
        network = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
        optimizer = torch.optim.SGD(
            [{"params": network[0].parameters(), "lr": 0.1},
             {"params": network[1].parameters(), "lr": 0.01}]
        )
        model = Model(network, optimizer, "mse")
        history = _fit(model,
            _batches(2), epochs=3, callbacks=[sched.ExponentialLR(gamma=0.5)], verbose=False
        )
        assert "lr" not in history[0]
        assert [h["lr_group_0"] for h in history] == pytest.approx([0.1, 0.05, 0.025])
        assert [h["lr_group_1"] for h in history] == pytest.approx([0.01, 0.005, 0.0025])

    def test_sequential_lr_of_callbacks_matches_torch(self):
        """SequentialLR takes scheduler callbacks and matches torch's SequentialLR."""
        model = _model()
        callback = sched.SequentialLR(
            schedulers=[sched.LinearLR(start_factor=0.5, total_iters=2),
                        sched.ExponentialLR(gamma=0.9)],
            milestones=[2],
        )
        history = _fit(model, _batches(2), epochs=5, callbacks=[callback], verbose=False)
        optimizer = _hand_optimizer()
        reference = torch_sched.SequentialLR(
            optimizer,
            [torch_sched.LinearLR(optimizer, start_factor=0.5, total_iters=2),
             torch_sched.ExponentialLR(optimizer, gamma=0.9)],
            milestones=[2],
        )
        expected = []
        for _ in range(5):
            expected.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            reference.step()
        assert [h["lr"] for h in history] == pytest.approx(expected, rel=1e-12)

    def test_chained_scheduler_of_factories(self):
        """ChainedScheduler takes factories optimizer -> scheduler and applies both."""
        model = _model()
        callback = sched.ChainedScheduler(
            schedulers=[lambda o: torch_sched.ExponentialLR(o, gamma=0.5),
                        sched.ConstantLR(factor=0.5, total_iters=1)],
        )
        history = _fit(model, _batches(2), epochs=3, callbacks=[callback], verbose=False)
        assert [h["lr"] for h in history] == pytest.approx([0.05, 0.05, 0.025])


class TestCyclicSchedulesStepPerEpoch:
    """OneCycleLR and CyclicLR step once per epoch, as every Poutyne scheduler callback does."""

    @staticmethod
    def _per_epoch_reference(make, epochs: int) -> list[float]:
        optimizer = _hand_optimizer()
        reference = make(optimizer)
        lrs = []
        for _ in range(epochs):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            reference.step()
        return lrs

    def test_one_cycle_total_steps_counts_epochs(self):
        """OneCycleLR(total_steps=4) over 4 epochs of 4 batches trains all 4 epochs (per-step
        stepping raised "Tried to step 5 times"); each epoch's lr is a hand-driven torch
        OneCycleLR stepped once per epoch, and the lr is constant within an epoch."""
        model = _model()
        used: list[float] = []
        recorder = LambdaCallback(
            on_backward_end=lambda b: used.append(model.optimizer.param_groups[0]["lr"])
        )
        callback = sched.OneCycleLR(max_lr=0.1, total_steps=4)
        history = _fit(model, _batches(4), epochs=4, callbacks=[callback, recorder],
                       verbose=False)
        expected = self._per_epoch_reference(
            lambda o: torch_sched.OneCycleLR(o, max_lr=0.1, total_steps=4), 4)
        assert len(history) == 4
        assert [h["lr"] for h in history] == pytest.approx(expected, rel=1e-12)
        assert used == pytest.approx([lr for lr in expected for _ in range(4)], rel=1e-12)
        assert callback.scheduler.last_epoch == 4

    def test_one_cycle_past_its_total_fails_as_in_torch(self):
        """A fifth epoch steps the 4-step schedule a fifth time: PyTorch's ValueError, as
        with Poutyne."""
        model = _model()
        with pytest.raises(ValueError, match="Tried to step 5 times"):
            model.fit_generator(_batches(2), epochs=5, verbose=False,
                                callbacks=[sched.OneCycleLR(max_lr=0.1, total_steps=4)])

    def test_cyclic_lr_matches_torch_per_epoch(self):
        """CyclicLR(step_size_up=2) climbs and falls over epochs, not batches."""
        model = _model()
        history = _fit(model, _batches(3), epochs=6, verbose=False,
                       callbacks=[sched.CyclicLR(base_lr=0.01, max_lr=0.1, step_size_up=2)])
        expected = self._per_epoch_reference(
            lambda o: torch_sched.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=2), 6)
        assert [h["lr"] for h in history] == pytest.approx(expected, rel=1e-12)
        assert expected[0] != expected[2]

    def test_accumulation_does_not_change_the_schedule(self):
        """With batches_per_step=2 the schedule still steps once per epoch."""
        model = _model()
        callback = sched.OneCycleLR(max_lr=0.1, total_steps=3)
        history = _fit(model, _batches(5), epochs=3, batches_per_step=2, verbose=False,
                       callbacks=[callback])
        expected = self._per_epoch_reference(
            lambda o: torch_sched.OneCycleLR(o, max_lr=0.1, total_steps=3), 3)
        assert [h["lr"] for h in history] == pytest.approx(expected, rel=1e-12)
        assert callback.scheduler.last_epoch == 3

    def test_sequential_lr_of_one_cycles_steps_per_epoch(self):
        """A SequentialLR whose members are OneCycleLR callbacks steps once per epoch too."""
        model = _model()
        callback = sched.SequentialLR(
            schedulers=[sched.OneCycleLR(max_lr=0.1, total_steps=2),
                        sched.CyclicLR(base_lr=0.01, max_lr=0.1, step_size_up=1)],
            milestones=[2],
        )
        history = _fit(model, _batches(3), epochs=4, callbacks=[callback], verbose=False)

        def reference(o):
            return torch_sched.SequentialLR(
                o, [torch_sched.OneCycleLR(o, max_lr=0.1, total_steps=2),
                    torch_sched.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=1)],
                milestones=[2])

        assert [h["lr"] for h in history] == pytest.approx(
            self._per_epoch_reference(reference, 4), rel=1e-12)
        assert callback.scheduler.last_epoch == 4

    def test_momentum_is_cycled(self):
        """OneCycleLR also cycles SGD's momentum, as in torch."""
        model = _model()
        model.fit_generator(_batches(4), epochs=2, verbose=False,
                            callbacks=[sched.OneCycleLR(max_lr=0.1, total_steps=8)])
        assert model.optimizer.param_groups[0]["momentum"] != 0.9

    def test_resume_continues_a_one_cycle(self):
        """A OneCycleLR state saved after 2 of 5 epochs and loaded into a fresh callback
        continues the schedule: 2 + 3 epochs log the lrs of 5 epochs in one go, and the
        cycled momentum is the restored schedule's."""
        def make():
            return sched.OneCycleLR(max_lr=0.1, total_steps=5)

        full = _fit(_model(), _batches(2), epochs=5, callbacks=[make()], verbose=False)
        first = _model()
        callback = make()
        head = _fit(first, _batches(2), epochs=2, callbacks=[callback], verbose=False)
        second = _model()
        second.optimizer.load_state_dict(first.optimizer.state_dict())
        resumed = make()
        resumed.load_state_dict(callback.state_dict())
        tail = _fit(second, _batches(2), epochs=5, initial_epoch=3, callbacks=[resumed],
                    verbose=False)
        assert [h["lr"] for h in head + tail] == pytest.approx([h["lr"] for h in full])
        assert resumed.scheduler.last_epoch == 5


class TestReduceLROnPlateau:
    def test_reduces_after_patience(self):
        """With a loss that does not improve, the lr is multiplied by factor once the bad
        epochs exceed patience, as torch's ReduceLROnPlateau does."""
        model = _model(lr=1e-9)
        callback = sched.ReduceLROnPlateau(monitor="loss", patience=1, factor=0.5, eps=0.0)
        history = _fit(model, _batches(2), epochs=6, callbacks=[callback],
                                      verbose=False)
        lrs = [h["lr"] for h in history]
        assert lrs[0] == lrs[1] == lrs[2] == 1e-9
        assert lrs[3] == pytest.approx(0.5e-9)
        optimizer = _hand_optimizer(lr=1e-9)
        reference = torch_sched.ReduceLROnPlateau(optimizer, patience=1, factor=0.5, eps=0.0)
        expected = []
        for h in history:
            expected.append(optimizer.param_groups[0]["lr"])
            reference.step(h["loss"])
        assert lrs == pytest.approx(expected, rel=1e-12)

    def test_monitors_validation_loss_by_default(self):
        """By default it watches val_loss, which a fit with validation logs."""
        model = _model(lr=1e-9)
        callback = sched.ReduceLROnPlateau(patience=0, factor=0.1, eps=0.0)
        history = _fit(model, _batches(2), _batches(1, seed=1), epochs=3,
                                      callbacks=[callback], verbose=False)
        assert history[2]["lr"] < history[0]["lr"]

    def test_unknown_monitor_key_fails_at_train_begin(self):
        """Monitoring a key the training never logs is a MonitorKeyError naming the key and
        listing the logged ones."""
        model = _model()
        with pytest.raises(MonitorKeyError) as info:
            model.fit_generator(_batches(2), epochs=1, verbose=False,
                                callbacks=[sched.ReduceLROnPlateau(monitor="val_loss")])
        message = str(info.value)
        assert "'val_loss'" in message and "Logged keys: epoch, time, loss." in message

    def test_bad_mode_is_refused(self):
        """mode other than 'min'/'max' is a ConfigurationError."""
        with pytest.raises(ConfigurationError, match="mode"):
            sched.ReduceLROnPlateau(mode="minimum")

    def test_positional_arguments_follow_torch(self):
        """Positional arguments are torch's (mode, factor, ...), as in Poutyne."""
        callback = sched.ReduceLROnPlateau("max", 0.5, monitor="val_acc")
        assert callback.kwargs["mode"] == "max" and callback.kwargs["factor"] == 0.5
        assert callback.monitor == "val_acc"


class TestState:
    def test_resumed_schedule_equals_uninterrupted(self):
        """A StepLR state loaded before train begin continues the schedule exactly: 2 + 2
        epochs log the same lrs as 4 epochs in one go."""
        model = _model()
        full = _fit(model, _batches(2), epochs=4, verbose=False,
                                   callbacks=[sched.StepLR(step_size=1, gamma=0.5)])
        first = _model()
        callback = sched.StepLR(step_size=1, gamma=0.5)
        head = _fit(first, _batches(2), epochs=2, callbacks=[callback], verbose=False)
        scheduler_state = callback.state_dict()
        optimizer_state = first.optimizer.state_dict()

        second = _model()
        second.optimizer.load_state_dict(optimizer_state)
        resumed = sched.StepLR(step_size=1, gamma=0.5)
        resumed.load_state_dict(scheduler_state)
        assert resumed.state_dict() == scheduler_state
        tail = _fit(second, _batches(2), epochs=4, initial_epoch=3,
                                    callbacks=[resumed], verbose=False)
        assert [h["lr"] for h in head + tail] == pytest.approx([h["lr"] for h in full])

    def test_loaded_state_sets_the_optimizer_lr(self):
        """Loading a state restores the schedule's lr into the optimizer even when the
        optimizer itself was not restored."""
        first = _model()
        callback = sched.ExponentialLR(gamma=0.5)
        first.fit_generator(_batches(1), epochs=3, callbacks=[callback], verbose=False)
        second = _model()
        resumed = sched.ExponentialLR(gamma=0.5)
        resumed.load_state_dict(callback.state_dict())
        history = _fit(second, _batches(1), epochs=4, initial_epoch=4,
                                       callbacks=[resumed], verbose=False)
        assert history[0]["lr"] == pytest.approx(0.1 * 0.5**3)

    def test_second_fit_continues_the_schedule(self):
        """Calling fit again with the same callback and optimizer continues the schedule."""
        model = _model()
        callback = sched.ExponentialLR(gamma=0.5)
        model.fit_generator(_batches(1), epochs=2, callbacks=[callback], verbose=False)
        history = _fit(model, _batches(1), epochs=3, initial_epoch=3,
                                      callbacks=[callback], verbose=False)
        assert history[0]["lr"] == pytest.approx(0.025)

    def test_state_before_training_is_empty(self):
        """A callback that has neither trained nor loaded a state has an empty state."""
        assert sched.StepLR(step_size=1).state_dict() == {}
        assert sched.StepLR(step_size=1).scheduler is None

    def test_save_state_and_load_state_round_trip_through_a_file(self, tmp_path):
        """save_state writes the schedule to a binary file; load_state on a fresh callback
        continues it (Poutyne's file methods): 3 epochs, then 1 more, end at 0.1 * 0.5**4."""
        first = _model()
        callback = sched.ExponentialLR(gamma=0.5)
        first.fit_generator(_batches(1), epochs=3, callbacks=[callback], verbose=False)
        with open(tmp_path / "sched.pt", "wb") as f:
            callback.save_state(f)
        resumed = sched.ExponentialLR(gamma=0.5)
        with open(tmp_path / "sched.pt", "rb") as f:
            resumed.load_state(f)
        assert resumed.state_dict() == callback.state_dict()
        second = _model()
        second.fit_generator(_batches(1), epochs=4, initial_epoch=4, callbacks=[resumed],
                             verbose=False)
        assert second.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**4)

    def test_load_state_refuses_a_pickled_object(self, tmp_path):
        """A state file holding an arbitrary pickled object is refused (weights-only load)."""
        import argparse

        from epochal.exceptions import CheckpointError

        with open(tmp_path / "evil.pt", "wb") as f:
            torch.save(argparse.Namespace(step_size=1), f)
        with open(tmp_path / "evil.pt", "rb") as f, pytest.raises(CheckpointError):
            sched.StepLR(step_size=1).load_state(f)

    def test_load_state_dict_takes_poutynes_keyword(self):
        """load_state_dict's parameter is named state_dict, as in Poutyne and PyTorch."""
        callback = sched.StepLR(step_size=1)
        callback.load_state_dict(state_dict={"last_epoch": 2})
        assert callback.state_dict() == {"last_epoch": 2}
