"""core.steps: the parts every step function shares (network call, loss, metrics, detach,
gradient scaling) and EpochSetup."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from epochal.core.metrics import resolve_batch_metrics
from epochal.core.records import PassPhase
from epochal.core.steps import (
    EpochSetup,
    _batch_metric_values,
    _call_network,
    _detach,
    _in_batch,
    _NetworkRejected,
    _scale_gradients,
    compute_loss,
    expected_input,
)
from epochal.exceptions import NetworkInputError, ShapeMismatchError


class TestExpectedInput:
    def test_first_linear_layer(self):
        network = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
        assert expected_input(network) == (
            "first layer (Linear) expects inputs whose last dimension is 12, of dtype float32"
        )

    def test_first_convolution(self):
        network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        assert expected_input(network) == (
            "first layer (Conv2d) expects 3 input channels (dimension 1), of dtype float32"
        )

    def test_none_when_unreadable(self):
        assert expected_input(nn.ReLU()) is None


class TestCallNetwork:
    def test_spreads_a_tuple_as_positional_arguments(self):
        class Two(nn.Module):
            def forward(self, a, b):
                return a + b

        out = _call_network(Two(), (torch.ones(2), torch.full((2,), 2.0)))
        assert torch.equal(out, torch.full((2,), 3.0))

    def test_rejected_input_names_shape_dtype_and_first_layer(self):
        network = nn.Sequential(nn.Linear(4, 2))
        with pytest.raises(_NetworkRejected) as info:
            _call_network(network, torch.zeros(8, 5))
        message = str(info.value)
        assert "rejected the input of shape and dtype (8, 5) float32" in message
        assert "last dimension is 4" in message
        assert isinstance(info.value.__cause__, RuntimeError)

    def test_in_batch_names_phase_epoch_and_batch(self):
        error = _in_batch(_NetworkRejected("the network X rejected it"), PassPhase.TRAIN, 3, 7)
        assert isinstance(error, NetworkInputError)
        assert str(error) == "In the train pass (epoch 3, batch 7), the network X rejected it"


class TestComputeLoss:
    def test_returns_the_loss(self):
        y_pred, y = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
        expected = nn.functional.cross_entropy(y_pred, y)
        assert torch.equal(compute_loss(nn.CrossEntropyLoss(), y_pred, y), expected)

    def test_shape_error_gives_both_shapes(self):
        with pytest.raises(ShapeMismatchError, match=r"output of shape \(4, 3\) against the "
                           r"target of shape \(5,\)"):
            compute_loss(nn.CrossEntropyLoss(), torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))

    def test_non_scalar_loss_is_refused(self):
        with pytest.raises(ShapeMismatchError, match=r"0-dim tensor .*returned \(4,\)"):
            compute_loss(nn.MSELoss(reduction="none"), torch.zeros(4), torch.zeros(4))


class TestErrorsAreAlsoTheOriginalBuiltin:
    """An ``except`` written for the PyTorch error that Poutyne lets through still catches
    epochal's error, which keeps its own name, message and ``from`` chaining."""

    def test_network_given_a_tuple_is_a_type_error(self):
        from epochal import Model

        model = Model(nn.Linear(3, 4), "sgd", "cross_entropy")
        x, y = torch.randn(8, 3), torch.randint(0, 4, (8,))
        with pytest.raises(TypeError) as info:
            model.predict_generator([(x, y)])
        assert isinstance(info.value, NetworkInputError)
        assert type(info.value).__name__ == "NetworkInputError"
        assert "predict pass (batch 1)" in str(info.value)
        assert isinstance(info.value.__cause__, TypeError)

    def test_network_shape_error_is_a_runtime_error(self):
        with pytest.raises(RuntimeError) as info:
            _call_network(nn.Linear(4, 2), torch.zeros(8, 5))
        assert isinstance(info.value, _NetworkRejected)
        assert not isinstance(info.value, TypeError)
        error = _in_batch(info.value, PassPhase.TEST, 0, 1)
        assert isinstance(error, NetworkInputError) and isinstance(error, RuntimeError)

    def test_int32_targets_are_a_runtime_error(self):
        with pytest.raises(RuntimeError) as info:
            compute_loss(nn.functional.cross_entropy, torch.zeros(4, 3),
                         torch.zeros(4, dtype=torch.int32))
        assert isinstance(info.value, ShapeMismatchError)
        assert isinstance(info.value.__cause__, RuntimeError)
        assert "cross_entropy rejected" in str(info.value)

    def test_target_out_of_range_is_an_index_error(self):
        with pytest.raises(IndexError) as info:
            compute_loss(nn.functional.cross_entropy, torch.zeros(4, 3), torch.full((4,), 7))
        assert isinstance(info.value, ShapeMismatchError)
        assert isinstance(info.value, ValueError) and isinstance(info.value, RuntimeError)
        assert isinstance(info.value.__cause__, IndexError)

    def test_top5_on_four_classes_is_a_runtime_error(self):
        from epochal import Model

        model = Model(nn.Linear(3, 4), "sgd", "cross_entropy", batch_metrics=["top5"])
        with pytest.raises(RuntimeError, match="top5 needs at least 5 classes"):
            model.evaluate(torch.randn(8, 3), torch.randint(0, 4, (8,)), verbose=False)

    def test_combined_error_pickles_as_itself(self):
        import pickle

        with pytest.raises(IndexError) as info:
            compute_loss(nn.functional.cross_entropy, torch.zeros(4, 3), torch.full((4,), 7))
        copy = pickle.loads(pickle.dumps(info.value))
        assert type(copy) is type(info.value)
        assert str(copy) == str(info.value)


class TestEpochSetup:
    def test_metric_names_in_order(self):
        metrics = resolve_batch_metrics(["accuracy", ("mse", nn.functional.mse_loss)])
        setup = EpochSetup(network=nn.Linear(1, 1), loss_function=None, batch_metrics=metrics)
        assert setup.metric_names == ("acc", "mse")

    def test_batch_metric_values_follow_the_names(self):
        metrics = resolve_batch_metrics(["accuracy"])
        setup = EpochSetup(network=nn.Linear(1, 1), loss_function=None, batch_metrics=metrics)
        values = _batch_metric_values(setup, torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
                                      torch.tensor([0, 0]))
        assert len(values) == 1 and float(values[0]) == 50.0


def test_detach_keeps_the_structure():
    a = torch.ones(2, requires_grad=True) * 2
    out = _detach({"x": (a, [a]), "n": 3})
    assert not out["x"][0].requires_grad and not out["x"][1][0].requires_grad
    assert isinstance(out["x"], tuple) and isinstance(out["x"][1], list) and out["n"] == 3


def test_scale_gradients_skips_parameters_without_gradient():
    p, q = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 4.0)
    _scale_gradients([p, q], 0.25)
    assert torch.equal(p.grad, torch.ones(2)) and q.grad is None
