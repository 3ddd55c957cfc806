"""Tests of epochal.core.metrics: predefined metrics, name resolution, running means.

"No host sync" is checked on the ``meta`` device: a meta tensor has no data, so anything that
reads values (``.item()``, boolean-mask indexing, ``bincount``, ``.tolist()``) raises there.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from epochal.core.metrics import (
    BATCH_METRIC_NAMES,
    EPOCH_METRIC_NAMES,
    LOSS_NAMES,
    Accuracy,
    BatchMetric,
    BinaryAccuracy,
    EpochMetricState,
    FBeta,
    TopKAccuracy,
    accuracy,
    binary_accuracy,
    check_unique_names,
    resolve_batch_metrics,
    resolve_epoch_metrics,
    resolve_loss,
    topk_accuracy,
)
from epochal.exceptions import ConfigurationError, ShapeMismatchError

sklearn_metrics = pytest.importorskip("sklearn.metrics")

META = torch.device("meta")


def one_hot_scores(pred: list[int], classes: int) -> torch.Tensor:
    """Scores whose arg-max over dim 1 is ``pred``."""
    return torch.nn.functional.one_hot(torch.tensor(pred, dtype=torch.long), classes).float()


def sklearn_value(metric: str, average: str, y_true: list[int], y_pred: list[int]) -> float:
    fn = {
        "fscore": sklearn_metrics.f1_score,
        "precision": sklearn_metrics.precision_score,
        "recall": sklearn_metrics.recall_score,
    }[metric]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(y_true, y_pred, average=average, zero_division=0))


class TestAccuracy:
    def test_hand_example_in_percent(self) -> None:
        """Three hits out of four give 75.0."""
        y_pred = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
        y_true = torch.tensor([0, 1, 1, 1])
        assert accuracy(y_pred, y_true).item() == pytest.approx(75.0)

    def test_ignore_index_positions_are_not_counted(self) -> None:
        """Targets equal to ignore_index leave both numerator and denominator."""
        y_pred = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
        y_true = torch.tensor([0, -100, 1, -100])
        assert accuracy(y_pred, y_true).item() == pytest.approx(50.0)
        assert accuracy(y_pred, torch.tensor([0, 0, 1, 0]), ignore_index=0).item() == 0.0

    def test_sequence_shapes_use_class_dim_one(self) -> None:
        """y_pred (batch, classes, seq) against y_true (batch, seq) takes the arg-max over dim 1."""
        y_pred = torch.zeros(2, 3, 4)
        y_pred[:, 2, :] = 1.0  # predicts class 2 everywhere
        y_true = torch.tensor([[2, 2, 0, -100], [2, 1, -100, -100]])
        assert accuracy(y_pred, y_true).item() == pytest.approx(300.0 / 5)

    def test_all_ignored_gives_nan(self) -> None:
        """A batch where every target is ignored has no accuracy (nan), as in Poutyne."""
        assert math.isnan(accuracy(torch.randn(2, 3), torch.tensor([-100, -100])).item())

    def test_shape_mismatch_names_both_shapes(self) -> None:
        """Mismatched shapes raise ShapeMismatchError quoting both shapes."""
        with pytest.raises(ShapeMismatchError, match=r"\(4, 3\).*\(4, 3\)"):
            accuracy(torch.randn(4, 3), torch.zeros(4, 3, dtype=torch.long))
        with pytest.raises(ShapeMismatchError, match=r"\(4, 3\).*\(5,\)"):
            accuracy(torch.randn(4, 3), torch.zeros(5, dtype=torch.long))

    def test_no_host_sync(self) -> None:
        """Accuracy runs on data-less meta tensors, so it reads no value back to the host."""
        value = accuracy(
            torch.empty(8, 3, device=META), torch.empty(8, dtype=torch.long, device=META)
        )
        assert value.device == META and value.dim() == 0

    def test_accuracy_object_uses_its_ignore_index(self) -> None:
        """Accuracy(ignore_index=...) logs 'acc' and skips its own ignore index."""
        metric = Accuracy(ignore_index=0)
        assert metric.__name__ == "acc"
        assert metric(torch.eye(2), torch.tensor([0, 1])).item() == 100.0


class TestTopKAccuracy:
    def test_hand_example(self) -> None:
        """A target within the k best scores is a hit; outside it is a miss."""
        y_pred = torch.tensor([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])
        y_true = torch.tensor([0, 1, 2])
        assert topk_accuracy(y_pred, y_true, 2).item() == pytest.approx(200.0 / 3)
        assert topk_accuracy(y_pred, y_true, 3).item() == pytest.approx(100.0)

    def test_top1_equals_accuracy(self) -> None:
        """top-1 accuracy is accuracy."""
        y_pred, y_true = torch.randn(30, 5), torch.randint(0, 5, (30,))
        assert topk_accuracy(y_pred, y_true, 1).item() == pytest.approx(
            accuracy(y_pred, y_true).item()
        )

    def test_ignore_index_and_extra_dims(self) -> None:
        """top-k takes (batch, classes, *extra) and skips ignored targets."""
        y_pred = torch.tensor([[[3.0, 0.0], [2.0, 1.0], [1.0, 2.0]]])  # (1, 3, 2)
        y_true = torch.tensor([[2, -100]])
        assert topk_accuracy(y_pred, y_true, 2).item() == 0.0
        assert topk_accuracy(y_pred, torch.tensor([[1, -100]]), 2).item() == 100.0

    def test_k_above_class_count_raises(self) -> None:
        """k larger than the number of classes is a ShapeMismatchError naming the shapes."""
        with pytest.raises(ShapeMismatchError, match=r"top5.*\(2, 3\)"):
            topk_accuracy(torch.randn(2, 3), torch.tensor([0, 1]), 5)

    def test_topk_object_name(self) -> None:
        """TopKAccuracy(k) logs 'top{k}' and rejects k < 1."""
        assert TopKAccuracy(7).__name__ == "top7"
        with pytest.raises(ConfigurationError):
            TopKAccuracy(0)


class TestBinaryAccuracy:
    def test_hand_example_with_logits(self) -> None:
        """Logits are thresholded at 0 and compared with 0/1 targets, in percent."""
        y_pred = torch.tensor([2.0, -1.0, 0.5, -0.2])
        y_true = torch.tensor([1.0, 0.0, 0.0, 1.0])
        assert binary_accuracy(y_pred, y_true).item() == pytest.approx(50.0)

    def test_threshold_and_integer_targets(self) -> None:
        """A custom threshold applies, and integer targets work like float ones."""
        y_pred = torch.tensor([[0.9], [0.4], [0.6]])
        y_true = torch.tensor([[1], [0], [0]])
        assert BinaryAccuracy(threshold=0.5)(y_pred, y_true).item() == pytest.approx(200.0 / 3)

    def test_shape_mismatch_raises(self) -> None:
        """bin_acc needs equal shapes and says which ones it got."""
        with pytest.raises(ShapeMismatchError, match=r"\(4, 1\).*\(4,\)"):
            binary_accuracy(torch.randn(4, 1), torch.zeros(4))


FBETA_CASES = [(m, a) for m in ("fscore", "precision", "recall") for a in ("macro", "micro")]


@st.composite
def multiclass_data(draw: Any) -> tuple[int, list[int], list[int]]:
    classes = draw(st.integers(2, 6))
    n = draw(st.integers(1, 40))
    labels = st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)
    return classes, draw(labels), draw(labels)


@st.composite
def splits(draw: Any, n: int) -> list[int]:
    """Sorted cut points splitting range(n) into non-empty batches."""
    cuts = draw(st.sets(st.integers(1, max(n - 1, 1)), max_size=6)) if n > 1 else set()
    return [0, *sorted(cuts), n]


class TestFBeta:
    def test_hand_example_macro_leaves_out_unseen_classes(self) -> None:
        """Macro F1 averages over classes in the targets or predictions only, as scikit-learn."""
        y_true, y_pred = [0, 0, 1, 1], [0, 1, 1, 1]
        metric = FBeta(metric="fscore")
        metric.update(one_hot_scores(y_pred, 5), torch.tensor(y_true))  # classes 2..4 unseen
        # class 0: P=1, R=0.5, F=2/3; class 1: P=2/3, R=1, F=0.8
        assert metric.compute() == pytest.approx((2 / 3 + 0.8) / 2, rel=1e-12)

    @given(data=multiclass_data())
    def test_property_equals_sklearn_multiclass(
        self, data: tuple[int, list[int], list[int]]
    ) -> None:
        """Macro and micro F1, precision and recall equal scikit-learn's on any labels."""
        classes, y_true, y_pred = data
        for metric_name, average in FBETA_CASES:
            metric = FBeta(metric=metric_name, average=average)
            metric.update(one_hot_scores(y_pred, classes), torch.tensor(y_true))
            expected = sklearn_value(metric_name, average, y_true, y_pred)
            assert metric.compute() == pytest.approx(expected, rel=1e-12, abs=1e-15)

    @given(
        y=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=40),
        layout=st.sampled_from(["logits", "logits_col", "two_scores"]),
    )
    def test_property_equals_sklearn_binary(self, y: list[tuple[int, int]], layout: str) -> None:
        """Binary F1, precision and recall equal scikit-learn's for every prediction layout."""
        y_true, y_pred = [t for t, _ in y], [p for _, p in y]
        logits = torch.tensor([1.5 if p else -0.5 for p in y_pred])
        scores = {
            "logits": logits,
            "logits_col": logits.unsqueeze(1),
            "two_scores": one_hot_scores(y_pred, 2),
        }[layout]
        for metric_name in ("fscore", "precision", "recall"):
            metric = FBeta(metric=metric_name, average="binary")
            metric.update(scores, torch.tensor(y_true, dtype=torch.float32))
            expected = sklearn_value(metric_name, "binary", y_true, y_pred)
            assert metric.compute() == pytest.approx(expected, rel=1e-12, abs=1e-15)

    @given(data=st.data())
    def test_property_any_batch_split_equals_whole(self, data: st.DataObject) -> None:
        """Accumulating over any split into batches gives exactly the whole-data value."""
        classes, y_true, y_pred = data.draw(multiclass_data())
        cuts = data.draw(splits(len(y_true)))
        scores, targets = one_hot_scores(y_pred, classes), torch.tensor(y_true)
        for metric_name, average in FBETA_CASES:
            whole, split = (
                FBeta(metric=metric_name, average=average),
                FBeta(metric=metric_name, average=average),
            )
            whole.update(scores, targets)
            for start, stop in itertools.pairwise(cuts):
                split.update(scores[start:stop], targets[start:stop])
            assert split.compute() == whole.compute()

    def test_fbeta_beta_two_equals_sklearn(self) -> None:
        """beta weighs recall as scikit-learn's fbeta_score does."""
        y_true, y_pred = [0, 1, 2, 2, 1, 0, 2], [0, 2, 2, 1, 1, 0, 0]
        metric = FBeta(metric="fscore", beta=2.0)
        metric.update(one_hot_scores(y_pred, 3), torch.tensor(y_true))
        expected = sklearn_metrics.fbeta_score(y_true, y_pred, beta=2.0, average="macro")
        assert metric.compute() == pytest.approx(expected, rel=1e-12)

    def test_ignore_index_drops_positions(self) -> None:
        """Targets equal to ignore_index count nowhere, also in (batch, classes, seq) layout."""
        y_true = torch.tensor([[0, 1, -100], [1, -100, -100]])
        y_pred = torch.zeros(2, 2, 3)
        y_pred[:, 1, :] = 1.0  # predicts 1 everywhere
        metric = FBeta(metric="fscore", average="micro")
        metric.update(y_pred, y_true)
        assert metric.compute() == pytest.approx(2 / 3, rel=1e-12)

    def test_reset_and_empty(self) -> None:
        """A metric with nothing added computes 0.0; reset forgets earlier batches."""
        metric = FBeta(metric="fscore")
        assert metric.compute() == 0.0
        metric.update(one_hot_scores([0, 1], 2), torch.tensor([0, 1]))
        assert metric.compute() == 1.0
        metric.reset()
        metric.update(one_hot_scores([0, 1], 2), torch.tensor([1, 0]))
        assert metric.compute() == 0.0

    def test_out_of_range_target_raises_at_compute(self) -> None:
        """A target outside [0, classes) is counted on device and reported by compute."""
        metric = FBeta(metric="fscore")
        metric.update(one_hot_scores([0, 1], 2), torch.tensor([0, 5]))
        with pytest.raises(ShapeMismatchError, match="1 target"):
            metric.compute()

    def test_binary_with_many_classes_raises(self) -> None:
        """average='binary' rejects scores for more than two classes."""
        with pytest.raises(ShapeMismatchError, match=r"\(3, 4\)"):
            FBeta(average="binary").update(torch.randn(3, 4), torch.tensor([0, 1, 1]))

    def test_class_count_change_raises(self) -> None:
        """The number of classes cannot change within a pass."""
        metric = FBeta(metric="fscore")
        metric.update(torch.randn(3, 4), torch.tensor([0, 1, 1]))
        with pytest.raises(ShapeMismatchError, match="4 classes"):
            metric.update(torch.randn(3, 5), torch.tensor([0, 1, 1]))

    def test_bad_options_raise(self) -> None:
        """Unknown metric or average, or beta <= 0, are configuration errors."""
        for kwargs in ({"metric": "f2"}, {"average": "weighted"}, {"beta": 0.0}):
            with pytest.raises(ConfigurationError):
                FBeta(**kwargs)

    def test_update_has_no_host_sync(self) -> None:
        """update runs on data-less meta tensors and keeps its counts there as tensors."""
        metric = FBeta(metric="fscore")
        metric.update(
            torch.empty(6, 3, 5, device=META), torch.empty(6, 5, dtype=torch.long, device=META)
        )
        metric.update(
            torch.empty(2, 3, 5, device=META), torch.empty(2, 5, dtype=torch.long, device=META)
        )
        assert metric._counts is not None and metric._counts.device == META


