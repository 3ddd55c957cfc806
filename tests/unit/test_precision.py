"""Tests of epochal.core.precision: plans, the autocast/scaler step, float32 metric inputs."""

from __future__ import annotations

import collections
import io
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from epochal.core.precision import (
    PRECISIONS,
    MixedPrecision,
    PrecisionPlan,
    float32_outputs,
    resolve_precision,
)
from epochal.exceptions import CheckpointError, ConfigurationError


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)


class TestResolvePrecision:
    def test_names_map_to_plans(self) -> None:
        """Each documented name resolves to its autocast dtype and scaling."""
        assert PRECISIONS == ("32", "bf16-mixed", "16-mixed")
        assert resolve_precision("32") == PrecisionPlan(name="32", autocast_dtype=None, scaled=False)
        assert resolve_precision("bf16-mixed").autocast_dtype is torch.bfloat16
        assert not resolve_precision("bf16-mixed").scaled
        plan = resolve_precision("16-mixed")
        assert plan.autocast_dtype is torch.float16 and plan.scaled and plan.mixed

    def test_plan_passes_through(self) -> None:
        """A plan given in place of a name is returned unchanged."""
        plan = resolve_precision("16-mixed")
        assert resolve_precision(plan) is plan

    def test_unknown_name_lists_valid_ones(self) -> None:
        """An unknown name raises ConfigurationError listing every valid name."""
        with pytest.raises(ConfigurationError) as info:
            resolve_precision("64-true")
        for name in PRECISIONS:
            assert repr(name) in str(info.value)

    @pytest.mark.parametrize(
        ("given", "hint"), [("bf16", "bf16-mixed"), (16, "16-mixed"), ("FP32", "32"), (32, "32")]
    )
    def test_near_misses_get_a_suggestion(self, given: object, hint: str) -> None:
        """Common other spellings (Lightning's ints, 'bf16', 'fp32') are refused with the name to use."""
        with pytest.raises(ConfigurationError, match=f"Did you mean '{hint}'"):
            resolve_precision(given)  # type: ignore[arg-type]


class TestMixedPrecisionConstruction:
    def test_device_type_must_be_a_type(self) -> None:
        """A device with an index ('cuda:0') is refused: autocast takes a device type."""
        with pytest.raises(ConfigurationError, match="device type"):
            MixedPrecision(resolve_precision("32"), "cuda:0")

    def test_bad_scaler_settings(self) -> None:
        """A non-positive initial scale or growth interval is refused before any step."""
        with pytest.raises(ConfigurationError, match="init_scale"):
            MixedPrecision(resolve_precision("16-mixed"), "cpu", init_scale=0.0)
        with pytest.raises(ConfigurationError, match="growth_interval"):
            MixedPrecision(resolve_precision("16-mixed"), "cpu", growth_interval=0)

    def test_only_the_scaled_plan_has_a_scaler(self) -> None:
        """'16-mixed' holds a GradScaler; '32' and 'bf16-mixed' do not."""
        assert MixedPrecision(resolve_precision("16-mixed"), "cpu").scaler is not None
        assert MixedPrecision(resolve_precision("bf16-mixed"), "cpu").scaler is None
        assert MixedPrecision(resolve_precision("32"), "cpu").scaler is None


class TestPlainPrecision:
    def test_equals_the_plain_pytorch_step(self) -> None:
        """With '32' the helper's step is bit-identical to loss.backward(); optimizer.step()."""
        x, y = _batch()
        ref, ours = _net(), _net()
        ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
        opt = torch.optim.SGD(ours.parameters(), lr=0.1)
        nn.functional.cross_entropy(ref(x), y).backward()
        ref_opt.step()
        mp = MixedPrecision(resolve_precision("32"), "cpu")
        with mp.autocast():
            loss = nn.functional.cross_entropy(ours(x), y)
        mp.backward(loss)
        mp.unscale_(opt)
        assert mp.step(opt) is True
        mp.update()
        for a, b in zip(ref.parameters(), ours.parameters()):
            assert torch.equal(a, b)
        assert mp.state_dict() == {"precision": "32", "scaler": {}}
        assert mp.loss_scale == 1.0

    def test_backward_scale_weights_the_batch(self) -> None:
        """backward(loss, scale) gives scale times the gradient of backward(loss)."""
        x, y = _batch()
        a, b = _net(), _net()
        mp = MixedPrecision(resolve_precision("32"), "cpu")
        mp.backward(nn.functional.cross_entropy(a(x), y))
        mp.backward(nn.functional.cross_entropy(b(x), y), 16.0)
        for pa, pb in zip(a.parameters(), b.parameters()):
            assert pa.grad is not None and pb.grad is not None
            torch.testing.assert_close(pa.grad * 16.0, pb.grad)


