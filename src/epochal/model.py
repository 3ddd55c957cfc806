"""``Model``: Poutyne's training API, composed from the functional core, the bus and adapters.

Code written for Poutyne's ``Model`` runs after changing only the import line. The loops
themselves live in :mod:`epochal.core.loop`; this class resolves names, moves data, publishes
records on its bus and turns them into Poutyne's return values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from epochal.bus import RecordBus
from epochal.callbacks.base import Callback, CallbackBusAdapter, CallbackList
from epochal.core.batches import cycle_batches, to_tensor
from epochal.core.directives import StopTraining
from epochal.core.loop import EpochSetup, run_epoch
from epochal.core.metrics import (
    BatchMetric,
    EpochMetricState,
    check_unique_names,
    resolve_loss,
    resolve_metrics,
)
from epochal.core.records import (
    BackwardEnd,
    EpochBegin,
    EpochEnd,
    EpochRecord,
    PassPhase,
    PhaseBegin,
    StepBegin,
    StepRecord,
    TrainBegin,
    TrainEnd,
)
from epochal.exceptions import ConfigurationError
from epochal.metrics import metric_registry
from epochal.optimizers import check_optimizer_parameters, resolve_optimizer
from epochal.ports import Attachable

__all__ = ["Model"]

PathOrFile = str | BinaryIO


def _loader_len(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def _check_positive(name: str, value: int | None, *, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive int; got {value!r}.")


def _no_shuffle(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """DataLoader keywords for an evaluation loader: the user's, except ``shuffle``
    (evaluation and prediction keep the data order, as in Poutyne)."""
    return {k: v for k, v in dict(options or {}).items() if k != "shuffle"}


def _ordered_loader(
    dataset: Any,
    batch_size: int,
    num_workers: int,
    collate_fn: Callable[..., Any] | None,
    dataloader_kwargs: Mapping[str, Any] | None,
) -> torch.utils.data.DataLoader[Any]:
    """A DataLoader for evaluation or prediction: the data order kept, the user's keywords
    winning over ours (but ``shuffle``)."""
    _check_positive("batch_size", batch_size, allow_none=False)
    options: dict[str, Any] = {"batch_size": batch_size, "num_workers": num_workers}
    if collate_fn is not None:
        options["collate_fn"] = collate_fn
    return torch.utils.data.DataLoader(dataset, **{**options, **_no_shuffle(dataloader_kwargs)})


def _concat(outputs: list[Any]) -> Any:
    first = outputs[0]
    if isinstance(first, torch.Tensor):
        if first.dim() == 0:
            return torch.stack(outputs).cpu().numpy()
        return torch.cat(outputs, dim=0).cpu().numpy()
    if isinstance(first, (tuple, list)):
        return type(first)(_concat([o[i] for o in outputs]) for i in range(len(first)))
    if isinstance(first, Mapping):
        return {k: _concat([o[k] for o in outputs]) for k in first}
    return outputs


def _to_numpy(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.cpu().numpy()
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to_numpy(o) for o in obj)
    if isinstance(obj, Mapping):
        return {k: _to_numpy(v) for k, v in obj.items()}
    return obj


def _collect(outputs: list[Any], concatenate: bool) -> Any:
    """Per-batch outputs as NumPy: concatenated along the batch dimension, or one per batch."""
    return _concat(outputs) if concatenate else _to_numpy(outputs)


class _ArrayDataset(torch.utils.data.Dataset[Any]):
    """Examples ``i`` of nested tensors/arrays (tuples, lists, dicts), for ``fit(x, y)``."""

    def __init__(self, *parts: Any) -> None:
        self.parts = [to_tensor(p) for p in parts]
        lengths = {self._len(p) for p in self.parts if p is not None}
        if len(lengths) != 1:
            raise ValueError(
                f"x and y must have the same number of examples (first dimension); got "
                f"{sorted(lengths)}."
            )
        self.length = lengths.pop()

    @classmethod
    def _len(cls, obj: Any) -> int:
        if isinstance(obj, torch.Tensor):
            return int(obj.shape[0])
        if isinstance(obj, (tuple, list)):
            return cls._len(obj[0])
        if isinstance(obj, Mapping):
            return cls._len(next(iter(obj.values())))
        raise TypeError(f"expected tensors or NumPy arrays; got {type(obj).__name__}")

    @classmethod
    def _index(cls, obj: Any, i: int) -> Any:
        if isinstance(obj, torch.Tensor):
            return obj[i]
        if isinstance(obj, (tuple, list)):
            return type(obj)(cls._index(o, i) for o in obj)
        if isinstance(obj, Mapping):
            return {k: cls._index(v, i) for k, v in obj.items()}
        return obj

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Any:
        items = tuple(self._index(p, i) for p in self.parts)
        return items if len(items) > 1 else items[0]


class Model:
    """A network, its optimizer, loss and metrics, trained with Poutyne's API.

    Args:
        network: The ``torch.nn.Module`` to train.
        optimizer: A ``torch.optim.Optimizer`` over the network's parameters, a name
            (``'sgd'``, ``'adam'``, ... with PyTorch's defaults, SGD ``lr=0.01``), a dict
            ``{'optim': 'adam', 'lr': 1e-3}``, or None for evaluation/prediction only.
        loss_function: ``(y_pred, y_true) -> 0-dim tensor``, or a PyTorch loss name
            (``'cross_entropy'``, ``'mse'``, ``'bce_with_logits'``, ...). None for prediction
            only.
        batch_metrics: Metrics averaged over batches, weighted by batch size (``'accuracy'``,
            ``'bin_acc'``, ``'top5'``, loss names, callables, ``(name, metric)`` tuples).
        epoch_metrics: Metrics computed once per pass (``'f1'``, ``'precision'``,
            ``'recall'``, objects with ``update/compute/reset`` such as torchmetrics').
        device: Where the network and batches go (``'cpu'``, ``'cuda:0'``, a
            ``torch.device``); None leaves the network where it is and moves no batch.

    Attributes:
        bus: The :class:`epochal.RecordBus` this model publishes its records on; subscribe
            your own sinks to it (they stay subscribed across calls).
        stop_training: Set to True (e.g. from a callback) to stop at the end of the current
            step. Cleared at the start of every ``fit*`` call.
        clock: Seconds, monotonic; ``time.perf_counter`` unless replaced (tests inject a fake).

    Raises:
        TypeError: ``network`` is not an ``nn.Module`` or an argument has the wrong type.
        ConfigurationError: Unknown optimizer, loss or metric name (the message lists valid
            names); optimizer parameters that do not belong to the network; duplicate metric
            names.
    """

    def __init__(
        self,
        network: nn.Module,
        optimizer: torch.optim.Optimizer | str | Mapping[str, Any] | None,
        loss_function: Callable[..., Any] | str | None,
        *,
        batch_metrics: Sequence[Any] | None = None,
        epoch_metrics: Sequence[Any] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(network, nn.Module):
            raise TypeError(
                f"network must be a torch.nn.Module; got {type(network).__name__}."
            )
        self.network = network
        self.optimizer = resolve_optimizer(optimizer, network)
        if self.optimizer is not None:
            check_optimizer_parameters(self.optimizer, network)
        self.loss_function = None if loss_function is None else resolve_loss(loss_function)
        resolved = resolve_metrics(batch_metrics, epoch_metrics, registry=metric_registry())
        self.batch_metrics: list[BatchMetric] = list(resolved.batch)
        self.epoch_metrics: list[EpochMetricState] = list(resolved.epoch)
        names = [*resolved.batch_names, *resolved.epoch_names]
        check_unique_names(names, reserved=("loss", "epoch", "time", "lr"))
        self.batch_metrics_names = list(resolved.batch_names)
        self.epoch_metrics_names = list(resolved.epoch_names)
        self.metrics_names = names
        self.bus = RecordBus()
        self.stop_training = False
        self.clock: Callable[[], float] = time.perf_counter
        self.device: torch.device | None = None
        self._global_step = 0
        #: Keys of the epoch logs the current (or last) ``fit`` writes; set when ``fit``
        #: starts, before ``on_train_begin``, so callbacks can check their monitor keys.
        self.epoch_log_keys: tuple[str, ...] = ()
        #: False while handling the ``on_epoch_end`` of an epoch a stop request cut short.
        self.epoch_complete = True
        if device is not None:
            self.to(device)

    # ------------------------------------------------------------------ plumbing

    def _setup(self, *, batches_per_step: int = 1, loss: bool = True) -> EpochSetup:
        return EpochSetup(
            network=self.network,
            loss_function=self.loss_function if loss else None,
            batch_metrics=tuple(self.batch_metrics) if loss else (),
            epoch_metrics=tuple(self.epoch_metrics) if loss else (),
            device=self.device,
            optimizer=self.optimizer,
            batches_per_step=batches_per_step,
        )

    def _publish(self, record: Any) -> None:
        self._apply(self.bus.publish(record))

    def _apply(self, directives: list[Any]) -> None:
        for directive in directives:
            if isinstance(directive, StopTraining):
                self.stop_training = True

    def _attachments(
        self,
        callbacks: Sequence[Callback] | None,
        params: dict[str, Any],
        verbose: bool,
        progress_options: Mapping[str, Any] | None,
    ) -> list[Attachable]:
        attachments: list[Attachable] = []
        if verbose:
            from epochal_adapters.progress import TqdmProgress

            attachments.append(TqdmProgress(**dict(progress_options or {})))
        if callbacks:
            callback_list = CallbackList(callbacks)
            callback_list.set_params(dict(params))
            callback_list.set_model(self)
            attachments.append(CallbackBusAdapter(callback_list))
        return attachments

    def _run_pass(
        self,
        setup: EpochSetup,
        batches: Iterable[Any],
        *,
        phase: PassPhase,
        epoch: int,
        has_ground_truth: bool = True,
        on_outputs: Callable[[Any, Any], None] | None = None,
    ) -> EpochRecord:
        bus = self.bus
        self._publish(PhaseBegin(phase=phase, epoch=epoch))
        before_step = None
        if bus.has_subscribers(StepBegin):

            def before_step(step: int) -> None:
                self._publish(StepBegin(phase=phase, epoch=epoch, step=step))

        before_optimizer_step = None
        if phase is PassPhase.TRAIN and bus.has_subscribers(BackwardEnd):

            def before_optimizer_step(step: int) -> None:
                self._publish(BackwardEnd(epoch=epoch, step=step))

        publish_steps = bus.has_subscribers(StepRecord)
        records = run_epoch(
            setup,
            batches,
            phase=phase,
            epoch=epoch,
            clock=self.clock,
            global_step=self._global_step,
            has_ground_truth=has_ground_truth,
            before_step=before_step,
            before_optimizer_step=before_optimizer_step,
            should_stop=(lambda: self.stop_training) if phase is PassPhase.TRAIN else None,
            on_outputs=on_outputs,
            emit_steps=publish_steps,
        )
        epoch_record: EpochRecord | None = None
        publish = bus.publish
        for record in records:
            if type(record) is StepRecord:
                directives = publish(record)
                if directives:
                    self._apply(directives)
            else:
                assert isinstance(record, EpochRecord)
                epoch_record = record
        assert epoch_record is not None
        if phase is PassPhase.TRAIN:
            self._global_step += epoch_record.steps
        self._publish(epoch_record)
        return epoch_record

    @property
    def global_step(self) -> int:
        """Training batches run so far (across ``fit`` calls), updated at the end of each
        training pass (a step record carries the running count); a resumed training sets it."""
        return self._global_step

    @global_step.setter
    def global_step(self, value: int) -> None:
        self._global_step = int(value)

    def log_keys(self, *, with_validation: bool) -> tuple[str, ...]:
        """The keys of the epoch logs ``fit`` writes, in order: ``epoch``, ``time``,
        ``loss``, the metrics, then ``val_loss`` and ``val_<metric>`` when validating, then
        ``lr`` (or ``lr_group_<i>``)."""
        keys = ["epoch", "time", "loss", *self.metrics_names]
        if with_validation:
            keys += ["val_loss", *(f"val_{n}" for n in self.metrics_names)]
        keys += list(self.learning_rates())
        return tuple(keys)

    def learning_rates(self) -> dict[str, float]:
        """The optimizer's current learning rates: ``{'lr': x}`` for one parameter group,
        ``{'lr_group_0': x0, ...}`` for several, ``{}`` without an optimizer (the
        :class:`~epochal.ports.TrainingContext` port)."""
        if self.optimizer is None:
            return {}
        groups = self.optimizer.param_groups
        if len(groups) == 1:
            return {"lr": float(groups[0]["lr"])}
        return {f"lr_group_{i}": float(g["lr"]) for i, g in enumerate(groups)}

    # ------------------------------------------------------------------ training

    def fit_generator(
        self,
        train_generator: Iterable[Any],
        valid_generator: Iterable[Any] | None = None,
        *,
        epochs: int = 1000,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        batches_per_step: int = 1,
        initial_epoch: int = 1,
        verbose: bool = True,
        progress_options: Mapping[str, Any] | None = None,
        callbacks: Sequence[Callback] | None = None,
    ) -> list[dict[str, Any]]:
        """Train on batches from ``train_generator``, validating on ``valid_generator`` after
        each epoch.

        Args:
            train_generator: Any iterable of ``(x, y)`` batches (a ``DataLoader``, a list);
                iterated once per epoch (``iter()`` is called once per pass, as a ``for``
                loop would).
            valid_generator: Batches for validation, or None.
            epochs: Last epoch to run (1-based, inclusive).
            steps_per_epoch: Training batches per epoch; more than the loader holds cycles
                it (a new pass starts), fewer ends the epoch early. None: one full pass.
            validation_steps: Validation batches per epoch, likewise.
            batches_per_step: Batches whose gradients are accumulated into one optimizer step,
                normalised by their total sample count (equal to one step on the
                concatenated batch for mean-reduced losses); a trailing partial group is
                stepped at the epoch's end.
            initial_epoch: First epoch to run (to continue a previous training).
            verbose: Show the progress display (tqdm on a terminal, plain lines otherwise).
            progress_options: Keyword arguments of ``epochal_adapters.progress.TqdmProgress``
                (``coloring``, ``progress_bar``, ...).
            callbacks: ``epochal.Callback`` instances.

        Returns:
            The history: one dict per epoch with ``epoch``, ``time`` (seconds), ``loss``, the
            metrics, ``val_loss`` and ``val_<metric>`` (when validating), and ``lr`` (or
            ``lr_group_<i>`` for several parameter groups).

        Raises:
            ValueError: No optimizer or loss function.
            ConfigurationError: Non-positive ``epochs``/steps/``batches_per_step``.
            EmptyLoaderError: A loader yields no batch.
            ShapeMismatchError: The network output does not fit the loss or a metric.
        """
        if self.optimizer is None:
            raise ValueError(
                "fit needs an optimizer; this Model was built with optimizer=None. Pass one, "
                "e.g. Model(network, 'sgd', loss_function)."
            )
        if self.loss_function is None:
            raise ValueError("fit needs a loss function; this Model was built without one.")
        _check_positive("epochs", epochs, allow_none=False)
        _check_positive("steps_per_epoch", steps_per_epoch)
        _check_positive("validation_steps", validation_steps)
        _check_positive("batches_per_step", batches_per_step, allow_none=False)
        _check_positive("initial_epoch", initial_epoch, allow_none=False)
        if callbacks is not None and not isinstance(callbacks, (list, tuple, CallbackList)):
            raise TypeError(f"callbacks must be a list of Callback; got {type(callbacks).__name__}")
        self.stop_training = False
        steps = steps_per_epoch if steps_per_epoch is not None else _loader_len(train_generator)
        valid_steps = None
        if valid_generator is not None:
            valid_steps = (
                validation_steps if validation_steps is not None else _loader_len(valid_generator)
            )
        params = {"epochs": epochs, "steps": steps, "valid_steps": valid_steps}
        self.epoch_log_keys = self.log_keys(with_validation=valid_generator is not None)
        self.epoch_complete = True
        if initial_epoch > 1 and steps is not None and self._global_step == 0:
            self._global_step = (initial_epoch - 1) * steps
        attachments = self._attachments(list(callbacks or []), params, verbose, progress_options)
        for attachment in attachments:
            attachment.attach(self.bus)
        train_setup = self._setup(batches_per_step=batches_per_step)
        valid_setup = self._setup()
        history: list[dict[str, Any]] = []
        last_epoch = initial_epoch - 1
        try:
            self._publish(TrainBegin(params=params, initial_epoch=initial_epoch))
            for epoch in range(initial_epoch, epochs + 1):
                if self.stop_training:
                    break
                self._publish(EpochBegin(epoch=epoch))
                epoch_start = self.clock()
                train_record = self._run_pass(
                    train_setup,
                    cycle_batches(train_generator, steps_per_epoch, what="training"),
                    phase=PassPhase.TRAIN,
                    epoch=epoch,
                )
                logs: dict[str, Any] = {"epoch": epoch, "time": 0.0}
                logs.update(train_record.logs())
                if valid_generator is not None and train_record.complete:
                    valid_record = self._run_pass(
                        valid_setup,
                        cycle_batches(valid_generator, validation_steps, what="validation"),
                        phase=PassPhase.VALID,
                        epoch=epoch,
                    )
                    logs.update(valid_record.logs())
                logs.update(self.learning_rates())
                logs["time"] = self.clock() - epoch_start
                last_epoch = epoch
                history.append(dict(logs))
                self.epoch_complete = train_record.complete
                self._publish(EpochEnd(epoch=epoch, logs=logs, complete=train_record.complete))
                if not train_record.complete:
                    self.stop_training = True
            self._publish(
                TrainEnd(
                    last_epoch=last_epoch,
                    stopped=self.stop_training,
                    logs=history[-1] if history else {},
                )
            )
        finally:
            for attachment in attachments:
                attachment.detach()
        return history

    def fit(
        self,
        x: Any,
        y: Any,
        validation_data: tuple[Any, Any] | None = None,
        *,
        batch_size: int = 32,
        epochs: int = 1000,
        dataloader_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """Train on tensors or NumPy arrays (``x`` may be a tuple of inputs or a dict).

        Shuffles the training examples each epoch. ``validation_data`` is ``(x_val, y_val)``.
        Other keywords are those of :meth:`fit_generator`.

        Returns:
            The history, as :meth:`fit_generator`.
        """
        _check_positive("batch_size", batch_size, allow_none=False)
        train = torch.utils.data.DataLoader(
            _ArrayDataset(x, y),
            **{"batch_size": batch_size, "shuffle": True, **dict(dataloader_kwargs or {})},
        )
        valid = None
        if validation_data is not None:
            valid = _ordered_loader(
                _ArrayDataset(*validation_data), batch_size, 0, None, dataloader_kwargs
            )
        return self.fit_generator(train, valid, epochs=epochs, **kwargs)

    def fit_dataset(
        self,
        train_dataset: torch.utils.data.Dataset[Any],
        valid_dataset: torch.utils.data.Dataset[Any] | None = None,
        *,
        batch_size: int = 32,
        epochs: int = 1000,
        num_workers: int = 0,
        collate_fn: Callable[..., Any] | None = None,
        dataloader_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """Train on datasets of ``(x, y)`` examples (shuffled each epoch for training).

        Returns:
            The history, as :meth:`fit_generator`.
        """
        _check_positive("batch_size", batch_size, allow_none=False)
        base = {"batch_size": batch_size, "num_workers": num_workers, "collate_fn": collate_fn}
        train = torch.utils.data.DataLoader(
            train_dataset, **{**base, "shuffle": True, **dict(dataloader_kwargs or {})}
        )
        valid = None
        if valid_dataset is not None:
            valid = _ordered_loader(
                valid_dataset, batch_size, num_workers, collate_fn, dataloader_kwargs
            )
        return self.fit_generator(train, valid, epochs=epochs, **kwargs)

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
        _check_positive("steps", steps)
        params = {"steps": steps if steps is not None else _loader_len(generator)}
        attachments = self._attachments(list(callbacks or []), params, verbose, progress_options)
        for attachment in attachments:
            attachment.attach(self.bus)
        preds: list[Any] = []
        trues: list[Any] = []

        def on_outputs(y_pred: Any, y_true: Any) -> None:
            preds.append(y_pred)
            trues.append(y_true)

        try:
            record = self._run_pass(
                self._setup(loss=phase is not PassPhase.PREDICT),
                cycle_batches(generator, steps, what=phase.value),
                phase=phase,
                epoch=0,
                has_ground_truth=has_ground_truth,
                on_outputs=on_outputs if collect else None,
            )
        finally:
            for attachment in attachments:
                attachment.detach()
        return record, preds, trues

    def _evaluate_result(
        self,
        record: EpochRecord,
        preds: list[Any],
        trues: list[Any],
        *,
        return_pred: bool,
        return_ground_truth: bool,
        return_dict_format: bool,
        concatenate_returns: bool,
    ) -> Any:
        if return_dict_format:
            result: Any = record.logs()
        else:
            values = [record.metrics[n] for n in self.metrics_names]
            if not values:
                result = record.loss
            elif len(values) == 1:
                result = (record.loss, values[0])
            else:
                result = (record.loss, np.array(values))
        extra: list[Any] = []
        if return_pred:
            extra.append(_collect(preds, concatenate_returns))
        if return_ground_truth:
            extra.append(_collect(trues, concatenate_returns))
        if not extra:
            return result
        if isinstance(result, tuple):
            return (*result, *extra)
        return (result, *extra)

    def evaluate_generator(
        self,
        generator: Iterable[Any],
        *,
        steps: int | None = None,
        return_pred: bool = False,
        return_ground_truth: bool = False,
        concatenate_returns: bool = True,
        verbose: bool = True,
        progress_options: Mapping[str, Any] | None = None,
        callbacks: Sequence[Callback] | None = None,
        return_dict_format: bool = False,
    ) -> Any:
        """Evaluate on batches of ``(x, y)`` without gradients, the network in eval mode.

        Returns:
            As Poutyne: the loss alone when the model has no metric; else ``(loss, metric)``
            with a float for a single metric or a NumPy array of the metrics in
            ``metrics_names`` order. With ``return_dict_format``, a dict ``{'test_loss': ...,
            'test_<metric>': ...}`` instead. ``return_pred`` / ``return_ground_truth`` append
            the network outputs / targets as NumPy arrays concatenated along the batch
            dimension (nested outputs keep their structure; a list per batch when
            ``concatenate_returns=False``).

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
        return self._evaluate_result(
            record, preds, trues, return_pred=return_pred,
            return_ground_truth=return_ground_truth, return_dict_format=return_dict_format,
            concatenate_returns=concatenate_returns,
        )

    def evaluate(
        self, x: Any, y: Any, *, batch_size: int = 32,
        dataloader_kwargs: Mapping[str, Any] | None = None, **kwargs: Any,
    ) -> Any:
        """Evaluate on tensors or NumPy arrays; keywords as :meth:`evaluate_generator`."""
        loader = _ordered_loader(_ArrayDataset(x, y), batch_size, 0, None, dataloader_kwargs)
        return self.evaluate_generator(loader, **kwargs)

    def evaluate_dataset(
        self, dataset: torch.utils.data.Dataset[Any], *, batch_size: int = 32,
        num_workers: int = 0, collate_fn: Callable[..., Any] | None = None,
        dataloader_kwargs: Mapping[str, Any] | None = None, **kwargs: Any,
    ) -> Any:
        """Evaluate on a dataset of ``(x, y)``; keywords as :meth:`evaluate_generator`."""
        loader = _ordered_loader(dataset, batch_size, num_workers, collate_fn, dataloader_kwargs)
        return self.evaluate_generator(loader, **kwargs)

    def predict_generator(
        self,
        generator: Iterable[Any],
        *,
        steps: int | None = None,
        has_ground_truth: bool = False,
        return_ground_truth: bool = False,
        concatenate_returns: bool = True,
        verbose: bool = True,
        progress_options: Mapping[str, Any] | None = None,
        callbacks: Sequence[Callback] | None = None,
    ) -> Any:
        """Network outputs for every batch, without gradients, in eval mode.

        Args:
            generator: Batches of inputs ``x`` (or ``(x, y)`` with ``has_ground_truth``).
            has_ground_truth: Batches are ``(x, y)`` pairs; ``y`` is ignored unless
                ``return_ground_truth``.

        Returns:
            The outputs as NumPy arrays concatenated along the batch dimension (nested outputs
            keep their structure), or a list per batch with ``concatenate_returns=False``;
            ``(outputs, targets)`` with ``return_ground_truth``.
        """
        if return_ground_truth and not has_ground_truth:
            raise ValueError("return_ground_truth=True needs has_ground_truth=True.")
        record, preds, trues = self._evaluate_pass(
            generator, steps=steps, phase=PassPhase.PREDICT, collect=True,
            has_ground_truth=has_ground_truth, verbose=verbose, callbacks=callbacks,
            progress_options=progress_options,
        )
        del record
        out = _collect(preds, concatenate_returns)
        if return_ground_truth:
            return out, _collect(trues, concatenate_returns)
        return out

    def predict(
        self, x: Any, *, batch_size: int = 32,
        dataloader_kwargs: Mapping[str, Any] | None = None, **kwargs: Any,
    ) -> Any:
        """Predict on tensors or NumPy arrays; keywords as :meth:`predict_generator`."""
        loader = _ordered_loader(_ArrayDataset(x), batch_size, 0, None, dataloader_kwargs)
        return self.predict_generator(loader, **kwargs)

    def predict_dataset(
        self, dataset: torch.utils.data.Dataset[Any], *, batch_size: int = 32,
        num_workers: int = 0, collate_fn: Callable[..., Any] | None = None,
        dataloader_kwargs: Mapping[str, Any] | None = None, **kwargs: Any,
    ) -> Any:
        """Predict on a dataset; keywords as :meth:`predict_generator`."""
        loader = _ordered_loader(dataset, batch_size, num_workers, collate_fn, dataloader_kwargs)
        return self.predict_generator(loader, **kwargs)

    # ------------------------------------------------------------------ single batches

    def _batch_result(
        self, record: EpochRecord, preds: list[Any], return_pred: bool, return_dict_format: bool
    ) -> Any:
        return self._evaluate_result(
            record, preds, [], return_pred=return_pred, return_ground_truth=False,
            return_dict_format=return_dict_format, concatenate_returns=True,
        )

    def train_on_batch(
        self, x: Any, y: Any, *, return_pred: bool = False, return_dict_format: bool = False
    ) -> Any:
        """One optimizer step on one batch.

        Returns:
            Like :meth:`evaluate_generator` on that batch (train-mode values; dict keys have
            no prefix), plus the predictions with ``return_pred``.
        """
        if self.optimizer is None or self.loss_function is None:
            raise ValueError("train_on_batch needs an optimizer and a loss function.")
        return self._on_batch(PassPhase.TRAIN, x, y, return_pred, return_dict_format)

    def evaluate_on_batch(
        self, x: Any, y: Any, *, return_pred: bool = False, return_dict_format: bool = False
    ) -> Any:
        """Loss and metrics on one batch without gradients; returns as
        :meth:`train_on_batch`."""
        if self.loss_function is None:
            raise ValueError("evaluate_on_batch needs a loss function.")
        return self._on_batch(PassPhase.TEST, x, y, return_pred, return_dict_format)

    def _on_batch(
        self, phase: PassPhase, x: Any, y: Any, return_pred: bool, return_dict_format: bool
    ) -> Any:
        preds: list[Any] = []
        *_, record = run_epoch(
            self._setup(), [(x, y)], phase=phase, epoch=0, clock=self.clock,
            on_outputs=lambda p, t: preds.append(p),
        )
        assert isinstance(record, EpochRecord)
        return self._batch_result(record, preds, return_pred, return_dict_format)

    def predict_on_batch(self, x: Any) -> Any:
        """Network output for one batch of inputs, as NumPy arrays (eval mode, no
        gradients)."""
        preds: list[Any] = []
        list(
            run_epoch(
                self._setup(loss=False), [x], phase=PassPhase.PREDICT, epoch=0,
                clock=self.clock, has_ground_truth=False,
                on_outputs=lambda p, t: preds.append(p),
            )
        )
        return _to_numpy(preds[0])

    # ------------------------------------------------------------------ weights and devices

    def get_weights(self) -> dict[str, torch.Tensor]:
        """The network's ``state_dict`` (tensors shared with the network, not copies)."""
        return self.network.state_dict()

    def get_weight_copies(self) -> dict[str, torch.Tensor]:
        """Copies of the network's weights on the CPU, safe to keep while training goes on."""
        return {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}

    def set_weights(self, weights: Mapping[str, torch.Tensor], strict: bool = True) -> Any:
        """Load ``weights`` (a ``state_dict``) into the network.

        Returns:
            ``torch.nn.modules.module._IncompatibleKeys`` with ``missing_keys`` and
            ``unexpected_keys`` (both empty when ``strict``).

        Raises:
            RuntimeError: ``strict`` and the keys or shapes differ (PyTorch's message).
        """
        return self.network.load_state_dict(weights, strict=strict)

    def save_weights(self, f: PathOrFile, *, storage_options: Mapping[str, Any] | None = None) -> None:
        """Save the network's weights with ``torch.save`` to a path, any fsspec URL
        (crash-safe: the old file survives a failed write) or a binary file object."""
        from epochal._io import save_torch

        save_torch(self.network.state_dict(), f, storage_options=storage_options)

    def load_weights(
        self, f: PathOrFile, strict: bool = True, *,
        storage_options: Mapping[str, Any] | None = None,
    ) -> Any:
        """Load weights saved by :meth:`save_weights` (``torch.load(weights_only=True)``,
        mapped to the CPU first, then copied into the network on its device).

        Returns:
            ``missing_keys`` / ``unexpected_keys``, as :meth:`set_weights`.

        Raises:
            CheckpointError: The file is not a weights checkpoint or holds code to run.
        """
        from epochal._io import load_torch

        return self.set_weights(load_torch(f, storage_options=storage_options), strict=strict)

    def save_optimizer_state(
        self, f: PathOrFile, *, storage_options: Mapping[str, Any] | None = None
    ) -> None:
        """Save the optimizer's ``state_dict`` (see :meth:`save_weights` for ``f``)."""
        from epochal._io import save_torch

        if self.optimizer is None:
            raise ValueError("This Model has no optimizer whose state could be saved.")
        save_torch(self.optimizer.state_dict(), f, storage_options=storage_options)

    def load_optimizer_state(
        self, f: PathOrFile, *, storage_options: Mapping[str, Any] | None = None
    ) -> None:
        """Load an optimizer state saved by :meth:`save_optimizer_state`; its tensors move to
        the parameters' device."""
        from epochal._io import load_torch

        if self.optimizer is None:
            raise ValueError("This Model has no optimizer to load a state into.")
        self.optimizer.load_state_dict(load_torch(f, storage_options=storage_options))

    def to(self, device: torch.device | str) -> Model:
        """Move the network, the optimizer's state and future batches to ``device``.

        Returns:
            ``self``.
        """
        self.device = torch.device(device)
        self.network.to(self.device)
        if self.optimizer is not None and self.optimizer.state:
            # load_state_dict casts each state tensor to its parameter's device and dtype
            # (keeping step counters where PyTorch wants them).
            self.optimizer.load_state_dict(self.optimizer.state_dict())
        return self

    def cuda(self, device: int | str | torch.device | None = None) -> Model:
        """Move to a CUDA device (the current one when None). Returns ``self``."""
        if device is None:
            return self.to(torch.device("cuda", torch.cuda.current_device()))
        if isinstance(device, int):
            return self.to(torch.device("cuda", device))
        return self.to(device)

    def cpu(self) -> Model:
        """Move to the CPU. Returns ``self``."""
        return self.to("cpu")

    def __repr__(self) -> str:
        return (
            f"Model(network={type(self.network).__name__}, optimizer="
            f"{type(self.optimizer).__name__ if self.optimizer else None}, device={self.device})"
        )


