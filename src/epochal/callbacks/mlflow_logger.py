"""``MLFlowLogger``: parameters, epoch (and batch) metrics and test results of a training,
logged to an MLflow run (needs ``pip install mlflow``)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from epochal.callbacks._optional import require
from epochal.callbacks.logger import Logger
from epochal.exceptions import ConfigurationError

__all__ = ["MLFlowLogger"]


def _git_commit(directory: str) -> str | None:
    """The commit checked out in ``directory``'s Git repository, or None (no Git, no
    repository)."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, check=True,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


class MLFlowLogger(Logger):
    """Log a training to MLflow: one run, in an experiment found or created by name.

    Epoch metrics are logged with ``step=epoch`` (every key but ``epoch`` and the learning
    rates, as Poutyne does); with ``batch_granularity`` batch metrics with ``step=batch``; at the end of
    training ``last-epoch`` (``params['epochs']``); at the end of testing the test logs. The
    run's status is ``FAILED`` until a training or test ends normally, ``FINISHED`` then;
    with ``terminate_on_end`` the run is terminated with that status each time. The Git
    commit of the working directory, when there is one, is the run's
    ``mlflow.source.git.commit`` tag.

    Args:
        experiment_name: The experiment's name (created when missing). Not with
            ``experiment_id``.
        experiment_id: The experiment's id. Not with ``experiment_name``.
        run_id: Continue this run instead of creating one. Not with an experiment.
        tracking_uri: MLflow's tracking URI (``http://host:port`` or a directory); None for
            MLflow's default (``./mlruns``).
        batch_granularity: Also log each training batch's metrics.
        terminate_on_end: Terminate the run when training or testing ends.

    Raises:
        ImportError: ``mlflow`` is not installed (``pip install mlflow``).
        ConfigurationError: Both ``experiment_name`` and ``experiment_id``, or ``run_id``
            with either.
    """

    def __init__(
        self,
        *,
        experiment_name: str | None = None,
        experiment_id: str | None = None,
        run_id: str | None = None,
        tracking_uri: str | None = None,
        batch_granularity: bool = False,
        terminate_on_end: bool = True,
    ) -> None:
        super().__init__(batch_granularity=batch_granularity)
        tracking = require("mlflow.tracking", "MLFlowLogger", "mlflow")
        if run_id is not None and (experiment_name is not None or experiment_id is not None):
            raise ConfigurationError(
                "MLFlowLogger: give an experiment name/id or a run id, not both."
            )
        if experiment_name is not None and experiment_id is not None:
            raise ConfigurationError(
                "MLFlowLogger: give the experiment's name or its id, not both."
            )
        self.tracking = tracking_uri
        self.ml_flow_client = tracking.MlflowClient(tracking_uri=tracking_uri)
        if run_id is None:
            experiment_id = self._experiment_id(experiment_name, experiment_id)
            run_id = self.ml_flow_client.create_run(experiment_id=experiment_id).info.run_id
        self.run_id: str = run_id
        commit = _git_commit(os.getcwd())
        if commit is not None:
            self.ml_flow_client.set_tag(self.run_id, "mlflow.source.git.commit", commit)
        self.terminate_on_end = terminate_on_end
        self._status = "FAILED"

    def _experiment_id(self, name: str | None, experiment_id: str | None) -> Any:
        if experiment_id is not None:
            return experiment_id
        existing = self.ml_flow_client.get_experiment_by_name(name) if name else None
        if existing is not None:
            return existing.experiment_id
        return self.ml_flow_client.create_experiment(name)

    # -- logging API

    def log_config_params(self, config_params: Mapping[str, Any], **kwargs: Any) -> None:
        """Log a (nested) configuration as parameters: ``a.b`` for mappings, ``a.0`` for
        sequences."""
        for name, element in config_params.items():
            self._log_config_write(name, element, **kwargs)

    def _log_config_write(self, parent: str, element: Any, **kwargs: Any) -> None:
        if isinstance(element, Mapping):
            for key, value in element.items():
                self._log_config_write(f"{parent}.{key}", value, **kwargs)
        elif isinstance(element, Sequence) and not isinstance(element, str):
            for index, value in enumerate(element):
                self._log_config_write(f"{parent}.{index}", value, **kwargs)
        else:
            self.log_param(parent, element, **kwargs)

    def log_params(self, params: Mapping[str, Any], **kwargs: Any) -> None:
        """Log several parameters."""
        for key, value in params.items():
            self.log_param(key, value, **kwargs)

    def log_metrics(self, metrics: Mapping[str, float], **kwargs: Any) -> None:
        """Log several metrics (``step=`` may be given)."""
        for key, value in metrics.items():
            self.log_metric(key, value, **kwargs)

    def log_param(self, param_name: str, value: Any, **kwargs: Any) -> None:
        """Log one parameter of the run."""
        self.ml_flow_client.log_param(run_id=self.run_id, key=param_name, value=value, **kwargs)

    def log_metric(self, metric_name: str, value: float, **kwargs: Any) -> None:
        """Log one metric value of the run (``step=`` may be given)."""
        self.ml_flow_client.log_metric(run_id=self.run_id, key=metric_name, value=float(value),
                                       **kwargs)

    # -- hooks

    def _on_train_batch_end_write(self, batch_number: int, logs: dict[str, Any]) -> None:
        for key, value in logs.items():
            self.log_metric(key, value, step=batch_number)

    def _on_epoch_end_write(self, epoch_number: int, logs: dict[str, Any]) -> None:
        from epochal.callbacks.logger import is_lr_key

        for key, value in logs.items():
            if key != "epoch" and not is_lr_key(key):
                self.log_metric(key, value, step=epoch_number)

    def on_train_end(self, logs: dict[str, Any]) -> None:
        self.log_metric("last-epoch", self.params.get("epochs", 0))
        self._status = "FINISHED"
        self._terminate()

    def on_test_begin(self, logs: dict[str, Any]) -> None:
        self._status = "FAILED"
        self._terminate()

    def on_test_end(self, logs: dict[str, Any]) -> None:
        if logs:
            for key, value in logs.items():
                self.log_metric(key, value)
            self._status = "FINISHED"
        self._terminate()

    def _terminate(self) -> None:
        if self.terminate_on_end:
            self.ml_flow_client.set_terminated(self.run_id, status=self._status)