class TestBf16:
    def test_forward_runs_in_bfloat16_and_gradients_stay_float32(self) -> None:
        """Under 'bf16-mixed' on the CPU, linear layers output bfloat16; parameter gradients are float32."""
        x, y = _batch()
        net = _net()
        mp = MixedPrecision(resolve_precision("bf16-mixed"), "cpu")
        with mp.autocast():
            out = net(x)
            loss = nn.functional.cross_entropy(out, y)
        assert out.dtype is torch.bfloat16
        mp.backward(loss)
        assert all(p.grad is not None and p.grad.dtype is torch.float32 for p in net.parameters())
        assert float32_outputs(out.detach()).dtype is torch.float32

    def test_outside_the_context_nothing_is_cast(self) -> None:
        """Autocast applies only inside the context the helper returns."""
        mp = MixedPrecision(resolve_precision("bf16-mixed"), "cpu")
        with mp.autocast():
            pass
        assert _net()(_batch()[0]).dtype is torch.float32


def _scaled(init_scale: float = 2.0**16, growth_interval: int = 2000) -> MixedPrecision:
    return MixedPrecision(
        resolve_precision("16-mixed"), "cpu", init_scale=init_scale,
        growth_interval=growth_interval,
    )


class TestScaledStep:
    def test_backward_scales_and_unscale_restores(self) -> None:
        """The gradient after backward is scale times the true one; after unscale_ it is the true one."""
        x, y = _batch()
        ref, net = _net(), _net()
        nn.functional.cross_entropy(ref(x), y).backward()
        mp = _scaled(init_scale=1024.0)
        mp.backward(nn.functional.cross_entropy(net(x), y))  # float32 forward: exact comparison
        first = next(net.parameters())
        assert first.grad is not None
        torch.testing.assert_close(first.grad, next(ref.parameters()).grad * 1024.0)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        mp.unscale_(opt)
        mp.unscale_(opt)  # a second call in the same step is a no-op, not GradScaler's error
        for a, b in zip(ref.parameters(), net.parameters()):
            torch.testing.assert_close(a.grad, b.grad)

    def test_finite_step_is_applied(self) -> None:
        """A step with finite gradients changes the parameters and reports True."""
        x, y = _batch()
        net = _net()
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        before = [p.detach().clone() for p in net.parameters()]
        mp = _scaled()
        with mp.autocast():
            loss = nn.functional.cross_entropy(net(x), y)
        mp.backward(loss)
        assert mp.step(opt) is True
        mp.update()
        assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))

    def test_inf_gradient_skips_the_step_and_backs_off(self) -> None:
        """Inf gradients: step reports False, parameters and optimizer state are unchanged, the scale halves."""
        x, y = _batch()
        net = _net()
        opt = torch.optim.Adam(net.parameters(), lr=0.1)
        before = [p.detach().clone() for p in net.parameters()]
        mp = _scaled(init_scale=256.0)
        loss = nn.functional.cross_entropy(net(x), y) * math.inf
        mp.backward(loss)
        assert mp.step(opt) is False
        mp.update()
        assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
        assert opt.state_dict()["state"] == {}
        assert mp.loss_scale == 128.0
        # The next, finite step runs normally.
        opt.zero_grad()
        mp.backward(nn.functional.cross_entropy(net(x), y))
        assert mp.step(opt) is True
        mp.update()

    @pytest.mark.parametrize("bad", [False, True])
    def test_fused_optimizer_reports_the_same(self, bad: bool) -> None:
        """With a fused Adam (GradScaler hands it the inf flag instead of skipping the call) step still reports whether the weights moved."""
        x, y = _batch()
        net = _net()
        opt = torch.optim.Adam(net.parameters(), lr=0.1, fused=True)
        before = [p.detach().clone() for p in net.parameters()]
        mp = _scaled(init_scale=256.0)
        loss = nn.functional.cross_entropy(net(x), y)
        mp.backward(loss * math.inf if bad else loss)
        stepped = mp.step(opt)
        mp.update()
        unchanged = all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
        assert stepped is (not bad) and unchanged is bad

    def test_scale_grows_after_growth_interval(self) -> None:
        """After growth_interval good steps the scale doubles, and the state dict says so."""
        x, y = _batch()
        net = _net()
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        mp = _scaled(init_scale=8.0, growth_interval=2)
        for _ in range(2):
            opt.zero_grad()
            mp.backward(nn.functional.cross_entropy(net(x), y))
            mp.step(opt)
            mp.update()
        state = mp.state_dict()
        assert state["precision"] == "16-mixed"
        assert state["scaler"]["scale"] == 16.0
        assert state["scaler"]["_growth_tracker"] == 0


