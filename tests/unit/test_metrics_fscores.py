"""Tests of epochal.core.metrics.fscores: Poutyne's FBeta options, names and aliases."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from epochal.core.metrics.fscores import (
    F1,
    BinaryF1,
    BinaryPrecision,
    BinaryRecall,
    FBeta,
    Precision,
    Recall,
)
from epochal.exceptions import ConfigurationError, ShapeMismatchError

sk = pytest.importorskip("sklearn.metrics")


def scores(pred: list[int], classes: int) -> torch.Tensor:
    """One-hot scores whose arg-max is ``pred``."""
    return torch.nn.functional.one_hot(torch.tensor(pred), classes).float()


def test_log_names_follow_poutyne() -> None:
    """Default names: all three with metric=None, _binary_{pos_label}, _{label} for an int."""
    assert FBeta().__name__ == ["fscore_macro", "precision_macro", "recall_macro"]
    assert FBeta(metric="recall", average="micro").__name__ == "recall_micro"
    assert FBeta(metric="fscore", average="binary").__name__ == "fscore_binary_1"
    assert FBeta(metric="fscore", average="binary", pos_label=0).__name__ == "fscore_binary_0"
    assert FBeta(metric="precision", average=2).__name__ == "precision_2"
    assert F1().__name__ == "fscore_macro" and F1(average="micro").__name__ == "fscore_micro"
    assert Precision().__name__ == "precision_macro" and Recall().__name__ == "recall_macro"
    assert BinaryF1().__name__ == "bin_fscore"
    assert BinaryPrecision().__name__ == "bin_precision"
    assert BinaryRecall().__name__ == "bin_recall"
    assert FBeta(names=["f", "p", "r"]).__name__ == ["f", "p", "r"]


def test_bad_names_and_beta_use() -> None:
    """names of the wrong length, beta on F1, beta on precision (warning) are reported."""
    with pytest.raises(ConfigurationError, match="fscore_macro"):
        FBeta(names=["only_one"])
    with pytest.raises(ConfigurationError, match="FBeta"):
        F1(beta=2.0)
    with pytest.warns(UserWarning, match="beta"):
        FBeta(metric="precision", beta=2.0)


@given(
    pairs=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=50),
    label=st.integers(0, 3),
)
def test_all_three_and_per_label_equal_sklearn(pairs: list[tuple[int, int]], label: int) -> None:
    """metric=None gives (fscore, precision, recall); an int average gives that class's."""
    y_true, y_pred = [t for t, _ in pairs], [p for _, p in pairs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, _ = sk.precision_recall_fscore_support(
            y_true, y_pred, labels=[label], average=None, zero_division=0
        )
        macro = sk.precision_recall_fscore_support(
            y_true, y_pred, average="macro", zero_division=0
        )
    both = FBeta()
    both.update(scores(y_pred, 4), torch.tensor(y_true))
    assert both.compute() == pytest.approx([macro[2], macro[0], macro[1]], rel=1e-12, abs=1e-15)
    per_label = FBeta(average=label)
    per_label.update(scores(y_pred, 4), torch.tensor(y_true))
    assert per_label.compute() == pytest.approx([f[0], p[0], r[0]], rel=1e-12, abs=1e-15)


def test_binary_pos_label_zero_equals_sklearn() -> None:
    """pos_label picks the class of average='binary'."""
    y_true, y_pred = [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]
    metric = BinaryF1(pos_label=0)
    metric.update(torch.tensor([-1.0 if p == 0 else 1.0 for p in y_pred]), torch.tensor(y_true))
    assert metric.compute() == pytest.approx(sk.f1_score(y_true, y_pred, pos_label=0))


def test_mask_in_y_true_tuple_skips_positions() -> None:
    """y_true given as (targets, mask) skips positions whose mask is 0."""
    metric = FBeta(metric="precision", average="micro")
    metric.update(scores([0, 1, 1], 2), (torch.tensor([0, 0, 1]), torch.tensor([1, 0, 1])))
    assert metric.compute() == pytest.approx(1.0)


def test_forward_gives_the_batch_value_and_accumulates() -> None:
    """forward returns the batch's own value as a tensor, and compute covers every batch."""
    metric = FBeta(metric="fscore", average="micro")
    first = metric(scores([0, 1], 2), torch.tensor([0, 1]))
    second = metric(scores([0, 1], 2), torch.tensor([1, 0]))
    assert isinstance(first, torch.Tensor) and first.item() == 1.0 and second.item() == 0.0
    assert metric.compute() == pytest.approx(0.5)
    values = FBeta()(scores([0, 1], 2), torch.tensor([0, 1]))
    assert isinstance(values, tuple) and [v.item() for v in values] == [1.0, 1.0, 1.0]


def test_make_deterministic_gives_equal_values() -> None:
    """make_deterministic=True counts without index_add_ and gives the same result."""
    torch.manual_seed(0)
    y_pred, y_true = torch.randn(40, 5), torch.randint(0, 5, (40,))
    fast, slow = FBeta(), FBeta(make_deterministic=True)
    fast.update(y_pred, y_true)
    slow.update(y_pred, y_true)
    assert fast.compute() == slow.compute()


def test_label_out_of_range_raises_at_compute() -> None:
    """An int average at or above the class count is reported with the class count."""
    metric = FBeta(average=7)
    metric.update(scores([0, 1], 3), torch.tensor([0, 1]))
    with pytest.raises(ShapeMismatchError, match="3 classes"):
        metric.compute()
