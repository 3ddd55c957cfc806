"""``Model(precision=..., compile=...)``: checking the arguments before any work, the loss
scaler's state in the optimizer file, weights saved from a compiled network, an LR schedule
(stepped per epoch) and an ``OptimizerPolicy`` (which does not count a step the scaler
skipped) around skipped steps."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
from torch import nn

from epochal import Model
from epochal.callbacks.base import Callback
from epochal.callbacks.lr_scheduler import OneCycleLR
from epochal.exceptions import CheckpointError, ConfigurationError
from epochal.precision import prepare_precision


def _network(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 4))


def _batches(n: int = 96) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Six fixed batches of 16 (no shuffling: runs are comparable bit for bit)."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 12, generator=generator)
    y = torch.randint(0, 4, (n,), generator=generator)
    return [(x[i:i + 16], y[i:i + 16]) for i in range(0, n, 16)]


class TestArguments:
    def test_default_is_float32_without_helper(self) -> None:
        """The default precision is '32': no autocast helper, the plain float32 steps."""
        model = Model(_network(), "sgd", "cross_entropy")
        assert model.precision == "32"
        assert model.mixed_precision is None
        assert model.forward_network is model.network

    @pytest.mark.parametrize("name,scaled", [("bf16-mixed", False), ("16-mixed", True)])
    def test_mixed_precisions_build_a_helper_for_the_device(self, name: str, scaled: bool) -> None:
        """'bf16-mixed' and '16-mixed' get a helper on the parameters' device type, with a
        GradScaler only for '16-mixed'."""
        model = Model(_network(), "sgd", "cross_entropy", precision=name)
        assert model.precision == name
        assert model.mixed_precision is not None
        assert model.mixed_precision.device_type == "cpu"
        assert (model.mixed_precision.scaler is not None) is scaled

    def test_unknown_precision_fails_with_a_suggestion(self) -> None:
        """An unknown precision string is refused before the optimizer is even built, with
        the valid names and the closest one."""
        with pytest.raises(ConfigurationError, match=r"Unknown precision 'bf16'.*'32'.*"
                           r"Did you mean 'bf16-mixed'"):
            Model(_network(), "not-an-optimizer", "cross_entropy", precision="bf16")

    def test_device_that_cannot_autocast_is_named_before_moving(self) -> None:
        """A precision the device cannot run fails naming the device and torch's version,
        and the network stays where it was."""
        network = _network()
        with pytest.raises(ConfigurationError, match=r"'bf16-mixed' cannot run on device "
                           r"'meta' with torch .*no autocast"):
            Model(network, "sgd", "cross_entropy", precision="bf16-mixed", device="meta")
        assert next(network.parameters()).device.type == "cpu"

    def test_move_to_device_that_cannot_run_it_fails_and_keeps_the_model(self) -> None:
        """``Model.to`` checks the precision on the new device first; on refusal nothing
        moved and the helper is unchanged."""
        model = Model(_network(), "sgd", "cross_entropy", precision="16-mixed")
        helper = model.mixed_precision
        with pytest.raises(ConfigurationError, match="'meta'"):
            model.to("meta")
        assert model.mixed_precision is helper
        assert model.device is None
        assert next(model.network.parameters()).device.type == "cpu"

    @pytest.mark.parametrize("options,message", [
        ({"mood": "fast"}, r"takes no option 'mood'.*Did you mean 'mode'"),
        ({"mode": "warp-speed"}, r"mode 'warp-speed' is unknown"),
        ({"backend": "no-such-backend"}, r"backend 'no-such-backend' is unknown"),
        ({"fullgraph": "yes"}, r"'fullgraph' must be bool"),
        ("yes", r"compile must be True, False or a dict"),
    ])
    def test_bad_compile_options_fail_before_compiling(self, options: Any, message: str) -> None:
        """Compile options torch would reject fail at construction with a clear message."""
        with pytest.raises(ConfigurationError, match=message):
            Model(_network(), "sgd", "cross_entropy", compile=options)

    def test_compile_keeps_the_eager_network_for_weights(self) -> None:
        """``compile=True`` wraps the network for forward passes only: ``model.network`` is
        the eager module and its weights have no ``_orig_mod.`` prefix."""
        network = _network()
        model = Model(network, "sgd", "cross_entropy", compile=True)
        assert model.network is network
        assert model.forward_network is not network
        assert all("_orig_mod" not in key for key in model.get_weights())

    def test_a_network_compiled_by_the_caller_is_unwrapped(self) -> None:
        """A network already compiled by the caller trains compiled, but ``model.network``
        is the eager module inside it (weights without ``_orig_mod.``)."""
        network = _network()
        compiled = torch.compile(network)
        model = Model(compiled, "sgd", "cross_entropy")
        assert model.network is network
        assert model.forward_network is compiled

    def test_weights_with_compile_prefix_load_into_eager(self) -> None:
        """A state dict saved from a compiled network (``_orig_mod.`` keys) loads into the
        eager network of another Model."""
        source = _network(1)
        prefixed = torch.compile(source).state_dict()
        assert all(key.startswith("_orig_mod.") for key in prefixed)
        model = Model(_network(2), "sgd", "cross_entropy")
        buffer = io.BytesIO()
        torch.save(prefixed, buffer)
        buffer.seek(0)
        model.load_weights(buffer)
        for a, b in zip(model.network.parameters(), source.parameters()):
            assert torch.equal(a, b)


class TestScalerState:
    def _trained(self, epochs: int) -> Model:
        model = Model(_network(), "sgd", "cross_entropy", precision="16-mixed")
        model.mixed_precision = prepare_precision(
            "16-mixed", "cpu", init_scale=2.0**30, growth_interval=3
        )
        batches = _batches()
        model.fit_generator(batches, epochs=epochs, verbose=False)
        return model

    def test_two_call_training_through_the_optimizer_file_is_exact(self) -> None:
        """'16-mixed' trained 2 epochs, saved (weights + optimizer file) and resumed in a new
        Model for 2 more equals 4 uninterrupted epochs bit for bit, loss scale included; the
        scaler's state is what makes it exact."""
        full = self._trained(4)
        half = self._trained(2)
        assert half.mixed_precision is not None and half.mixed_precision.skipped_steps > 0
        weights, optimizer_file = io.BytesIO(), io.BytesIO()
        half.save_weights(weights)
        half.save_optimizer_state(optimizer_file)
        batches = _batches()

        def resume(with_scaler: bool) -> Model:
            model = Model(_network(5), "sgd", "cross_entropy", precision="16-mixed")
            model.mixed_precision = prepare_precision(
                "16-mixed", "cpu", init_scale=2.0**30, growth_interval=3
            )
            weights.seek(0)
            optimizer_file.seek(0)
            model.load_weights(weights)
            if with_scaler:
                model.load_optimizer_state(optimizer_file)
            model.fit_generator(batches, epochs=4, initial_epoch=3, verbose=False)
            return model

        resumed = resume(with_scaler=True)
        assert resumed.mixed_precision is not None and full.mixed_precision is not None
        assert resumed.mixed_precision.state_dict() == full.mixed_precision.state_dict()
        for a, b in zip(resumed.network.parameters(), full.network.parameters()):
            assert torch.equal(a, b)
        fresh = resume(with_scaler=False)  # the same without the scaler's state differs
        assert not all(
            torch.equal(a, b) for a, b in zip(fresh.network.parameters(), full.network.parameters())
        )

    def test_optimizer_file_without_scaler_is_plain(self) -> None:
        """At '32' and 'bf16-mixed' the optimizer file is exactly the optimizer's
        ``state_dict``; at '16-mixed' it adds the scaler under 'epochal_precision' and still
        loads into a plain torch optimizer."""
        for name, extra in (("32", False), ("bf16-mixed", False), ("16-mixed", True)):
            model = Model(_network(), "adam", "cross_entropy", precision=name)
            buffer = io.BytesIO()
            model.save_optimizer_state(buffer)
            buffer.seek(0)
            state = torch.load(buffer, weights_only=True)
            assert ("epochal_precision" in state) is extra
            assert set(state) - {"epochal_precision"} == {"state", "param_groups"}
            torch.optim.Adam(_network().parameters()).load_state_dict(state)

    def test_damaged_scaler_state_is_refused(self) -> None:
        """An optimizer file whose scaler entry lacks GradScaler's keys raises
        CheckpointError naming them."""
        model = Model(_network(), "sgd", "cross_entropy", precision="16-mixed")
        assert model.optimizer is not None
        state = {**model.optimizer.state_dict(),
                 "epochal_precision": {"precision": "16-mixed", "scaler": {"scale": 2.0}}}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        buffer.seek(0)
        with pytest.raises(CheckpointError, match="GradScaler's keys"):
            model.load_optimizer_state(buffer)


