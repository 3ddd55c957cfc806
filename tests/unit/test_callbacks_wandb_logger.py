"""WandBLogger, driven through a stand-in ``wandb`` module that records the run's calls
(wandb itself is an optional dependency), and its ImportError without wandb."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
import torch
from torch import nn

from epochal import Model
from epochal.callbacks.wandb_logger import WandBLogger


class _Run:
    def __init__(self, **init: Any) -> None:
        self.init = init
        self.id = "run-9"
        self.step = 0
        self.logged: list[tuple[dict[str, Any], int | None]] = []
        self.config = types.SimpleNamespace(values={}, update=lambda d: self.config.values.update(d))
        self.watched: list[Any] = []
        self.artifacts: list[Any] = []

    def log(self, metrics, step=None):
        self.logged.append((metrics, step))
        if step is not None:
            self.step = step

    def watch(self, network, log, log_freq):
        self.watched.append((network, log, log_freq))

    def log_artifact(self, artifact):
        self.artifacts.append(artifact)


class _Artifact:
    def __init__(self, name, type):
        self.name, self.type, self.files = name, type, []

    def add_file(self, path):
        self.files.append(path)

    def add_dir(self, path):
        self.files.append(path + "/")


@pytest.fixture
def fake_wandb(monkeypatch):
    module = types.ModuleType("wandb")
    module.run = None  # type: ignore[attr-defined]
    module.init = lambda **init: _Run(**init)  # type: ignore[attr-defined]
    module.Artifact = _Artifact  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


def _fit(callback):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 2, generator=g), torch.randn(8, 1, generator=g)
    data = [(x[:4], y[:4]), (x[4:], y[4:])]
    model = Model(nn.Linear(2, 1), "sgd", nn.MSELoss())
    history = model.fit_generator(data, data, epochs=2, verbose=False, callbacks=[callback])
    model.evaluate_generator(data, verbose=False, callbacks=[callback])
    return history


def test_epoch_validation_lr_and_test_logs(fake_wandb, tmp_path):
    """Each epoch logs training, validation (prefix removed) and params (lr) at step=epoch;
    tests log under 'testing' one step later; the checkpoints directory is an artifact."""
    logger = WandBLogger(name="n", project="p", offline=True, run_id="r1",
                         checkpoints_path=str(tmp_path), log_gradient_frequency=5)
    run = logger.run
    assert run.init["mode"] == "offline" and run.init["id"] == "r1"
    assert run.config.values == {"run_id": "run-9"}
    history = _fit(logger)
    assert any(m.get("validation", {}).get("loss") == history[1]["val_loss"] and s == 2
               for m, s in run.logged)
    assert ({"params": {"lr": 0.01}}, 1) in run.logged
    training = next(m["training"] for m, s in run.logged if "training" in m and s == 1)
    assert training["loss"] == history[0]["loss"] and "lr" not in training
    assert run.logged[-1][1] == 3 and "loss" in run.logged[-1][0]["testing"]
    assert run.watched and run.watched[0][2] == 5
    assert run.artifacts[0].name == "Checkpoints"


def test_batch_granularity_logs_batches_without_step(fake_wandb):
    """With batch_granularity, batch logs go under training/batch and epochs have no step."""
    logger = WandBLogger(batch_granularity=True)
    _fit(logger)
    assert any("batch" in m.get("training", {}) and s is None for m, s in logger.run.logged)
    assert any("epoch" in m.get("validation", {}) and s is None for m, s in logger.run.logged)


def test_without_wandb_the_error_names_the_package(monkeypatch):
    """Without wandb installed, constructing it raises ImportError with the pip command."""
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ImportError, match="pip install wandb"):
        WandBLogger()