class TestResolveBatchMetrics:
    @pytest.mark.parametrize(
        ("spec", "log_name"),
        [
            ("accuracy", "acc"),
            ("acc", "acc"),
            ("Accuracy", "acc"),
            ("bin_acc", "bin_acc"),
            ("binacc", "bin_acc"),
            ("binary_accuracy", "bin_acc"),
            ("top5", "top5"),
            ("top3", "top3"),
            ("top13_acc", "top13"),
            ("top2_accuracy", "top2"),
            ("cross_entropy", "cross_entropy"),
            ("CrossEntropyLoss", "cross_entropy"),
            ("mse", "mse"),
            ("mse_loss", "mse"),
            ("MSELoss", "mse"),
            ("l1", "l1"),
            ("smooth_l1", "smooth_l1"),
            ("bce", "bce"),
            ("binary_cross_entropy", "bce"),
            ("bce_with_logits", "bce_with_logits"),
            ("BCEWithLogitsLoss", "bce_with_logits"),
            ("nll", "nll"),
            ("kl_div", "kl_div"),
            ("poisson_nll", "poisson_nll"),
            ("huber", "huber"),
        ],
    )
    def test_names_resolve_to_log_names(self, spec: str, log_name: str) -> None:
        """Every predefined spelling resolves to its Poutyne log name."""
        (metric,) = resolve_batch_metrics([spec])
        assert metric.names == (log_name,)

    def test_name_resolves_to_working_function(self) -> None:
        """A resolved name computes its metric: 'top2' is top-2 accuracy, 'mse' the MSE."""
        top2, mse = resolve_batch_metrics(["top2", "mse"])
        y_pred = torch.tensor([[0.5, 0.3, 0.2]] * 3)
        (value,) = top2(y_pred, torch.tensor([0, 1, 2]))
        assert value.item() == pytest.approx(200.0 / 3)
        (value,) = mse(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0]))
        assert value.item() == pytest.approx(5.0)

    def test_callable_forms_and_their_names(self) -> None:
        """Functions log under __name__, partials under their function's, modules under the
        class name in snake_case (Poutyne's rule), objects with __name__ under it."""

        def my_metric(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
            return y_pred.sum()

        metrics = resolve_batch_metrics(
            [my_metric, functools.partial(topk_accuracy, k=2), nn.L1Loss(), TopKAccuracy(4)]
        )
        assert [m.names for m in metrics] == [
            ("my_metric",),
            ("topk_accuracy",),
            ("l1_loss",),
            ("top4",),
        ]

    def test_tuple_forms(self) -> None:
        """(name, metric) renames, metric being a callable or a predefined name."""
        metrics = resolve_batch_metrics(
            [("my_acc", "accuracy"), ("sse", lambda p, t: (p - t).pow(2).sum())]
        )
        assert [m.names for m in metrics] == [("my_acc",), ("sse",)]
        (value,) = metrics[0](torch.eye(3), torch.tensor([0, 1, 1]))
        assert value.item() == pytest.approx(200.0 / 3)

    def test_multi_value_metric_from_tuple_return(self) -> None:
        """((n1, n2), fn) with fn returning a tuple gives one tensor per name, in order."""
        (metric,) = resolve_batch_metrics([(("lo", "hi"), lambda p, t: (p.min(), p.max()))])
        lo, hi = metric(torch.tensor([1.0, 5.0, 3.0]), None)
        assert metric.names == ("lo", "hi") and (lo.item(), hi.item()) == (1.0, 5.0)

    def test_multi_value_metric_from_dict_return(self) -> None:
        """A dict return is matched to the declared names by key, whatever its order."""

        def stats(y_pred: torch.Tensor, y_true: Any) -> dict[str, torch.Tensor]:
            return {"hi": y_pred.max(), "lo": y_pred.min()}

        (metric,) = resolve_batch_metrics([(["lo", "hi"], stats)])
        lo, hi = metric(torch.tensor([1.0, 5.0]), None)
        assert (lo.item(), hi.item()) == (1.0, 5.0)

    def test_dict_keys_other_than_names_raise(self) -> None:
        """A dict whose keys differ from the declared names is a ConfigurationError."""

        def stats(y_pred: torch.Tensor, y_true: Any) -> dict[str, torch.Tensor]:
            return {"hi": y_pred.max(), "lo": y_pred.min()}

        (metric,) = resolve_batch_metrics([stats])
        with pytest.raises(ConfigurationError, match="declare"):
            metric(torch.tensor([1.0]), None)

    def test_multi_name_object_with_name_list(self) -> None:
        """An object whose __name__ is a list of names is a multi-value metric."""

        class MinMax:
            def __init__(self) -> None:
                self.__name__ = ["mn", "mx"]

            def __call__(self, y_pred: torch.Tensor, y_true: Any) -> torch.Tensor:
                return torch.stack([y_pred.min(), y_pred.max()])

        (metric,) = resolve_batch_metrics([MinMax()])
        assert metric.names == ("mn", "mx")
        assert [v.item() for v in metric(torch.tensor([2.0, 7.0]), None)] == [2.0, 7.0]

    def test_values_are_detached_zero_dim_tensors(self) -> None:
        """Outputs are detached 0-dim tensors; a Python number becomes a float64 tensor."""
        y_pred = torch.randn(4, 3, requires_grad=True)
        metric = BatchMetric(("a", "b"), lambda p, t: (p.sum(), 2.5))
        a, b = metric(y_pred, torch.zeros(4, dtype=torch.long))
        assert a.dim() == 0 and not a.requires_grad
        assert b.dtype == torch.float64 and b.item() == 2.5

    def test_no_host_sync(self) -> None:
        """Resolved predefined metrics run on data-less meta tensors."""
        metrics = resolve_batch_metrics(["acc", "top2", "cross_entropy"])
        y_pred = torch.empty(5, 3, device=META)
        y_true = torch.empty(5, dtype=torch.long, device=META)
        for metric in metrics:
            (value,) = metric(y_pred, y_true)
            assert isinstance(value, torch.Tensor) and value.device == META

    def test_unknown_name_lists_valid_names_sorted(self) -> None:
        """An unknown name raises ConfigurationError listing the valid names in order."""
        with pytest.raises(ConfigurationError) as info:
            resolve_batch_metrics(["acuracy"])
        message = str(info.value)
        assert "'acuracy'" in message and ", ".join(BATCH_METRIC_NAMES) in message
        assert list(BATCH_METRIC_NAMES) == sorted(BATCH_METRIC_NAMES)

    def test_wrong_types_raise_type_error(self) -> None:
        """Non-metric specs, classes, a bare string and bad tuples raise TypeError."""
        for specs in ([3], [nn.CrossEntropyLoss], "accuracy", [("a", "acc", "x")], [(3, "acc")]):
            with pytest.raises(TypeError):
                resolve_batch_metrics(specs)

    def test_lambda_logs_under_its_python_name(self) -> None:
        """A bare lambda logs as '<lambda>' and two of them are numbered, as in Poutyne."""
        assert [m.names for m in resolve_batch_metrics([lambda p, t: p.sum()])] == [
            ("<lambda>",)]
        metrics = resolve_batch_metrics([lambda p, t: p.sum(), lambda p, t: p.mean()])
        assert [m.names for m in metrics] == [("<lambda>1",), ("<lambda>2",)]

    def test_duplicate_log_names_are_numbered(self) -> None:
        """Two metrics logging under one name are numbered from 1, as Poutyne's rename_doubles."""
        metrics = resolve_batch_metrics(["accuracy", "acc", "top2"])
        assert [m.names for m in metrics] == [("acc1",), ("acc2",), ("top2",)]

    def test_none_is_empty(self) -> None:
        """None means no batch metric."""
        assert resolve_batch_metrics(None) == []


class TorchmetricsLike:
    """Duck-typed like a torchmetrics Metric: update / compute / reset, state on device."""

    def __init__(self) -> None:
        self.total = torch.zeros(())
        self.count = 0
        self.resets = 0

    def update(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
        self.total = self.total + (y_pred - y_true).abs().sum()
        self.count += y_true.numel()

    def compute(self) -> torch.Tensor:
        return self.total / self.count

    def reset(self) -> None:
        self.total = torch.zeros(())
        self.count = 0
        self.resets += 1


class PoutyneStyle(nn.Module):
    """Poutyne's older EpochMetric: forward accumulates, get_metric computes."""

    def __init__(self) -> None:
        super().__init__()
        self.__name__ = "max_err"
        self.values: list[torch.Tensor] = []

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
        self.values.append((y_pred - y_true).abs().max())

    def get_metric(self) -> float:
        return float(torch.stack(self.values).max())

    def reset(self) -> None:
        self.values = []


class TestResolveEpochMetrics:
    @pytest.mark.parametrize(
        ("spec", "log_name"),
        [
            ("f1", "fscore_macro"),
            ("F1_score", "fscore_macro"),
            ("fscore_macro", "fscore_macro"),
            ("f1_micro", "fscore_micro"),
            ("fscore_binary", "fscore_binary"),
            ("precision", "precision_macro"),
            ("precision_micro", "precision_micro"),
            ("precision_binary", "precision_binary"),
            ("recall", "recall_macro"),
            ("recall_micro", "recall_micro"),
            ("recall_binary", "recall_binary"),
        ],
    )
    def test_names_resolve_to_log_names(self, spec: str, log_name: str) -> None:
        """Every predefined epoch-metric spelling resolves to its log name."""
        (metric,) = resolve_epoch_metrics([spec])
        assert metric.names == (log_name,)

    def test_f1_by_name_computes_macro_f1(self) -> None:
        """'f1' accumulates batches and computes scikit-learn's macro F1."""
        (metric,) = resolve_epoch_metrics(["f1"])
        y_true, y_pred = [0, 1, 2, 2, 1], [0, 2, 2, 1, 1]
        metric.reset()
        metric.update(one_hot_scores(y_pred[:2], 3), torch.tensor(y_true[:2]))
        metric.update(one_hot_scores(y_pred[2:], 3), torch.tensor(y_true[2:]))
        (value,) = metric.compute()
        assert value == pytest.approx(sklearn_value("fscore", "macro", y_true, y_pred), rel=1e-12)

    def test_torchmetrics_like_object(self) -> None:
        """An update/compute/reset object works, named by its class name lower-cased."""
        obj = TorchmetricsLike()
        (metric,) = resolve_epoch_metrics([obj])
        assert metric.names == ("torchmetrics_like",)
        metric.reset()
        metric.update(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]))
        metric.update(torch.tensor([3.0]), torch.tensor([0.0]))
        assert metric.compute() == (2.0,)
        assert obj.resets == 1

    def test_poutyne_style_object(self) -> None:
        """A forward/get_metric/reset object works, named by its __name__ attribute."""
        (metric,) = resolve_epoch_metrics([PoutyneStyle()])
        assert metric.names == ("max_err",)
        metric.update(torch.tensor([1.0, 4.0]), torch.tensor([0.0, 0.0]))
        assert metric.compute() == (4.0,)
        metric.reset()
        metric.update(torch.tensor([1.0]), torch.tensor([0.0]))
        assert metric.compute() == (1.0,)

    def test_named_and_multi_value_objects(self) -> None:
        """(name, obj) renames; ((n1, n2), obj) splits a tuple, tensor or dict compute."""

        class Pair(TorchmetricsLike):
            def __init__(self, kind: str) -> None:
                super().__init__()
                self.kind = kind

            def compute(self) -> Any:
                if self.kind == "tuple":
                    return (torch.tensor(1.0), 2.0)
                if self.kind == "tensor":
                    return torch.tensor([1.0, 2.0])
                return {"b": 2.0, "a": torch.tensor(1.0)}

        specs = (
            [("mae", TorchmetricsLike())]
            + [((f"{kind}_a", f"{kind}_b"), Pair(kind)) for kind in ("tuple", "tensor")]
            + [(("a", "b"), Pair("dict"))]
        )
        metrics = resolve_epoch_metrics(specs)
        assert metrics[0].names == ("mae",)
        for metric in metrics[1:]:
            assert metric.compute() == (1.0, 2.0)

    def test_compute_count_mismatch_raises(self) -> None:
        """compute returning more values than names is a ConfigurationError."""

        class Three(TorchmetricsLike):
            def compute(self) -> torch.Tensor:
                return torch.ones(3)

        (metric,) = resolve_epoch_metrics([("x", Three())])
        with pytest.raises(ConfigurationError):
            metric.compute()

    def test_unknown_name_lists_valid_names(self) -> None:
        """An unknown epoch-metric name lists every valid one, sorted."""
        with pytest.raises(ConfigurationError) as info:
            resolve_epoch_metrics(["f2"])
        assert ", ".join(EPOCH_METRIC_NAMES) in str(info.value)

    def test_wrong_types_raise_type_error(self) -> None:
        """Classes, numbers and a bare string are not epoch metrics (a function is: its batch
        values are averaged)."""
        for specs in ([TorchmetricsLike], [1.0], "f1"):
            with pytest.raises(TypeError):
                resolve_epoch_metrics(specs)

    def test_duplicate_log_names_are_numbered(self) -> None:
        """'f1' and 'fscore_macro' both log fscore_macro: numbered fscore_macro1, 2."""
        metrics = resolve_epoch_metrics(["f1", "fscore_macro"])
        assert [m.names for m in metrics] == [("fscore_macro1",), ("fscore_macro2",)]

    def test_none_is_empty(self) -> None:
        """None means no epoch metric."""
        assert resolve_epoch_metrics(None) == []

    def test_state_rejects_objects_without_api(self) -> None:
        """EpochMetricState needs one of the two metric APIs."""
        with pytest.raises(TypeError, match="get_metric"):
            EpochMetricState(("x",), object())


