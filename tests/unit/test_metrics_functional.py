"""Tests of epochal.core.metrics.functional: Poutyne's acc, bin_acc and topk with reduction=,
and the confusion counts."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from epochal.core.metrics.functional import (
    acc,
    bin_acc,
    confusion_counts,
    top1,
    topk,
)
from epochal.exceptions import ConfigurationError

Y_PRED = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.8, 0.1, 0.1]])
Y_TRUE = torch.tensor([0, 2, 2, -100])


def test_acc_reductions_match_poutyne_definitions() -> None:
    """mean is percent of counted positions, sum is 100 x hits, none is 100/0 per position."""
    assert acc(Y_PRED, Y_TRUE).item() == pytest.approx(200 / 3)
    assert acc(Y_PRED, Y_TRUE, reduction="sum").item() == pytest.approx(200.0)
    assert acc(Y_PRED, Y_TRUE, reduction="none").tolist() == [100.0, 0.0, 100.0, 0.0]


def test_acc_positive_ignore_index_is_masked_in_every_reduction() -> None:
    """A class index used as ignore_index counts as neither hit nor position."""
    y_true = torch.tensor([0, 2, 2, 0])  # class 0 ignored
    assert acc(Y_PRED, y_true, ignore_index=0).item() == pytest.approx(50.0)
    assert acc(Y_PRED, y_true, ignore_index=0, reduction="sum").item() == pytest.approx(100.0)
    assert acc(Y_PRED, y_true, ignore_index=0, reduction="none").tolist() == [0, 0, 100, 0]


def test_topk_reductions() -> None:
    """topk with k=2 under each reduction; top1 equals acc."""
    assert topk(Y_PRED, Y_TRUE, 2).item() == pytest.approx(200 / 3)
    assert topk(Y_PRED, Y_TRUE, 2, reduction="sum").item() == pytest.approx(200.0)
    assert topk(Y_PRED, Y_TRUE, 2, reduction="none").tolist() == [100.0, 0.0, 100.0, 0.0]
    assert top1(Y_PRED, Y_TRUE).item() == acc(Y_PRED, Y_TRUE).item()
    assert top1.__name__ == "top1" and acc.__name__ == "acc"


def test_top1_forwards_keywords_to_acc() -> None:
    """top1 passes Poutyne's keywords (ignore_index, reduction) on to acc and refuses others."""
    y_true = torch.tensor([0, 2, 2, 0])
    assert top1(Y_PRED, y_true, ignore_index=0).item() == pytest.approx(50.0)
    assert top1(Y_PRED, Y_TRUE, reduction="none").tolist() == [100.0, 0.0, 100.0, 0.0]
    with pytest.raises(TypeError):
        top1(Y_PRED, Y_TRUE, k=3)


def test_bin_acc_reductions() -> None:
    """bin_acc thresholds at 0 and reduces as Poutyne."""
    y_pred, y_true = torch.tensor([1.0, -1.0, 2.0]), torch.tensor([1.0, 1.0, 1.0])
    assert bin_acc(y_pred, y_true).item() == pytest.approx(200 / 3)
    assert bin_acc(y_pred, y_true, reduction="sum").item() == pytest.approx(200.0)
    assert bin_acc(y_pred, y_true, reduction="none").tolist() == [100.0, 0.0, 100.0]
    assert bin_acc.__name__ == "bin_acc"


