"""Learning-rate/momentum policies: spaces, phases, the classic policies, OptimizerPolicy."""

from __future__ import annotations

import csv
import math

import matplotlib
import pytest
import torch
from torch import nn

from epochal import CSVLogger, Model, ModelBundle
from epochal.callbacks.base import Callback
from epochal.exceptions import ConfigurationError
from epochal.policies import (
    OptimizerPolicy,
    Phase,
    cosinespace,
    linspace,
    one_cycle_phases,
    sgdr_phases,
)
from epochal.testing import MemoryCheckpointStore

matplotlib.use("Agg")

try:
    import poutyne
except ImportError:  # the comparisons with Poutyne's own outputs are skipped
    poutyne = None

needs_poutyne = pytest.mark.skipif(poutyne is None, reason="poutyne is not installed")


def _batches(n_batches: int, size: int = 4):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_batches * size, 3, generator=g)
    y = torch.randn(n_batches * size, 1, generator=g)
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def _model(optimizer: str = "sgd") -> Model:
    torch.manual_seed(0)
    network = nn.Linear(3, 1)
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(network.parameters(), lr=0.5, momentum=0.5)
    elif optimizer == "adam":
        opt = torch.optim.Adam(network.parameters(), lr=0.5)
    else:
        opt = torch.optim.Adagrad(network.parameters(), lr=0.5)
    return Model(network, opt, "mse")


class _RecordLR(Callback):
    """Records the optimizer's hyperparameters each optimizer step actually used."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, float]] = []

    def on_train_batch_end(self, batch_number, logs):
        group = self.model.optimizer.param_groups[0]
        momentum = group["momentum"] if "momentum" in group else group["betas"][0]
        self.seen.append({"lr": group["lr"], "momentum": momentum})


class TestSpaces:
    def test_linspace_hand_values(self):
        """linspace gives start + i/(steps-1)*(end-start), ends included."""
        assert list(linspace(0, 1, 3)) == [0.0, 0.5, 1.0]
        assert list(linspace(1.0, 0.0, 5)) == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])

    def test_cosinespace_hand_values(self):
        """cosinespace follows end + (start-end)(1+cos(pi i/(steps-1)))/2."""
        values = list(cosinespace(1.0, 0.0, 5))
        expected = [(1 + math.cos(math.pi * i / 4)) / 2 for i in range(5)]
        assert values == pytest.approx(expected)
        assert values[0] == 1.0 and values[-1] == pytest.approx(0.0)
        assert list(cosinespace(0, 1, 3)) == pytest.approx([0.0, 0.5, 1.0])

    def test_spaces_are_reiterable_and_sized(self):
        """A space can be iterated twice and has a length."""
        space = cosinespace(0.1, 0.01, 7)
        assert list(space) == list(space)
        assert len(space) == 7 and len(linspace(0, 1, 4)) == 4

    def test_one_and_zero_steps(self):
        """One step gives [start] (like numpy.linspace); zero steps gives nothing."""
        assert list(linspace(0.3, 0.9, 1)) == [0.3]
        assert list(cosinespace(0.3, 0.9, 1)) == pytest.approx([0.3])
        assert list(linspace(0, 1, 0)) == []

    def test_negative_steps_is_an_error(self):
        """A negative step count fails at construction, naming the space."""
        with pytest.raises(ConfigurationError, match="linspace"):
            linspace(0, 1, -1)
        with pytest.raises(TypeError, match="int"):
            cosinespace(0, 1, 2.5)  # type: ignore[arg-type]

    @needs_poutyne
    def test_spaces_equal_poutynes(self):
        """Both spaces give Poutyne's values exactly."""
        for steps in (2, 3, 10, 33):
            assert list(linspace(0.01, 0.3, steps)) == list(poutyne.linspace(0.01, 0.3, steps))
            assert list(cosinespace(0.3, 0.01, steps)) == list(poutyne.cosinespace(0.3, 0.01, steps))


class TestPhase:
    def test_iterates_one_dict_per_step(self):
        """A phase yields {'lr': ..., 'momentum': ...} per step."""
        phase = Phase(lr=linspace(0, 1, 3), momentum=[0.9, 0.8, 0.7])
        assert list(phase) == [
            {"lr": 0.0, "momentum": 0.9},
            {"lr": 0.5, "momentum": 0.8},
            {"lr": 1.0, "momentum": 0.7},
        ]

    def test_needs_lr_or_momentum(self):
        """A phase with neither lr nor momentum is an error."""
        with pytest.raises(ConfigurationError, match="lr="):
            Phase()

    def test_constant_value_with_steps(self):
        """A single float with steps= is held for that many steps."""
        assert list(Phase(lr=0.1, steps=2)) == [{"lr": 0.1}, {"lr": 0.1}]
        with pytest.raises(ConfigurationError, match="steps="):
            Phase(lr=0.1)

    def test_mismatched_lengths_are_an_error(self):
        """Spaces of different lengths fail instead of being silently truncated."""
        with pytest.raises(ConfigurationError, match="lengths"):
            Phase(lr=linspace(0, 1, 3), momentum=linspace(0.9, 0.8, 4))
        with pytest.raises(ConfigurationError, match="lengths"):
            Phase(lr=linspace(0, 1, 3), steps=4)

    def test_plot_draws_the_space(self):
        """Phase.plot draws the values against the step with labelled axes."""
        ax = Phase(lr=linspace(0.0, 1.0, 5)).plot()
        line = ax.get_lines()[0]
        assert list(line.get_ydata()) == [0.0, 0.25, 0.5, 0.75, 1.0]
        assert ax.get_xlabel() == "steps" and ax.get_ylabel() == "lr"
        with pytest.raises(KeyError, match="momentum"):
            Phase(lr=[0.1]).plot("momentum")


