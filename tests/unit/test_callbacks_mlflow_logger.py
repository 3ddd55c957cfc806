"""MLFlowLogger, driven through a stand-in ``mlflow.tracking`` module that records the client
calls (mlflow itself is an optional dependency), and its ImportError without mlflow."""

from __future__ import annotations

import sys
import types
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from epochal import Model
from epochal.callbacks.mlflow_logger import MLFlowLogger
from epochal.exceptions import ConfigurationError


class _Client:
    instances: ClassVar[list[_Client]] = []

    def __init__(self, tracking_uri: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.calls: list[tuple[Any, ...]] = []
        self.experiments: dict[str, str] = {"existing": "7"}
        _Client.instances.append(self)

    def get_experiment_by_name(self, name):
        if name in self.experiments:
            return types.SimpleNamespace(experiment_id=self.experiments[name])
        return None

    def create_experiment(self, name):
        self.calls.append(("create_experiment", name))
        return "1"

    def create_run(self, experiment_id):
        self.calls.append(("create_run", experiment_id))
        return types.SimpleNamespace(info=types.SimpleNamespace(run_id="run-1"))

    def set_tag(self, run_id, key, value):
        self.calls.append(("set_tag", key))

    def log_param(self, run_id, key, value):
        self.calls.append(("log_param", key, value))

    def log_metric(self, run_id, key, value, step=None):
        self.calls.append(("log_metric", key, value, step))

    def set_terminated(self, run_id, status):
        self.calls.append(("set_terminated", status))


@pytest.fixture
def fake_mlflow(monkeypatch):
    mlflow = types.ModuleType("mlflow")
    tracking = types.ModuleType("mlflow.tracking")
    tracking.MlflowClient = _Client  # type: ignore[attr-defined]
    mlflow.tracking = tracking  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", tracking)
    _Client.instances.clear()
    return _Client


def _fit(callback, epochs=2):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 2, generator=g), torch.randn(8, 1, generator=g)
    data = [(x[:4], y[:4]), (x[4:], y[4:])]
    model = Model(nn.Linear(2, 1), "sgd", nn.MSELoss())
    history = model.fit_generator(data, data, epochs=epochs, verbose=False, callbacks=[callback])
    model.evaluate_generator(data, verbose=False, callbacks=[callback])
    return history


def test_logs_epochs_last_epoch_tests_and_statuses(fake_mlflow):
    """Epoch metrics at step=epoch (epoch and lr excluded, as in Poutyne), last-epoch, test metrics,
    and the run terminated FINISHED after training and after testing."""
    logger = MLFlowLogger(experiment_name="existing", tracking_uri="file:///tmp/x")
    client = fake_mlflow.instances[0]
    assert ("create_run", "7") in client.calls and client.tracking_uri == "file:///tmp/x"
    history = _fit(logger)
    metrics = [c for c in client.calls if c[0] == "log_metric"]
    assert ("log_metric", "val_loss", history[1]["val_loss"], 2) in metrics
    assert ("log_metric", "loss", history[0]["loss"], 1) in metrics
    assert not any(c[1] in ("epoch", "lr") for c in metrics)
    assert ("log_metric", "last-epoch", 2, None) in metrics
    assert any(c[1] == "test_loss" for c in metrics)
    statuses = [c[1] for c in client.calls if c[0] == "set_terminated"]
    assert statuses == ["FINISHED", "FAILED", "FINISHED"]


def test_new_experiment_and_config_params(fake_mlflow):
    """An unknown experiment name is created; nested config is flattened to a.b / a.0."""
    logger = MLFlowLogger(experiment_name="new")
    logger.log_config_params({"optim": {"lr": 0.1}, "layers": [3, 4]})
    calls = fake_mlflow.instances[0].calls
    assert ("create_experiment", "new") in calls
    assert ("log_param", "optim.lr", 0.1) in calls and ("log_param", "layers.1", 4) in calls


def test_run_id_with_experiment_is_refused(fake_mlflow):
    """A run id together with an experiment name is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="not both"):
        MLFlowLogger(experiment_name="e", run_id="r")


def test_without_mlflow_the_error_names_the_package(monkeypatch):
    """Without mlflow installed, constructing it raises ImportError with the pip command."""
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(ImportError, match="pip install mlflow"):
        MLFlowLogger(experiment_name="e")
