"""``WandBLogger``: a training's metrics, learning rates, test results and artifacts logged
to a Weights & Biases run (needs ``pip install wandb``)."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from epochal.callbacks._optional import require
from epochal.callbacks.logger import Logger, is_lr_key

__all__ = ["WandBLogger"]


class WandBLogger(Logger):
    """Log a training to Weights & Biases.

    Each epoch logs ``{'training': {...}}`` (the training logs), ``{'validation': {...}}``
    (the ``val_*`` logs without the prefix) and ``{'params': {'lr': ...}}``, at
    ``step=epoch``; with ``batch_granularity`` batch logs go under
    ``{'training': {'batch': ...}}`` and epoch logs under ``{'training': {'epoch': ...}}`` /
    ``{'validation': {'epoch': ...}}`` without an explicit step. Test logs go under
    ``{'testing': {...}}`` (``test_`` prefix removed) one step after the run's last.

    Args:
        name: The run's display name.
        group: A group of runs.
        config: A configuration dict for the run.
        save_dir: Where W&B writes its files.
        offline: Run offline (sync later).
        run_id: The run's id (to resume a run).
        anonymous: Allow anonymous logging.
        version: Same as ``run_id`` (wins over it).
        project: The project's name.
        experiment: A W&B run to use instead of creating one.
        batch_granularity: Also log each training batch.
        checkpoints_path: A directory logged as the ``Checkpoints`` artifact when training
            ends.
        initial_artifacts_paths: Files or directories logged as an artifact at construction.
        log_gradient_frequency: Have W&B record gradients and parameters every this many
            batches (``run.watch``).
        training_batch_shape: The input shape of a batch, to export the network to ONNX and
            save it in the run when training begins.

    Raises:
        ImportError: ``wandb`` is not installed (``pip install wandb``).
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        group: str | None = None,
        config: dict[str, Any] | None = None,
        save_dir: str | None = None,
        offline: bool | None = False,
        run_id: str | None = None,
        anonymous: bool | None = None,
        version: str | None = None,
        project: str | None = None,
        experiment: Any = None,
        batch_granularity: bool | None = False,
        checkpoints_path: str | None = None,
        initial_artifacts_paths: list[str] | None = None,
        log_gradient_frequency: int | None = None,
        training_batch_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__(batch_granularity=bool(batch_granularity))
        self._wandb = require("wandb", "WandBLogger", "wandb")
        init: dict[str, Any] = {
            "name": name, "group": group, "config": config, "project": project,
            "id": version or run_id, "dir": save_dir, "resume": "allow",
            "anonymous": {True: "allow", False: None}.get(anonymous)
            if anonymous is not None else None,
        }
        if offline:
            init["mode"] = "offline"
        if experiment is not None:
            self.run = experiment
        elif self._wandb.run is not None:
            warnings.warn(
                "WandBLogger: a W&B run is already active; this callback logs to it. Call "
                "wandb.finish() first to start a new run.",
                stacklevel=2,
            )
            self.run = self._wandb.run
        else:
            self.run = self._wandb.init(**init)
        self.run.config.update({"run_id": self.run.id})
        self.log_gradient_frequency = log_gradient_frequency
        self.training_batch_shape = training_batch_shape
        self.checkpoints_path = checkpoints_path
        if initial_artifacts_paths is not None:
            self._log_artifacts(initial_artifacts_paths, "Initial-artifacts", "Miscellaneous")

    def log_config_params(self, config_params: dict[str, Any]) -> None:
        """Add ``config_params`` to the run's configuration."""
        self.run.config.update(config_params)

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        super().on_train_begin(logs)
        if self.log_gradient_frequency is not None:
            self.run.watch(self.model.network, log="all", log_freq=self.log_gradient_frequency)
        if self.training_batch_shape is not None:
            network = self.model.network
            device = next(network.parameters()).device
            path = f"{self.run.dir}/{self.run.name}_model.onnx"
            torch.onnx.export(network, (torch.randn(self.training_batch_shape, device=device),),
                              path)
            self.run.save(path)

    def _log(self, metrics: dict[str, Any], step: int | None) -> None:
        if step is None:
            self.run.log(metrics)
        else:
            self.run.log(metrics, step=step)

    def _on_train_batch_end_write(self, batch_number: int, logs: dict[str, Any]) -> None:
        self._log({"training": {"batch": logs}}, None)

    def _on_epoch_end_write(self, epoch_number: int, logs: dict[str, Any]) -> None:
        train = {k: v for k, v in logs.items() if not k.startswith("val_") and not is_lr_key(k)}
        valid = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
        learning_rates = {k: v for k, v in logs.items() if is_lr_key(k)}
        if self.batch_granularity:
            train_log, valid_log = {"training": {"epoch": train}}, {"validation": {"epoch": valid}}
            step = None
        else:
            train_log, valid_log = {"training": train}, {"validation": valid}
            step = epoch_number
        self._log(train_log, step)
        self._log(valid_log, step)
        self._log({"params": learning_rates}, step)

    def _on_train_end_write(self, logs: dict[str, Any]) -> None:
        if self.checkpoints_path is not None:
            self._log_artifacts([self.checkpoints_path], "Checkpoints", "Model-weights")

    def _log_artifacts(self, paths: list[str], name: str, artifact_type: str) -> None:
        import os

        artifact = self._wandb.Artifact(name=name, type=artifact_type)
        for path in paths:
            if os.path.isdir(path):
                artifact.add_dir(path)
            else:
                artifact.add_file(path)
        self.run.log_artifact(artifact)

    def on_test_end(self, logs: dict[str, Any]) -> None:
        testing = {k.replace("test_", ""): v for k, v in logs.items()}
        self.run.log({"testing": testing}, step=self.run.step + 1)
