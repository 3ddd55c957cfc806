"""Tests of epochal.core.metrics.base: Poutyne's Metric contract and DecomposableMetric."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from epochal.core.metrics.base import DecomposableMetric, Metric, batch_size_of
from epochal.core.metrics.functional import acc
from epochal.exceptions import ConfigurationError


class SumMetric(Metric):
    """A minimal user metric: the sum of predictions."""

    def __init__(self) -> None:
        super().__init__()
        self.total = torch.zeros(())

    def update(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
        self.total = self.total + y_pred.sum()

    def compute(self) -> torch.Tensor:
        return self.total

    def reset(self) -> None:
        self.total = torch.zeros(())


def test_metric_is_an_abstract_module() -> None:
    """Metric is a torch Module; compute and reset are abstract."""
    assert issubclass(Metric, torch.nn.Module)
    with pytest.raises(TypeError):
        Metric()  # type: ignore[abstract]


def test_missing_forward_says_to_use_it_as_an_epoch_metric() -> None:
    """An update-only metric called as a batch metric raises a NotImplementedError saying so."""
    metric = SumMetric()
    metric.update(torch.ones(3), torch.ones(3))
    assert metric.compute().item() == 3.0
    with pytest.raises(NotImplementedError, match="epoch_metrics"):
        metric(torch.ones(3), torch.ones(3))


def test_batch_size_of_follows_poutyne_rules() -> None:
    """Tensor length, first tensor of a tuple, dict 'batch_size' or first value, else 1."""
    assert batch_size_of(torch.zeros(4, 2), None) == 4
    assert batch_size_of((torch.zeros(3),), None) == 3
    assert batch_size_of({"batch_size": 7}, None) == 7
    assert batch_size_of({"x": torch.zeros(5)}, None) == 5
    assert batch_size_of(object(), object()) == 1


def test_decomposable_returns_the_output_and_averages_by_batch_size() -> None:
    """forward returns func's output untouched; compute is the size-weighted mean."""
    metric = DecomposableMetric(acc, "acc")
    y_pred = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    out = metric(y_pred, torch.tensor([0, 0, 0]))
    assert out.item() == pytest.approx(200 / 3)
    metric.update(y_pred[:1], torch.tensor([1]))
    assert metric.compute().tolist() == pytest.approx([(200 / 3 * 3 + 0) / 4])
    metric.reset()
    assert torch.isnan(metric.compute()).all()


def test_decomposable_several_names_from_tuple_and_dict() -> None:
    """A function returning a tuple or a dict gives one mean per name, in names order."""
    tup = DecomposableMetric(lambda p, t: (p.sum(), 2.0), ["s", "two"])
    tup.update(torch.ones(2), torch.ones(2))
    assert tup.compute().tolist() == [2.0, 2.0]
    dic = DecomposableMetric(lambda p, t: {"b": 1.0, "a": p.mean()}, ["a", "b"])
    dic.update(torch.full((2,), 3.0), torch.ones(2))
    assert dic.compute().tolist() == [3.0, 1.0]
    with pytest.raises(ConfigurationError, match="3 values for 2"):
        DecomposableMetric(lambda p, t: (1, 2, 3), ["a", "b"]).update(torch.ones(1), None)
    with pytest.raises(ConfigurationError):
        DecomposableMetric(acc, [])


@given(values=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=30), data=st.data())
def test_decomposable_any_batch_split_gives_the_mean(values: list[float], data: st.DataObject) -> None:
    """Over any split into batches, a per-example mean metric gives the whole data's mean."""
    cuts = sorted(data.draw(st.sets(st.integers(1, max(len(values) - 1, 1)), max_size=5)))
    bounds = [0, *[c for c in cuts if c < len(values)], len(values)]
    tensor = torch.tensor(values, dtype=torch.float64)
    metric = DecomposableMetric(lambda p, t: p.mean(), "m")
    for start, stop in itertools.pairwise(bounds):
        if stop > start:
            metric.update(tensor[start:stop], None)
    assert metric.compute().item() == pytest.approx(tensor.mean().item(), rel=1e-9, abs=1e-9)
