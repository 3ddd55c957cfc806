"""Experiment: Poutyne's older name for ModelBundle.from_network."""

from __future__ import annotations

import inspect

import pytest
import torch

from epochal import Experiment, ModelBundle
from epochal.exceptions import ConfigurationError
from epochal.testing import MemoryCheckpointStore


def test_experiment_builds_a_bundle_with_task_defaults():
    """Experiment(directory, network, task='classif') is a ModelBundle monitoring val_acc max."""
    bundle = Experiment(MemoryCheckpointStore(), torch.nn.Linear(4, 3), task="classif")
    assert isinstance(bundle, ModelBundle)
    assert (bundle.monitor_metric, bundle.monitor_mode, bundle.monitoring) == (
        "val_acc", "max", True)


def test_experiment_regression_and_explicit_monitor():
    """task='regr' defaults to val_loss min; explicit monitor arguments win."""
    bundle = Experiment(MemoryCheckpointStore(), torch.nn.Linear(4, 1), task="regr")
    assert (bundle.monitor_metric, bundle.monitor_mode) == ("val_loss", "min")
    bundle = Experiment(MemoryCheckpointStore(), torch.nn.Linear(4, 1), task="regr",
                        monitor_metric="loss", monitor_mode="min")
    assert bundle.monitor_metric == "loss"
    off = Experiment(MemoryCheckpointStore(), torch.nn.Linear(4, 1), task="regr",
                     monitoring=False)
    assert (off.monitoring, off.monitor_metric) == (False, None)


def test_experiment_without_a_loss_builds_but_cannot_train():
    """Without loss function and task the bundle is built with no loss (Poutyne's, for
    inference); train refuses before any step, naming loss_function and task."""
    store = MemoryCheckpointStore()
    bundle = Experiment(store, torch.nn.Linear(4, 1))
    assert bundle.model.loss_function is None
    data = [(torch.zeros(2, 4), torch.zeros(2, 1))]
    with pytest.raises(ConfigurationError, match=r"loss_function=.*task="):
        bundle.train(data, epochs=1, verbose=False)
    assert store.blobs == {}


def test_experiment_takes_poutynes_from_network_parameters():
    """Every parameter of Poutyne's ModelBundle.from_network is accepted by Experiment."""
    poutyne = pytest.importorskip("poutyne")
    theirs = set(inspect.signature(poutyne.ModelBundle.from_network).parameters) - {"cls"}
    ours = set(inspect.signature(Experiment).parameters)
    assert theirs <= ours


def test_experiment_passes_precision_and_compile_on():
    """``Experiment(..., precision=, compile=)`` builds its Model with them, and refuses an
    unknown precision like Model does."""
    bundle = Experiment(MemoryCheckpointStore(), torch.nn.Linear(4, 2), task="classif",
                        precision="bf16-mixed", compile=True)
    assert bundle.model.precision == "bf16-mixed"
    assert bundle.model.forward_network is not bundle.model.network
    with pytest.raises(ConfigurationError, match="Unknown precision"):
        Experiment(MemoryCheckpointStore(), torch.nn.Linear(4, 2), task="classif",
                   precision="fp8")