class _InfAt(Callback):
    """Makes the loss of the given batches infinite (a forced float16 overflow)."""

    def __init__(self, batches: set[int]) -> None:
        super().__init__()
        self.batches = batches
        self.current = 0

    def on_train_batch_begin(self, batch_number: int, logs: dict[str, Any]) -> None:
        self.current = batch_number


class TestScheduleAndSkippedSteps:
    def test_one_cycle_steps_once_per_epoch_whatever_the_scaler_skipped(self) -> None:
        """OneCycleLR under '16-mixed': with the loss of batches 2 and 4 made infinite, the
        scaler skips those steps; the schedule, stepped once per epoch as in Poutyne, steps
        once at the epoch's end all the same."""
        marker = _InfAt({2, 4})

        def loss(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
            value = nn.functional.cross_entropy(y_pred, y_true)
            return value * float("inf") if marker.current in marker.batches else value

        model = Model(_network(), "sgd", loss, precision="16-mixed")
        schedule = OneCycleLR(max_lr=0.5, total_steps=20)
        batches = _batches()
        with pytest.warns(RuntimeWarning, match="non-finite") as caught:
            model.fit_generator(batches, epochs=1, verbose=False, callbacks=[marker, schedule])
        message = str(caught[0].message)
        assert "first at batch 2" in message
        assert "the loss scaler skipped the optimizer step" in message
        assert "trained on non-finite gradients" not in message
        assert model.mixed_precision is not None
        assert model.mixed_precision.skipped_steps == 2
        assert schedule.scheduler is not None
        assert schedule.scheduler.last_epoch == 1  # one epoch, skipped steps or not
        reference = torch.optim.lr_scheduler.OneCycleLR(
            torch.optim.SGD(_network().parameters(), lr=0.1), max_lr=0.5, total_steps=20
        )
        reference.optimizer.step()
        reference.step()
        assert schedule.scheduler.get_last_lr() == reference.get_last_lr()


def test_optimizer_checkpoint_keeps_the_scaler_state(tmp_path: Any) -> None:
    """``OptimizerCheckpoint`` at '16-mixed' writes the scaler's state with the optimizer's
    and its ``restore`` puts both back."""
    from epochal.callbacks.checkpoint import OptimizerCheckpoint

    model = Model(_network(), "sgd", "cross_entropy", precision="16-mixed")
    model.mixed_precision = prepare_precision("16-mixed", "cpu", init_scale=512.0)
    path = tmp_path / "optimizer.ckpt"
    model.fit_generator(_batches(), epochs=1, verbose=False,
                        callbacks=[OptimizerCheckpoint(str(path))])
    state = torch.load(path, weights_only=True)
    assert state["epochal_precision"]["scaler"]["scale"] == 512.0
    other = Model(_network(), "sgd", "cross_entropy", precision="16-mixed")
    callback = OptimizerCheckpoint(str(path))
    callback.set_model(other)
    with open(path, "rb") as fd:
        callback.restore(fd)
    assert other.mixed_precision is not None and other.mixed_precision.loss_scale == 512.0


def test_optimizer_policy_does_not_advance_over_skipped_steps() -> None:
    """``OptimizerPolicy`` under '16-mixed': the values of a step the scaler skipped (forced
    inf loss at batches 2 and 4) are kept for the next step, so the 4 steps taken use the
    policy's first 4 learning rates, in order."""
    from epochal.policies import OptimizerPolicy, Phase, linspace

    marker = _InfAt({2, 4})

    def loss(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        value = nn.functional.cross_entropy(y_pred, y_true)
        return value * float("inf") if marker.current in marker.batches else value

    used: list[float] = []

    class Spy(Callback):
        def on_backward_end(self, batch_number: int) -> None:
            assert self.model.optimizer is not None
            used.append(self.model.optimizer.param_groups[0]["lr"])

    model = Model(_network(), "sgd", loss, precision="16-mixed")
    policy = OptimizerPolicy([Phase(lr=linspace(0.1, 0.6, 6))])
    with pytest.warns(RuntimeWarning, match="non-finite"):
        model.fit_generator(_batches(), epochs=1, verbose=False,
                            callbacks=[marker, policy, Spy()])
    # batches 2 and 4 (skipped) and 3 and 5 (taken) share their values
    assert used == pytest.approx([0.1, 0.2, 0.2, 0.3, 0.3, 0.4])
    assert policy.current_step == 4