def test_unknown_reduction_raises() -> None:
    """A reduction other than mean/sum/none is a ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match="'avg'"):
        acc(Y_PRED, Y_TRUE, reduction="avg")
    with pytest.raises(ConfigurationError, match="'avg'"):
        bin_acc(Y_PRED, Y_PRED, reduction="avg")


@given(
    data=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4), st.booleans()), max_size=60)
)
def test_confusion_counts_paths_agree_and_count(data: list[tuple[int, int, bool]]) -> None:
    """The deterministic and index_add_ paths give the same exact counts as a Python count."""
    pred = torch.tensor([p for p, _, _ in data], dtype=torch.long)
    true = torch.tensor([t for _, t, _ in data], dtype=torch.long)
    keep = torch.tensor([k for _, _, k in data], dtype=torch.bool)
    fast = confusion_counts(pred, true, keep, 5)
    slow = confusion_counts(pred, true, keep, 5, deterministic=True)
    assert torch.equal(fast, slow)
    for c in range(5):
        assert fast[0, c] == sum(1 for p, t, k in data if k and p == t == c)
        assert fast[1, c] == sum(1 for p, _, k in data if k and p == c)
        assert fast[2, c] == sum(1 for _, t, k in data if k and t == c)


def test_metric_modules_check_reduction_and_apply_it() -> None:
    """Accuracy, BinaryAccuracy and TopKAccuracy take reduction= and refuse an unknown one."""
    from epochal.core.metrics import Accuracy, BinaryAccuracy, ReducedBatchMetric, TopKAccuracy

    assert Accuracy(reduction="sum")(Y_PRED, Y_TRUE).item() == pytest.approx(200.0)
    assert TopKAccuracy(2, reduction="none")(Y_PRED, Y_TRUE).tolist() == [100.0, 0, 100.0, 0]
    assert BinaryAccuracy(threshold=0.5)(Y_PRED, (Y_PRED > 0.5).float()).item() == 100.0
    assert isinstance(Accuracy(), ReducedBatchMetric)
    for make in (Accuracy, BinaryAccuracy, lambda **kw: TopKAccuracy(2, **kw)):
        with pytest.raises(ConfigurationError, match="reduction"):
            make(reduction="avg")


@given(
    st.integers(1, 40), st.integers(2, 6), st.sampled_from([-100, 0, 1, 5]),
    st.sampled_from([torch.int64, torch.int32]), st.sampled_from([torch.float32, torch.float64,
                                                                  torch.bfloat16]),
    st.integers(0, 2**16),
)
def test_accuracy_is_the_scalar_formula_to_the_bit(batch, classes, ignore_index, target_dtype,
                                                  dtype, seed):
    """The CPU 0-dim operands (``100``, the ignored index) give the same value, to the bit, as
    the formula with Python numbers, for any targets, dtypes and ignored index."""
    generator = torch.Generator().manual_seed(seed)
    y_pred = torch.randn(batch, classes, generator=generator).to(dtype)
    y_true = torch.randint(-1, classes, (batch,), generator=generator)
    y_true[y_true < 0] = ignore_index
    y_true = y_true.to(target_dtype)
    counted = y_true != ignore_index
    hits = torch.count_nonzero((y_pred.argmax(dim=1) == y_true) & counted)
    expected = hits.div(torch.count_nonzero(counted)).mul_(100.0)
    got = acc(y_pred, y_true, ignore_index=ignore_index)
    assert got.dtype == expected.dtype
    assert torch.equal(got, expected) or (got.isnan() and expected.isnan())


def test_accuracy_with_a_float_ignore_index_compares_as_a_float():
    """A non-integral ``ignore_index`` ignores nothing (it equals no class index)."""
    y_pred = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert acc(y_pred, torch.tensor([1, 1]), ignore_index=0.5).item() == 50.0  # type: ignore[arg-type]


def test_accuracy_operands_ignore_the_default_device_and_any_int_index():
    """The cached operands are made on the CPU even when the first call runs under another
    default device, and an index outside int64 falls back to a Python number."""
    y_pred = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    y_true = torch.tensor([1, 1, 0])
    with torch.device("meta"):  # CPU inputs, another default device: the first call
        assert acc(y_pred, y_true, ignore_index=-7).item() == pytest.approx(200 / 3)
    assert acc(y_pred, y_true, ignore_index=-7).item() == pytest.approx(200 / 3)
    assert acc(y_pred, y_true, ignore_index=2**63).item() == pytest.approx(200 / 3)
