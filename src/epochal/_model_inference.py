"""``Model``'s evaluation, prediction and single-batch methods (a private mixin).

:class:`ModelInference` holds Poutyne's ``evaluate*``, ``predict*`` and ``*_on_batch``
methods; :class:`epochal.Model` inherits them, so they are documented on ``Model``. Each pass
runs through the model's driver like a training pass (callbacks' ``on_test_*`` /
``on_predict_*`` hooks, the progress display, the data-parallel layer); a single batch runs
:func:`epochal.core.loop.run_epoch` directly. Nothing here builds a network or an optimizer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from epochal._arrays import (
    ArrayDataset,
    check_positive,
    collect,
    loader_len,
    ordered_loader,
    to_numpy,
)
from epochal._driver import TrainingDriver
from epochal._parallel import DataParallel, ParallelDriver
from epochal.bus import RecordBus
from epochal.callbacks.base import Callback
from epochal.core.batches import cycle_batches, to_device
from epochal.core.loop import run_epoch
from epochal.core.records import EpochRecord, PassPhase
from epochal.core.steps import EpochSetup
from epochal.ports import Attachable

__all__ = ["ModelInference"]


def _loss_and_metrics(loss: float, metrics: list[float]) -> tuple[Any, ...]:
    """Poutyne's ``(loss,)``, ``(loss, metric)`` or ``(loss, array_of_metrics)``."""
    if len(metrics) <= 1:
        return (loss, *metrics)
    return (loss, np.array(metrics))


