"""The mixed-precision steps of a pass (:mod:`epochal.core.mixed_step`) through ``run_epoch``
on the CPU, with real autocast and a real ``torch.amp.GradScaler``."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from epochal.core.loop import EpochSetup, run_epoch
from epochal.core.metrics import resolve_metrics
from epochal.core.precision import MixedPrecision
from epochal.core.records import EpochRecord, PassPhase, StepRecord
from epochal.metrics import metric_registry
from epochal.precision import prepare_precision
from epochal.testing import FakeClock


def _data(n: int = 64, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 12, generator=generator)
    y = torch.randint(0, 4, (n,), generator=generator)
    return [(x[i:i + 16], y[i:i + 16]) for i in range(0, n, 16)]


def _network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 4))


def _setup(network: nn.Module, precision: MixedPrecision | None, *,
           loss: Any = None, batches_per_step: int = 1) -> EpochSetup:
    metrics = resolve_metrics(["accuracy"], ["f1"], registry=metric_registry())
    return EpochSetup(
        network=network,
        loss_function=loss or nn.CrossEntropyLoss(),
        batch_metrics=tuple(metrics.batch),
        epoch_metrics=tuple(metrics.epoch),
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
        batches_per_step=batches_per_step,
        precision=precision,
    )


class _Hooks:
    """Records the gradient norm each time the optimizer is about to step."""

    announces_steps = False
    announces_backward = True

    def __init__(self, network: nn.Module) -> None:
        self.network = network
        self.norms: list[float] = []

    def step_begins(self, step: int) -> None:
        raise AssertionError("not announced")

    def gradients_ready(self, step: int) -> None:
        grads = [p.grad for p in self.network.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g) for g in grads]))))

    def stop_requested(self) -> bool:
        return False


def _run(setup: EpochSetup, phase: PassPhase = PassPhase.TRAIN, **kwargs: Any) -> list[Any]:
    return list(run_epoch(setup, _data(), phase=phase, epoch=1, clock=FakeClock(), **kwargs))


class TestMixedSteps:
    @pytest.mark.parametrize("name", ["bf16-mixed", "16-mixed"])
    def test_metrics_and_losses_are_float32(self, name: str) -> None:
        """Under autocast the step losses, batch metrics and collected outputs are float32
        and the epoch metrics are plain floats."""
        network = _network()
        outputs: list[Any] = []
        records = _run(_setup(network, prepare_precision(name, "cpu")), outputs=outputs)
        steps = [r for r in records if isinstance(r, StepRecord)]
        assert len(steps) == 4
        for record in steps:
            assert record.loss.dtype is torch.float32
            assert record.metrics["acc"].dtype is torch.float32
        assert all(pred.dtype is torch.float32 for pred, _ in outputs)
        epoch = records[-1]
        assert isinstance(epoch, EpochRecord)
        assert isinstance(epoch.metrics["fscore_macro"], float)

    def test_bf16_forward_runs_in_bfloat16(self) -> None:
        """The network's linear layers see bfloat16 inputs under 'bf16-mixed' and float32
        under the plain steps."""
        seen: list[torch.dtype] = []
        network = _network()
        network[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        _run(_setup(network, prepare_precision("bf16-mixed", "cpu")))
        _run(_setup(network, None))
        assert seen == [torch.bfloat16] * 4 + [torch.float32] * 4

    def test_eval_pass_under_autocast_returns_float32_predictions(self) -> None:
        """A prediction pass in 'bf16-mixed' runs the forward under autocast and hands back
        float32 outputs (NumPy cannot hold bfloat16)."""
        network = _network()
        outputs: list[Any] = []
        setup = _setup(network, prepare_precision("bf16-mixed", "cpu"))
        list(run_epoch(setup, [x for x, _ in _data()], phase=PassPhase.PREDICT, epoch=0,
                       clock=FakeClock(), has_ground_truth=False, outputs=outputs))
        assert [pred.dtype for pred, _ in outputs] == [torch.float32] * 4
        assert [tuple(pred.shape) for pred, _ in outputs] == [(16, 4)] * 4

    def test_clipping_hook_sees_unscaled_gradients(self) -> None:
        """With '16-mixed' (scale 2**16) the gradients the BackwardEnd hook reads are the
        true ones: the same norms as float32 training within float16 tolerance."""
        norms = {}
        for name in ("32", "16-mixed"):
            network = _network()
            hooks = _Hooks(network)
            precision = None if name == "32" else prepare_precision(name, "cpu")
            _run(_setup(network, precision), hooks=hooks)
            norms[name] = hooks.norms
        assert len(norms["16-mixed"]) == 4
        assert norms["16-mixed"] == pytest.approx(norms["32"], rel=2e-2)

    def test_accumulation_normalises_after_unscaling(self) -> None:
        """Two batches per step under '16-mixed' give the parameters of float32 training with
        the same accumulation, within float16 tolerance."""
        results = []
        scaled = prepare_precision("16-mixed", "cpu", init_scale=2.0**10)
        for precision in (None, scaled):
            network = _network()
            _run(_setup(network, precision, batches_per_step=2))
            results.append([p.detach().clone() for p in network.parameters()])
        assert scaled.skipped_steps == 0
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-3)

    def test_scaler_skips_a_step_with_inf_gradients(self) -> None:
        """A batch whose loss is infinite under '16-mixed': the scaler skips that optimizer
        step (parameters unchanged by it), counts it, and halves its scale."""
        calls = {"n": 0}

        def loss(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
            calls["n"] += 1
            value = nn.functional.cross_entropy(y_pred, y_true)
            return value * float("inf") if calls["n"] == 2 else value

        network = _network()
        precision = prepare_precision("16-mixed", "cpu")
        snapshots: list[list[torch.Tensor]] = []

        class Hooks(_Hooks):
            def gradients_ready(self, step: int) -> None:
                snapshots.append([p.detach().clone() for p in network.parameters()])

        setup = _setup(network, precision, loss=loss)
        _run(setup, hooks=Hooks(network))
        assert precision.skipped_steps == 1
        assert precision.loss_scale == 2.0**15
        # the parameters before step 3 equal those before step 2: step 2 was skipped
        assert all(torch.equal(a, b) for a, b in zip(snapshots[1], snapshots[2]))
        assert not all(torch.equal(a, b) for a, b in zip(snapshots[0], snapshots[1]))

    def test_last_step_skipped_follows_each_step(self) -> None:
        """``last_step_skipped`` is True right after a skipped step and False after a good
        one; without a scaler it stays False."""
        network = _network()
        precision = prepare_precision("16-mixed", "cpu")
        optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
        x, y = _data()[0]
        for factor, skipped in ((float("inf"), True), (1.0, False)):
            optimizer.zero_grad()
            with precision.autocast():
                value = nn.functional.cross_entropy(network(x), y) * factor
            precision.backward(value)
            assert precision.step(optimizer) is (not skipped)
            precision.update()
            assert precision.last_step_skipped is skipped
        plain = prepare_precision("bf16-mixed", "cpu")
        assert plain.step(optimizer) is True and plain.last_step_skipped is False
