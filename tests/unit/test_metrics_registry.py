"""Tests of :mod:`epochal.core.metrics.registry`: name cleaning, the frozen registry, losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from epochal.core.metrics.accuracy import TopKAccuracy
from epochal.core.metrics.registry import (
    BUILTIN_REGISTRY,
    MetricRegistry,
    clean_metric_class_name,
    clean_metric_func_name,
    resolve_loss,
)
from epochal.exceptions import ConfigurationError


@pytest.mark.parametrize(
    ("name", "key"),
    [("CrossEntropyLoss", "crossentropy"), ("cross_entropy", "crossentropy"), ("acc", "acc"),
     ("Binary_Cross_Entropy_Loss", "binarycrossentropy")],
)
def test_function_keys_drop_case_underscores_and_a_trailing_loss(name: str, key: str) -> None:
    """Spellings of one function name clean to one key, as Poutyne's registry does."""
    assert clean_metric_func_name(name) == key


@pytest.mark.parametrize(("name", "key"), [("F1Score", "f1"), ("f1", "f1"), ("FBeta", "fbeta")])
def test_class_keys_drop_case_underscores_and_a_trailing_score(name: str, key: str) -> None:
    """Spellings of one class name clean to one key."""
    assert clean_metric_class_name(name) == key


def test_registry_maps_are_read_only() -> None:
    """The registry's maps cannot be written to: the core holds no mutable global."""
    with pytest.raises(TypeError):
        BUILTIN_REGISTRY.funcs["mine"] = (None, abs)  # type: ignore[index]


def test_with_funcs_returns_a_new_registry_and_leaves_the_old_one() -> None:
    """with_funcs adds an entry to a copy; the registry it was called on does not know it."""
    def double(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return 2 * y_pred.mean()

    extended = BUILTIN_REGISTRY.with_funcs({"double": ("twice", double)})
    assert extended.lookup("Double") == ("twice", double)
    assert BUILTIN_REGISTRY.lookup("double") is None


def test_classes_give_a_new_instance_per_lookup() -> None:
    """A class entry is instantiated at each lookup, so two trainings never share state."""
    registry = MetricRegistry(funcs={}, classes={"counter": ("count", list)})
    first = registry.lookup("counter")
    second = registry.lookup("counter")
    assert first is not None and second is not None
    assert first[0] == "count"
    assert first[1] == [] and first[1] is not second[1]


def test_functions_are_found_before_classes() -> None:
    """A name registered as both a function and a class resolves to the function."""
    registry = MetricRegistry(funcs={"x": ("from_func", abs)}, classes={"x": ("from_class", list)})
    assert registry.lookup("x") == ("from_func", abs)


@pytest.mark.parametrize(("name", "k"), [("top3", 3), ("top10_accuracy", 10), ("top2acc", 2)])
def test_any_top_k_name_gives_a_top_k_accuracy(name: str, k: int) -> None:
    """Unregistered 'top{k}' names give a TopKAccuracy of that k."""
    found = BUILTIN_REGISTRY.lookup(name)
    assert found is not None
    assert isinstance(found[1], TopKAccuracy) and found[1].k == k


def test_top_zero_and_unknown_names_are_not_found() -> None:
    """'top0' and names nobody registered give None."""
    assert BUILTIN_REGISTRY.lookup("top0") is None
    assert BUILTIN_REGISTRY.lookup("no_such_metric") is None


def test_without_classes_removes_and_refuses_unknown_keys() -> None:
    """without_classes drops a class entry in a copy; an unknown key raises KeyError."""
    registry = MetricRegistry(funcs={}, classes={"a": (None, list), "b": (None, dict)})
    assert registry.without_classes(["a"]).names() == ("b",)
    assert registry.names() == ("a", "b")
    with pytest.raises(KeyError):
        registry.without_classes(["c"])


@pytest.mark.parametrize(
    ("spec", "function"),
    [("cross_entropy", F.cross_entropy), ("CrossEntropyLoss", F.cross_entropy),
     ("mse", F.mse_loss), ("binary_cross_entropy_with_logits",
                           F.binary_cross_entropy_with_logits)],
)
def test_resolve_loss_accepts_poutyne_names(spec: str, function: object) -> None:
    """A loss name in any of Poutyne's spellings resolves to a function computing that loss."""
    loss = resolve_loss(spec)
    torch.manual_seed(0)
    if function is F.cross_entropy:
        y_pred, y_true = torch.randn(4, 3), torch.tensor([0, 2, 1, 0])
    else:
        y_pred, y_true = torch.randn(4), torch.rand(4)
    assert torch.equal(loss(y_pred, y_true), function(y_pred, y_true))  # type: ignore[operator]


def test_resolve_loss_passes_callables_through() -> None:
    """A callable is the loss itself."""
    loss = torch.nn.L1Loss()
    assert resolve_loss(loss) is loss


def test_resolve_loss_names_the_valid_choices() -> None:
    """An unknown loss name raises ConfigurationError listing names that are valid."""
    with pytest.raises(ConfigurationError, match="cross_entropy"):
        resolve_loss("no_such_loss")
