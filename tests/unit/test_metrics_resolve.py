"""Tests of epochal.core.metrics.resolve: names, doubles, stateful batch metrics, registries."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from epochal.core.metrics import (
    BUILTIN_REGISTRY,
    F1,
    DecomposableMetric,
    FBeta,
    Metric,
    TopKAccuracy,
    acc,
    bin_acc,
    resolve_metrics,
)
from epochal.exceptions import ConfigurationError


class SomeConstantMetric(Metric):
    """A user metric without __name__: logs under its class name in snake_case."""

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return torch.tensor(3.0)

    def update(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
        pass

    def compute(self) -> float:
        return 3.0

    def reset(self) -> None:
        pass


def test_poutyne_string_names_resolve_to_poutyne_objects() -> None:
    """Registered strings give Poutyne's objects and log names, for batch and epoch lists."""
    resolved = resolve_metrics(
        ["accuracy", "binary_acc", "top1", "top7_acc", "top30", "top13", "mse_loss", "bce"],
        ["f1", "bin_f1", "binary_precision", "bin_recall", "precision", "recall", ("acc_e", "acc")],
    )
    assert resolved.batch_names == (
        "acc", "bin_acc", "top1", "top7", "top30", "top13", "mse", "bce",
    )
    assert resolved.epoch_names == (
        "fscore_macro", "bin_fscore", "bin_precision", "bin_recall", "precision_macro",
        "recall_macro", "acc_e",
    )
    assert resolved.batch[0].fn is acc and resolved.batch[1].fn is bin_acc
    assert isinstance(resolved.batch[3].fn, TopKAccuracy) and resolved.batch[3].fn.k == 7
    assert isinstance(resolved.epoch[0].metric, F1)
    # a function as an epoch metric is averaged per batch
    assert isinstance(resolved.epoch[6].metric, DecomposableMetric)


def test_doubles_are_numbered_across_both_lists() -> None:
    """Equal names over batch and epoch metrics become name1, name2, ... (rename_doubles)."""
    resolved = resolve_metrics(["acc", ("f1", acc)], [("acc", F1()), "f1", "f1"])
    assert resolved.batch_names == ("acc1", "f1")
    assert resolved.epoch_names == ("acc2", "fscore_macro1", "fscore_macro2")


def test_snake_case_and_multi_names() -> None:
    """An object without __name__ logs in snake_case; a list of names splits the values."""
    resolved = resolve_metrics([SomeConstantMetric()], [(["f", "p", "r"], FBeta())])
    assert resolved.batch_names == ("some_constant_metric",)
    assert resolved.epoch_names == ("f", "p", "r")
    state = resolved.epoch[0]
    state.update(torch.eye(2), torch.tensor([0, 1]))
    assert state.compute() == (1.0, 1.0, 1.0)


def test_stateful_batch_metric_gets_a_pass_value_from_compute() -> None:
    """A module with compute/reset used as a batch metric also gets a from_batch state whose
    update does nothing and whose compute gives the pass's value."""
    metric = F1(average="micro")
    resolved = resolve_metrics([metric, "acc"], None)
    assert resolved.epoch_names == ()
    (companion,) = resolved.epoch
    assert companion.from_batch and companion.names == ("fscore_micro",)
    companion.reset()
    (value,) = resolved.batch[0](torch.eye(2), torch.tensor([0, 1]))
    companion.update(torch.eye(2), torch.tensor([1, 0]))  # ignored: forward already added
    assert value.item() == 1.0 and companion.compute() == (1.0,)


def test_registry_is_an_argument() -> None:
    """A registry with an extra entry resolves it; the built-in one does not know it."""
    registry = BUILTIN_REGISTRY.with_funcs({"double": ("twice", lambda p, t: 2 * p.mean())})
    resolved = resolve_metrics(["double"], None, registry=registry)
    assert resolved.batch_names == ("twice",)
    with pytest.raises(ConfigurationError, match="'double'"):
        resolve_metrics(["double"], None)


def test_modules_and_classes() -> None:
    """A loss module logs under its snake_case class name; a class (not instance) is refused."""
    assert resolve_metrics([nn.CrossEntropyLoss()], None).batch_names == ("cross_entropy_loss",)
    with pytest.raises(TypeError, match="instance"):
        resolve_metrics(None, [F1])


def test_log_names_equal_poutyne_1_19() -> None:
    """For the same specs, epochal's Model logs the metric names Poutyne 1.19 logs."""
    poutyne = pytest.importorskip("poutyne")
    import epochal

    def specs(lib: object) -> tuple[list[object], list[object]]:
        def get(name: str) -> Any:
            return getattr(lib, name)

        batch = [
            "acc", "accuracy", "bin_acc", "binary_accuracy", "top1", "top5", "top20_acc",
            "mse", "bce", "cross_entropy", "MSELoss", get("F1")(average="micro"),
            ("x", get("acc")), get("TopKAccuracy")(3), get("Accuracy")(),
        ]
        epoch = [
            "f1", "bin_f1", "binary_precision", "bin_recall", "precision", "recall",
            get("FBeta")(), get("FBeta")(metric="recall", average=2),
            get("FBeta")(metric="fscore", average="binary", pos_label=0), "acc",
        ]
        return batch, epoch

    net = nn.Linear(2, 3)
    ours = epochal.Model(
        net, "sgd", "cross_entropy", batch_metrics=specs(epochal)[0], epoch_metrics=specs(epochal)[1]
    )
    theirs = poutyne.Model(net, "sgd", "cross_entropy", batch_metrics=specs(poutyne)[0],
                           epoch_metrics=specs(poutyne)[1])
    assert ours.batch_metrics_names == theirs.batch_metrics_names
    assert ours.epoch_metrics_names == theirs.epoch_metrics_names