class TestClassicPolicies:
    def test_one_cycle_hand_values(self):
        """one_cycle_phases(20): 18 steps split 9 up / 9 down, 2 fine-tuning steps."""
        phases = one_cycle_phases(20, lr=(0.1, 1.0), momentum=(0.95, 0.85), finetune_lr=0.01)
        up, down, tune = (list(p) for p in phases)
        assert len(up) == 9 and len(down) == 9 and len(tune) == 2
        assert up[0] == {"lr": 0.1, "momentum": 0.95}
        assert up[-1]["lr"] == pytest.approx(1.0) and up[-1]["momentum"] == pytest.approx(0.85)
        assert up[4]["lr"] == pytest.approx(0.1 + 0.5 * 0.9)
        assert down[0]["lr"] == pytest.approx(1.0) and down[-1]["lr"] == pytest.approx(0.1)
        assert tune == [{"lr": 0.1, "momentum": 0.95}, {"lr": pytest.approx(0.01), "momentum": 0.95}]

    def test_sgdr_hand_values(self):
        """sgdr_phases(2, 3) has cycles of 2, 4 and 8 steps, each a cosine from lr[0] to lr[1]."""
        phases = [list(p) for p in sgdr_phases(2, 3, lr=(1.0, 0.1))]
        assert [len(p) for p in phases] == [2, 4, 8]
        assert phases[1][0]["lr"] == 1.0 and phases[1][-1]["lr"] == pytest.approx(0.1)
        assert phases[1][1]["lr"] == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 3)) / 2)

    def test_one_cycle_bad_fraction(self):
        """A fine-tuning fraction outside [0, 1] is an error."""
        with pytest.raises(ConfigurationError, match="finetune_fraction"):
            one_cycle_phases(10, finetune_fraction=1.5)

    @needs_poutyne
    def test_equal_poutynes(self):
        """The classic policies give Poutyne's values step for step."""
        for steps in (20, 40, 101):
            ours = [list(p) for p in one_cycle_phases(steps, lr=(0.01, 0.2))]
            theirs = [list(p) for p in poutyne.one_cycle_phases(steps, lr=(0.01, 0.2))]
            assert ours == theirs
        ours = [list(p) for p in sgdr_phases(3, 4, lr=(0.5, 0.01), cycle_mult=3)]
        theirs = [list(p) for p in poutyne.sgdr_phases(3, 4, lr=(0.5, 0.01), cycle_mult=3)]
        assert ours == theirs