class ModelInference:
    """The evaluation, prediction and single-batch methods of :class:`~epochal.Model`."""

    # Set by Model.__init__.
    network: nn.Module
    optimizer: torch.optim.Optimizer | None
    loss_function: Callable[..., Any] | None
    metrics_names: list[str]
    batch_metrics_names: list[str]
    _device: torch.device | None  # normalised; Model.device keeps the value as given
    clock: Callable[[], float]
    bus: RecordBus
    _parallel: DataParallel | None
    # Model's wiring, which these methods use.
    _setup: Callable[..., EpochSetup]
    _driver: Callable[[], TrainingDriver]
    _attachments: Callable[..., list[Attachable]]
    _array_dataset: Callable[..., ArrayDataset]

    # ------------------------------------------------------------------ evaluation

    def _evaluate_pass(
        self,
        generator: Iterable[Any],
        *,
        steps: int | None,
        phase: PassPhase,
        collect: bool,
        has_ground_truth: bool,
        verbose: bool,
        callbacks: Sequence[Callback] | None,
        progress_options: Mapping[str, Any] | None = None,
    ) -> tuple[EpochRecord, list[Any], list[Any]]:
        check_positive("steps", steps)
        if self._parallel is not None:  # exact shards, reduced; whole data when collecting
            generator = self._parallel.evaluation_data(generator, phase=phase, collect=collect)
        steps = steps if steps is not None else (loader_len(generator) or None)  # Poutyne
        params = {"steps": steps}
        attachments = self._attachments(list(callbacks or []), params, verbose, progress_options)
        for attachment in attachments:
            attachment.attach(self.bus)
        outputs: list[tuple[Any, Any]] = []
        driver = self._driver()
        try:
            record = driver.run_pass(
                self._setup(loss=phase is not PassPhase.PREDICT),
                cycle_batches(generator, steps, what=phase.value),
                phase=phase,
                epoch=0,
                has_ground_truth=has_ground_truth,
                outputs=outputs if collect else None,
            )
            if isinstance(driver, ParallelDriver):
                driver.finish_call()
        finally:
            for attachment in attachments:
                attachment.detach()
        return record, [p for p, _ in outputs], [t for _, t in outputs]

    def evaluate_generator(
        self,
        generator: Iterable[Any],
        *,
        steps: int | None = None,
        return_pred: bool = False,
        return_ground_truth: bool = False,
        return_dict_format: bool = False,
        concatenate_returns: bool = True,
        convert_to_numpy: bool = True,
        verbose: bool = True,
        progress_options: Mapping[str, Any] | None = None,
        callbacks: Sequence[Callback] | None = None,
    ) -> Any:
        """Evaluate on batches of ``(x, y)`` without gradients, the network in eval mode.

        Args:
            generator: Batches of ``(x, y)``.
            steps: Batches to evaluate (cycling the generator); None: one pass.
            return_pred: Also return the network's outputs.
            return_ground_truth: Also return the targets.
            return_dict_format: Return ``{'time': s, 'test_loss': ..., 'test_<metric>': ...}``
                instead of the loss and metrics.
            concatenate_returns: Concatenate the outputs/targets along the batch dimension;
                else a list with one entry per batch.
            convert_to_numpy: Outputs/targets as NumPy arrays; else as tensors.
            verbose: Show the progress display.
            progress_options: Keywords of ``TqdmProgress``.
            callbacks: ``epochal.Callback`` instances (``on_test_*`` hooks).

        Returns:
            As Poutyne, the loss alone when the model has no metric; else ``(loss, metric)``
            with a float for a single metric or a NumPy array of the metrics in
            ``metrics_names`` order. With ``return_dict_format``, the dict above.
            ``return_pred`` / ``return_ground_truth`` append the outputs / targets (nested
            outputs keep their structure).

        Raises:
            EmptyLoaderError: The loader yields no batch.
            ValueError: No loss function.
        """
        if self.loss_function is None:
            raise ValueError("evaluate needs a loss function; this Model was built without one.")
        record, preds, trues = self._evaluate_pass(
            generator, steps=steps, phase=PassPhase.TEST,
            collect=return_pred or return_ground_truth, has_ground_truth=True,
            verbose=verbose, callbacks=callbacks, progress_options=progress_options,
        )
        if return_dict_format:
            result: tuple[Any, ...] = ({"time": record.duration_s, **record.logs()},)
        else:
            result = _loss_and_metrics(record.loss, [record.metrics[n] for n in self.metrics_names])
        if return_pred:
            result += (collect(preds, concatenate_returns, convert_to_numpy=convert_to_numpy),)
        if return_ground_truth:
            result += (collect(trues, concatenate_returns, convert_to_numpy=convert_to_numpy),)
        return result[0] if len(result) == 1 else result

    def evaluate(
        self,
        x: Any,
        y: Any,
        *,
        batch_size: int = 32,
        return_pred: bool = False,
        return_dict_format: bool = False,
        convert_to_numpy: bool = True,
        callbacks: Sequence[Callback] | None = None,
        verbose: bool = True,
        progress_options: Mapping[str, Any] | None = None,
        dataloader_kwargs: Mapping[str, Any] | None = None,
        return_ground_truth: bool = False,
        concatenate_returns: bool = True,
    ) -> Any:
        """Evaluate on tensors or NumPy arrays (floating ones cast to the network's dtype);
        other keywords and the return value as :meth:`evaluate_generator`
        (``return_ground_truth`` and ``concatenate_returns`` are epochal's additions)."""
        loader = ordered_loader(self._array_dataset(x, y), batch_size, 0, None, dataloader_kwargs)
        return self.evaluate_generator(
            loader, return_pred=return_pred, return_dict_format=return_dict_format,
            return_ground_truth=return_ground_truth, concatenate_returns=concatenate_returns,
            convert_to_numpy=convert_to_numpy, callbacks=callbacks, verbose=verbose,
            progress_options=progress_options,
        )

    def evaluate_dataset(
        self,
        dataset: torch.utils.data.Dataset[Any],
        *,
        batch_size: int = 32,
        steps: int | None = None,
        return_pred: bool = False,
        return_ground_truth: bool = False,
        return_dict_format: bool = False,
        concatenate_returns: bool = True,
        convert_to_numpy: bool = True,
        callbacks: Sequence[Callback] | None = None,
        num_workers: int = 0,
        collate_fn: Callable[..., Any] | None = None,
        dataloader_kwargs: Mapping[str, Any] | None = None,
        verbose: bool = True,
        progress_options: Mapping[str, Any] | None = None,
    ) -> Any:
        """Evaluate on a dataset of ``(x, y)`` (data order kept); ``num_workers``,
        ``collate_fn`` and ``dataloader_kwargs`` build the ``DataLoader``; the rest as
        :meth:`evaluate_generator`."""
        loader = ordered_loader(dataset, batch_size, num_workers, collate_fn, dataloader_kwargs)
        return self.evaluate_generator(
            loader, steps=steps, return_pred=return_pred,
            return_ground_truth=return_ground_truth, return_dict_format=return_dict_format,
            concatenate_returns=concatenate_returns, convert_to_numpy=convert_to_numpy,
            verbose=verbose, progress_options=progress_options, callbacks=callbacks,
        )

    def predict_generator(
        self,
        generator: Iterable[Any],
        *,
        steps: int | None = None,
        has_ground_truth: bool = False,
        return_ground_truth: bool = False,
        concatenate_returns: bool = True,
        convert_to_numpy: bool = True,
        verbose: bool = True,
        progress_options: Mapping[str, Any] | None = None,
        callbacks: Sequence[Callback] | None = None,
    ) -> Any:
        """Network outputs for every batch, without gradients, in eval mode.

        Args:
            generator: Batches of inputs ``x`` (or ``(x, y)`` with ``has_ground_truth``).
            steps: Batches to run (cycling the generator); None: one pass.
            has_ground_truth: Batches are ``(x, y)`` pairs; ``y`` is ignored unless
                ``return_ground_truth``.
            return_ground_truth: Also return the targets; implies ``has_ground_truth``.
            concatenate_returns: Concatenate along the batch dimension; else one entry per
                batch.
            convert_to_numpy: NumPy arrays; else the tensors the network returned.
            verbose, progress_options, callbacks: As :meth:`evaluate_generator`
                (``on_predict_*`` hooks).

        Returns:
            The outputs (nested outputs keep their structure); ``(outputs, targets)`` with
            ``return_ground_truth``.
        """
        if return_ground_truth:
            has_ground_truth = True
        record, preds, trues = self._evaluate_pass(
            generator, steps=steps, phase=PassPhase.PREDICT, collect=True,
            has_ground_truth=has_ground_truth, verbose=verbose, callbacks=callbacks,
            progress_options=progress_options,
        )
        del record
        out = collect(preds, concatenate_returns, convert_to_numpy=convert_to_numpy)
        if return_ground_truth:
            return out, collect(trues, concatenate_returns, convert_to_numpy=convert_to_numpy)
        return out

    def predict(
        self,
        x: Any,
        *,
        batch_size: int = 32,
        convert_to_numpy: bool = True,
        verbose: bool = True,
        progress_options: Mapping[str, Any] | None = None,
        callbacks: Sequence[Callback] | None = None,
        dataloader_kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        """Predict on tensors or NumPy arrays (floating ones cast to the network's dtype);
        keywords and the return value as :meth:`predict_generator`."""
        loader = ordered_loader(
            self._array_dataset(x, names=("x",)), batch_size, 0, None, dataloader_kwargs
        )
        return self.predict_generator(
            loader, convert_to_numpy=convert_to_numpy, verbose=verbose,
            progress_options=progress_options, callbacks=callbacks,
        )

    def predict_dataset(
        self,
        dataset: torch.utils.data.Dataset[Any],
        *,
        batch_size: int = 32,
        steps: int | None = None,
        has_ground_truth: bool = False,
        return_ground_truth: bool = False,
        concatenate_returns: bool = True,
        convert_to_numpy: bool = True,
        num_workers: int = 0,
        collate_fn: Callable[..., Any] | None = None,
        verbose: bool = True,
        progress_options: Mapping[str, Any] | None = None,
        callbacks: Sequence[Callback] | None = None,
        dataloader_kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        """Predict on a dataset (data order kept); ``num_workers``, ``collate_fn`` and
        ``dataloader_kwargs`` build the ``DataLoader``; the rest as :meth:`predict_generator`."""
        loader = ordered_loader(dataset, batch_size, num_workers, collate_fn, dataloader_kwargs)
        return self.predict_generator(
            loader, steps=steps, has_ground_truth=has_ground_truth,
            return_ground_truth=return_ground_truth, concatenate_returns=concatenate_returns,
            convert_to_numpy=convert_to_numpy, verbose=verbose,
            progress_options=progress_options, callbacks=callbacks,
        )

    # ------------------------------------------------------------------ single batches

    def preprocess_input(self, x: Any, y: Any = None) -> Any:
        """Convert NumPy arrays to tensors and move them to the model's device, as the
        training loop does before calling the network.

        Returns:
            ``(x, y)`` when ``y`` is given, else ``x``; ``x`` as a tuple of the network's
            positional arguments (a single input becomes a 1-tuple), as Poutyne.
        """
        x = to_device(x, self._device)
        x = tuple(x) if isinstance(x, (tuple, list)) else (x,)
        if y is None:
            return x
        return x, to_device(y, self._device)

    def train_on_batch(
        self, x: Any, y: Any, *, return_pred: bool = False, return_dict_format: bool = False,
        convert_to_numpy: bool = True,
    ) -> Any:
        """One optimizer step on one batch.

        Returns:
            As Poutyne, the loss and the *batch* metrics of that batch (train mode): the
            loss alone without batch metric, ``(loss, metric)`` for one, ``(loss, array)``
            for several; with ``return_dict_format`` a dict ``{'loss': ..., '<metric>': ...}``
            (no prefix). ``return_pred`` appends the output (NumPy unless
            ``convert_to_numpy=False``).
        """
        if self.optimizer is None or self.loss_function is None:
            raise ValueError("train_on_batch needs an optimizer and a loss function.")
        return self._on_batch(PassPhase.TRAIN, x, y, return_pred, return_dict_format,
                              convert_to_numpy)

    def evaluate_on_batch(
        self, x: Any, y: Any, *, return_pred: bool = False, return_dict_format: bool = False,
        convert_to_numpy: bool = True,
    ) -> Any:
        """Loss and batch metrics on one batch without gradients (eval mode); returns as
        :meth:`train_on_batch` (dict keys ``loss`` and ``<metric>``, no prefix)."""
        if self.loss_function is None:
            raise ValueError("evaluate_on_batch needs a loss function.")
        return self._on_batch(PassPhase.TEST, x, y, return_pred, return_dict_format,
                              convert_to_numpy)

    def _on_batch(
        self, phase: PassPhase, x: Any, y: Any, return_pred: bool, return_dict_format: bool,
        convert_to_numpy: bool,
    ) -> Any:
        outputs: list[tuple[Any, Any]] = []
        *_, record = run_epoch(
            self._setup(), [(x, y)], phase=phase, epoch=0, clock=self.clock, outputs=outputs,
        )
        assert isinstance(record, EpochRecord)
        names = self.batch_metrics_names
        if return_dict_format:
            result: tuple[Any, ...] = (
                {"loss": record.loss, **{n: record.metrics[n] for n in names}},
            )
        else:
            result = _loss_and_metrics(record.loss, [record.metrics[n] for n in names])
        if return_pred:
            pred = outputs[0][0]
            result += (to_numpy(pred) if convert_to_numpy else pred,)
        return result[0] if len(result) == 1 else result

    def predict_on_batch(self, x: Any, *, convert_to_numpy: bool = True) -> Any:
        """Network output for one batch of inputs (eval mode, no gradients), as NumPy
        arrays unless ``convert_to_numpy=False``."""
        outputs: list[tuple[Any, Any]] = []
        list(
            run_epoch(
                self._setup(loss=False), [x], phase=PassPhase.PREDICT, epoch=0,
                clock=self.clock, has_ground_truth=False, outputs=outputs,
            )
        )
        pred = outputs[0][0]
        return to_numpy(pred) if convert_to_numpy else pred