class TestResolveLoss:
    @pytest.mark.parametrize(
        ("spec", "fn"),
        [
            ("cross_entropy", torch.nn.functional.cross_entropy),
            ("CrossEntropyLoss", torch.nn.functional.cross_entropy),
            ("mse", torch.nn.functional.mse_loss),
            ("mse_loss", torch.nn.functional.mse_loss),
            ("bce", torch.nn.functional.binary_cross_entropy),
            ("BCEWithLogitsLoss", torch.nn.functional.binary_cross_entropy_with_logits),
            ("NLLLoss", torch.nn.functional.nll_loss),
            ("SmoothL1Loss", torch.nn.functional.smooth_l1_loss),
            ("KLDivLoss", torch.nn.functional.kl_div),
        ],
    )
    def test_names_resolve_to_functional_losses(self, spec: str, fn: Any) -> None:
        """Short, functional and module spellings name the same functional loss."""
        assert resolve_loss(spec) is fn

    def test_every_listed_name_resolves(self) -> None:
        """Every name in LOSS_NAMES resolves."""
        for name in LOSS_NAMES:
            assert callable(resolve_loss(name))

    def test_callables_pass_through(self) -> None:
        """A loss module instance or function is returned as is."""
        loss = nn.CrossEntropyLoss()
        assert resolve_loss(loss) is loss

    def test_errors(self) -> None:
        """Unknown names list the valid ones; classes and non-callables raise TypeError."""
        with pytest.raises(ConfigurationError, match=", ".join(LOSS_NAMES)):
            resolve_loss("cross_entropyy")
        with pytest.raises(TypeError, match=r"CrossEntropyLoss\(\)"):
            resolve_loss(nn.CrossEntropyLoss)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            resolve_loss(3)  # type: ignore[arg-type]


class TestCheckUniqueNames:
    def test_reserved_and_duplicates(self) -> None:
        """A reserved or repeated name raises; distinct names pass."""
        check_unique_names(["acc", "fscore_macro"], reserved=("loss",))
        with pytest.raises(ConfigurationError, match="'loss'"):
            check_unique_names(["loss"], reserved=("loss",))
        with pytest.raises(ConfigurationError, match="'acc'"):
            check_unique_names(["acc", "f1", "acc"])