def _train(
    mp: MixedPrecision, net: nn.Module, opt: torch.optim.Optimizer, plan: list[bool], start: int
) -> list[bool]:
    """Steps ``start..len(plan)-1``; plan[i] True injects an inf loss at step i."""
    stepped = []
    for i in range(start, len(plan)):
        x, y = _batch(i)
        opt.zero_grad()
        with mp.autocast():
            loss = nn.functional.cross_entropy(net(x), y)
        if plan[i]:
            loss = loss * math.inf
        mp.backward(loss)
        mp.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        stepped.append(mp.step(opt))
        mp.update()
    return stepped


def _roundtrip(obj: object) -> object:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


class TestScalerResume:
    @given(
        plan=st.lists(st.booleans(), min_size=2, max_size=8),
        data=st.data(),
    )
    def test_law_resume_equals_uninterrupted(self, plan: list[bool], data: st.DataObject) -> None:
        """Law: saving network, optimizer and precision state at any step and resuming gives bit-identical parameters, scale and skipped steps."""
        cut = data.draw(st.integers(1, len(plan) - 1))
        net = _net()
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        mp = _scaled(init_scale=64.0, growth_interval=2)
        full = _train(mp, net, opt, plan, 0)

        first = _net()
        first_opt = torch.optim.Adam(first.parameters(), lr=0.01)
        first_mp = _scaled(init_scale=64.0, growth_interval=2)
        head = _train(first_mp, first, first_opt, plan[:cut], 0)
        saved = _roundtrip({
            "net": first.state_dict(), "opt": first_opt.state_dict(),
            "precision": first_mp.state_dict(),
        })
        assert isinstance(saved, dict)
        resumed = _net()
        resumed_opt = torch.optim.Adam(resumed.parameters(), lr=0.01)
        resumed_mp = _scaled()  # other settings: the checkpoint's win
        resumed.load_state_dict(saved["net"])
        resumed_opt.load_state_dict(saved["opt"])
        resumed_mp.load_state_dict(saved["precision"])
        tail = _train(resumed_mp, resumed, resumed_opt, plan, cut)

        assert head + tail == full == [not p for p in plan]
        for a, b in zip(net.parameters(), resumed.parameters()):
            assert torch.equal(a, b)
        assert resumed_mp.state_dict() == mp.state_dict()

    def test_state_of_another_precision_leaves_the_scaler_fresh(self) -> None:
        """A '32' checkpoint loaded into '16-mixed' keeps the initial scale (a precision change on resume)."""
        mp = _scaled(init_scale=32.0)
        mp.load_state_dict({"precision": "32", "scaler": {}})
        assert mp.loss_scale == 32.0
        plain = MixedPrecision(resolve_precision("32"), "cpu")
        plain.load_state_dict(_scaled().state_dict())  # and the other way: ignored
        assert plain.loss_scale == 1.0

    @pytest.mark.parametrize(
        "state",
        [None, {"scaler": {}}, {"precision": "16-mixed", "scaler": {"scale": 1.0}}],
    )
    def test_damaged_state_is_refused(self, state: object) -> None:
        """A state without the documented keys raises CheckpointError naming what it has."""
        with pytest.raises(CheckpointError, match=r"precision state|GradScaler's keys"):
            _scaled().load_state_dict(state)  # type: ignore[arg-type]


class TestFloat32Outputs:
    def test_low_precision_tensors_become_float32_in_any_nesting(self) -> None:
        """float16/bfloat16 tensors inside tuples, lists, dicts and named tuples become float32."""
        Pair = collections.namedtuple("Pair", "a b")
        half = torch.ones(2, dtype=torch.float16)
        brain = torch.ones(2, dtype=torch.bfloat16)
        out = float32_outputs({"x": [half, (brain,)], "p": Pair(half, 3)})
        assert out["x"][0].dtype is torch.float32
        assert out["x"][1][0].dtype is torch.float32
        assert isinstance(out["p"], Pair) and out["p"].a.dtype is torch.float32 and out["p"].b == 3

    def test_other_values_are_the_same_objects(self) -> None:
        """float32, float64 and integer tensors are returned as they are, without a copy."""
        for tensor in (torch.ones(2), torch.ones(2, dtype=torch.float64), torch.arange(3)):
            assert float32_outputs(tensor) is tensor
        assert float32_outputs("text") == "text"
