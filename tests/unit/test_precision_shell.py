"""Tests of epochal.precision: device checks, compile options, compiled-network state dicts."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from epochal.core.precision import PRECISIONS
from epochal.exceptions import CheckpointError, ConfigurationError
from epochal.precision import (
    compile_network,
    precision_support,
    prepare_precision,
    resolve_compile_options,
    strip_compile_prefix,
    unwrap_compiled,
)
from tests.seed_networks import fully_connected_network


class TestPrecisionSupport:
    @pytest.mark.parametrize("precision", PRECISIONS)
    def test_cpu_runs_every_precision_on_this_torch(self, precision: str) -> None:
        """The installed torch (2.14) runs all three precisions on the CPU, '16-mixed' with a real GradScaler."""
        assert precision_support(precision, "cpu") is None
        mp = prepare_precision(precision, torch.device("cpu"))
        assert mp.plan.name == precision and mp.device_type == "cpu"
        assert (mp.scaler is not None) == (precision == "16-mixed")

    def test_device_without_autocast_is_refused_naming_device_and_torch(self) -> None:
        """A mixed precision on a device type without autocast raises, naming the device, the torch version and what to use."""
        with pytest.raises(ConfigurationError) as info:
            prepare_precision("bf16-mixed", "meta")
        message = str(info.value)
        assert "'meta'" in message and torch.__version__ in message
        assert "no autocast" in message and "Use '32'" in message

    @pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
    @pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
    def test_cuda_without_a_gpu_is_refused(self, precision: str) -> None:
        """Asking for mixed precision on 'cuda' where no GPU answers is a ConfigurationError, not a crash mid-step."""
        with pytest.raises(ConfigurationError, match="cannot run on device 'cuda'"):
            prepare_precision(precision, "cuda")

    def test_full_precision_needs_nothing(self) -> None:
        """'32' is available on any device, autocast or not."""
        assert precision_support("32", "meta") is None

    def test_unknown_name(self) -> None:
        """An unknown precision string is refused with the list of valid ones."""
        with pytest.raises(ConfigurationError, match="'32', 'bf16-mixed', '16-mixed'"):
            prepare_precision("mixed", "cpu")


class TestResolveCompileOptions:
    def test_switches(self) -> None:
        """False and None mean no compile; True means torch.compile's defaults."""
        assert resolve_compile_options(False) is None
        assert resolve_compile_options(None) is None
        assert resolve_compile_options(True) == {}

    def test_valid_options_pass_through(self) -> None:
        """Known options with values of the right type are returned as keyword arguments."""
        options = {"mode": "reduce-overhead", "fullgraph": True, "dynamic": None}
        assert resolve_compile_options(options) == options
        assert resolve_compile_options({"backend": "eager", "options": None}) == {
            "backend": "eager", "options": None,
        }

    def test_unknown_option_name(self) -> None:
        """A misspelt option is refused with a suggestion and the options torch.compile takes."""
        with pytest.raises(ConfigurationError, match=r"takes no option 'mod'. Did you mean 'mode'") as info:
            resolve_compile_options({"mod": "default"})
        assert "fullgraph" in str(info.value)

    def test_model_is_not_an_option(self) -> None:
        """'model' is torch.compile's positional argument, not an option."""
        with pytest.raises(ConfigurationError, match="no option 'model'"):
            resolve_compile_options({"model": nn.Linear(1, 1)})

    @pytest.mark.parametrize(
        ("options", "match"),
        [
            ({"fullgraph": "yes"}, "'fullgraph' must be bool"),
            ({"dynamic": 1}, "'dynamic' must be bool or None"),
            ({"mode": 3}, "'mode' must be str or None"),
            ({"backend": 3}, "'backend' must be a backend name or a callable"),
        ],
    )
    def test_wrong_value_types(self, options: dict[str, object], match: str) -> None:
        """A value of the wrong type is refused naming the option and the expected type."""
        with pytest.raises(ConfigurationError, match=match):
            resolve_compile_options(options)

    def test_unknown_mode_lists_known_ones(self) -> None:
        """An unknown mode is refused with the modes this torch knows."""
        with pytest.raises(ConfigurationError, match=r"mode 'max_autotune'.*Did you mean 'max-autotune'") as info:
            resolve_compile_options({"mode": "max_autotune"})
        assert "reduce-overhead" in str(info.value)

    def test_unknown_backend_lists_known_ones(self) -> None:
        """An unknown backend name is refused with the backends this torch knows."""
        with pytest.raises(ConfigurationError, match=r"backend 'inductr'.*Did you mean 'inductor'"):
            resolve_compile_options({"backend": "inductr"})

    def test_callable_backend_is_accepted(self) -> None:
        """A callable backend is passed on to torch.compile unchecked."""
        def backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> object:
            return gm.forward
        assert resolve_compile_options({"backend": backend}) == {"backend": backend}

    def test_mode_and_options_together(self) -> None:
        """torch refuses mode and options together; so do we, before compiling."""
        with pytest.raises(ConfigurationError, match="'mode' or 'options', not both"):
            resolve_compile_options({"mode": "default", "options": {"max_autotune": True}})

    def test_unknown_inductor_setting(self) -> None:
        """An Inductor option key this torch does not know is refused."""
        with pytest.raises(ConfigurationError, match=r"\['max_autotun'\] are not Inductor settings"):
            resolve_compile_options({"options": {"max_autotun": True}})

    def test_not_a_mapping(self) -> None:
        """compile= must be a bool or a mapping."""
        with pytest.raises(ConfigurationError, match="compile must be True, False or a dict"):
            resolve_compile_options("max-autotune")  # type: ignore[arg-type]