class TestOptimizerPolicy:
    def test_sets_each_step_in_fit_generator(self):
        """Each training step uses the policy's next values; after the last phase the
        optimizer keeps the last ones."""
        model = _model()
        recorder = _RecordLR()
        phases = [Phase(lr=linspace(0.1, 0.4, 4), momentum=linspace(0.9, 0.6, 4)),
                  Phase(lr=[0.05, 0.02])]
        model.fit_generator(_batches(4), epochs=2, callbacks=[OptimizerPolicy(phases), recorder],
                            verbose=False)
        lrs = [s["lr"] for s in recorder.seen]
        assert lrs == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.05, 0.02, 0.02, 0.02])
        assert [s["momentum"] for s in recorder.seen[:4]] == pytest.approx([0.9, 0.8, 0.7, 0.6])

    def test_the_lr_in_the_csv_log_follows_the_policy(self, tmp_path):
        """CSVLogger's lr column is the rate the epoch's last step used (the epoch logs
        themselves hold no lr, as in Poutyne)."""
        model = _model()
        path = tmp_path / "log.csv"
        history = model.fit_generator(
            _batches(3), epochs=2, verbose=False,
            callbacks=[OptimizerPolicy([Phase(lr=linspace(0.6, 0.1, 6))]), CSVLogger(str(path))],
        )
        assert all("lr" not in row for row in history)
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert [float(row["lr"]) for row in rows] == pytest.approx([0.4, 0.1])

    def test_training_follows_the_policy(self):
        """The weights equal a hand-written loop that sets the same learning rates."""
        batches = _batches(3)
        model = _model()
        model.fit_generator(batches, epochs=1, verbose=False,
                            callbacks=[OptimizerPolicy([Phase(lr=[0.3, 0.2, 0.1])])])
        torch.manual_seed(0)
        net = nn.Linear(3, 1)
        opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.5)
        for lr, (x, y) in zip([0.3, 0.2, 0.1], batches):
            opt.param_groups[0]["lr"] = lr
            opt.zero_grad()
            nn.functional.mse_loss(net(x), y).backward()
            opt.step()
        assert torch.equal(net.weight, model.network.weight)

    def test_momentum_on_adam_sets_beta1(self):
        """On Adam, momentum is written to the first coefficient of betas."""
        model = _model("adam")
        recorder = _RecordLR()
        model.fit_generator(_batches(2), epochs=1, verbose=False, callbacks=[
            OptimizerPolicy([Phase(lr=[0.1, 0.2], momentum=[0.8, 0.7])]), recorder])
        assert [s["momentum"] for s in recorder.seen] == pytest.approx([0.8, 0.7])
        assert model.optimizer.param_groups[0]["betas"][1] == 0.999

    def test_unknown_hyperparameter_fails_at_train_begin(self):
        """Momentum on an optimizer without momentum or betas fails before any step."""
        model = _model("adagrad")
        before = model.network.weight.detach().clone()
        with pytest.raises(ConfigurationError, match="momentum"):
            model.fit_generator(_batches(2), epochs=1, verbose=False,
                                callbacks=[OptimizerPolicy([Phase(lr=[0.1, 0.1], momentum=[0.9, 0.9])])])
        assert torch.equal(before, model.network.weight)

    def test_batches_per_step_advances_per_optimizer_step(self):
        """With gradient accumulation the policy advances once per optimizer step."""
        model = _model()
        policy = OptimizerPolicy([Phase(lr=[0.3, 0.2, 0.1])])
        model.fit_generator(_batches(4), epochs=1, verbose=False, batches_per_step=2,
                            callbacks=[policy])
        assert policy.current_step == 2
        assert model.optimizer.param_groups[0]["lr"] == 0.2

    def test_state_dict_round_trip(self):
        """A fresh policy loaded with a state continues where the first one was."""
        phases = [Phase(lr=linspace(0.0, 1.0, 5))]
        first = OptimizerPolicy(phases)
        for _ in range(3):
            next(first.phases_iter)
        second = OptimizerPolicy(phases)
        second.load_state_dict(first.state_dict())
        assert second.state_dict() == {"current_step": 3}
        assert list(second) == [{"lr": 0.75}, {"lr": 1.0}]

    def test_initial_step_and_all_steps(self):
        """initial_step skips steps; all_steps always starts from the first one."""
        policy = OptimizerPolicy([Phase(lr=[1.0, 2.0, 3.0])], initial_step=1)
        assert [s["lr"] for s in policy.all_steps()] == [1.0, 2.0, 3.0]
        assert list(policy) == [{"lr": 2.0}, {"lr": 3.0}]
        assert policy.current_step == 3

    def test_plot_draws_every_step(self):
        """OptimizerPolicy.plot draws all phases end to end."""
        policy = OptimizerPolicy(sgdr_phases(2, 2, lr=(1.0, 0.0)))
        ax = policy.plot()
        assert list(ax.get_lines()[0].get_ydata()) == pytest.approx([1.0, 0.0, 1.0, 0.75, 0.25, 0.0])
        assert ax.get_ylabel() == "lr"

    def test_bundle_resume_continues_the_policy(self):
        """A bundle saves the policy's position; a resumed training sets the same learning
        rates as an uninterrupted one."""

        def run(store, epochs, recorder):
            torch.manual_seed(0)
            net = nn.Linear(3, 1)
            bundle = ModelBundle.from_network(store, net, optimizer={"optim": "sgd", "lr": 0.5},
                                              loss_function="mse", monitoring=False)
            policy = OptimizerPolicy([Phase(lr=linspace(0.5, 0.05, 10))])
            bundle.train(_batches(3), epochs=epochs, verbose=False, callbacks=[policy, recorder])
            return policy

        straight = _RecordLR()
        run(MemoryCheckpointStore(), 4, straight)
        store = MemoryCheckpointStore()
        first, second = _RecordLR(), _RecordLR()
        run(store, 2, first)
        resumed = run(store, 4, second)
        assert resumed.current_step == 10
        assert [s["lr"] for s in first.seen + second.seen] == [s["lr"] for s in straight.seen]

    @needs_poutyne
    def test_values_equal_poutynes_policy(self):
        """The values set per step equal what Poutyne's policy iterates."""
        ours = OptimizerPolicy(one_cycle_phases(40, lr=(0.01, 0.1)))
        theirs = poutyne.OptimizerPolicy(poutyne.one_cycle_phases(40, lr=(0.01, 0.1)))
        assert list(ours) == list(theirs)