class TestCompileNetwork:
    def test_no_options_returns_the_network(self) -> None:
        """Without options the eager network itself is used."""
        net = nn.Linear(2, 2)
        assert compile_network(net, None) is net

    def test_eager_backend_matches_eager_and_shares_parameters(self) -> None:
        """A network compiled with the 'eager' backend gives the eager outputs and shares its parameters."""
        torch.manual_seed(0)
        net = fully_connected_network()
        compiled = compile_network(net, resolve_compile_options({"backend": "eager"}))
        assert compiled is not net and unwrap_compiled(compiled) is net
        x = torch.rand(8, 1, 28, 28)
        torch.testing.assert_close(compiled(x), net(x))
        assert compile_network(compiled, {"backend": "eager"}) is compiled  # compiled once

    def test_torch_refusal_becomes_configuration_error(self) -> None:
        """Options that reach torch.compile unchecked and that it refuses raise ConfigurationError."""
        with pytest.raises(ConfigurationError, match=r"torch.compile .* refused options"):
            compile_network(nn.Linear(2, 2), {"mode": "not-a-mode"})


class TestCompiledStateDicts:
    def test_compiled_checkpoint_loads_into_an_eager_network(self) -> None:
        """A state dict taken from the compiled wrapper loads strictly into a fresh eager network after stripping."""
        torch.manual_seed(0)
        net = fully_connected_network()
        compiled = compile_network(net, {"backend": "eager"})
        state = compiled.state_dict()
        assert all(key.startswith("_orig_mod.") for key in state)
        fresh = fully_connected_network()
        fresh.load_state_dict(strip_compile_prefix(state))
        for a, b in zip(net.parameters(), fresh.parameters()):
            assert torch.equal(a, b)
        assert list(unwrap_compiled(compiled).state_dict()) == list(fresh.state_dict())

    def test_nested_compiled_submodule(self) -> None:
        """Keys of a compiled submodule lose their inner '_orig_mod' component too, metadata included."""
        inner = nn.Linear(3, 3)
        outer = nn.Sequential(compile_network(inner, {"backend": "eager"}), nn.ReLU())
        state = outer.state_dict()
        assert "0._orig_mod.weight" in state
        stripped = strip_compile_prefix(state)
        assert list(stripped) == ["0.weight", "0.bias"]
        assert "0" in stripped._metadata  # type: ignore[attr-defined]
        eager = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
        eager.load_state_dict(stripped)
        assert torch.equal(eager[0].weight, inner.weight)

    def test_eager_keys_are_unchanged(self) -> None:
        """A state dict without the prefix comes back with the same keys and tensors."""
        state = nn.Linear(2, 2).state_dict()
        stripped = strip_compile_prefix(state)
        assert list(stripped) == list(state)
        assert all(stripped[k] is state[k] for k in state)

    def test_mixed_state_is_refused(self) -> None:
        """A state holding a key both with and without the prefix raises CheckpointError."""
        state = {"weight": torch.zeros(1), "_orig_mod.weight": torch.ones(1)}
        with pytest.raises(CheckpointError, match="both 'weight' and a compiled copy"):
            strip_compile_prefix(state)

    def test_input_is_not_modified(self) -> None:
        """Stripping returns a copy; the given state dict keeps its keys."""
        state = {"_orig_mod.w": torch.zeros(1)}
        before = copy.copy(state)
        strip_compile_prefix(state)
        assert state == before
