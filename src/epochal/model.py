"""``Model``: Poutyne's training API, composed from the functional core, the bus and adapters.

Code written for Poutyne's ``Model`` runs after changing only the import line. The loops
themselves live in :mod:`epochal.core.loop`; this class resolves names, moves data, publishes
records on its bus and turns them into Poutyne's return values.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from epochal._arrays import ArrayDataset, check_positive, collect, ordered_loader, to_numpy
from epochal._driver import TrainingDriver
from epochal._parallel import ParallelDriver, attach_data_parallel
from epochal.bus import RecordBus
from epochal.callbacks.base import Callback, CallbackBusAdapter, CallbackList
from epochal.core.batches import cycle_batches, to_device
from epochal.core.logs import epoch_log_keys
from epochal.core.loop import EpochSetup, run_epoch
from epochal.core.metrics import (
    BatchMetric,
    EpochMetricState,
    check_unique_names,
    resolve_loss,
    resolve_metrics,
)
from epochal.core.precision import MixedPrecision, resolve_precision
from epochal.core.records import EpochRecord, PassPhase
from epochal.exceptions import CheckpointError, ConfigurationError, EmptyLoaderError
from epochal.metrics import metric_registry
from epochal.optimizers import check_optimizer_parameters, resolve_optimizer
from epochal.ports import Attachable
from epochal.precision import (
    bind_precision,
    compile_network,
    load_optimizer_file,
    optimizer_file_state,
    resolve_compile_options,
    strip_compile_prefix,
    unwrap_compiled,
)

__all__ = ["Model"]

# The array helpers' former private names (``epochal.bundle`` imports ``_ArrayDataset``).
_ArrayDataset = ArrayDataset

PathOrFile = str | BinaryIO


def _loader_len(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def _some(keys: Sequence[str], limit: int = 8) -> str:
    """Up to ``limit`` keys, comma-separated, with a count of the rest."""
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def _loss_and_metrics(loss: float, metrics: list[float]) -> tuple[Any, ...]:
    """Poutyne's ``(loss,)``, ``(loss, metric)`` or ``(loss, array_of_metrics)``."""
    if len(metrics) <= 1:
        return (loss, *metrics)
    return (loss, np.array(metrics))


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
            Under ``strategy='ddp'`` each rank uses its own device (``cuda:LOCAL_RANK`` or
            the CPU) instead.
        precision: ``'32'`` (float32, the default), ``'bf16-mixed'`` (forward pass and loss
            under bfloat16 autocast) or ``'16-mixed'`` (float16 autocast and a dynamic loss
            scale, ``torch.amp.GradScaler``). Metrics are computed in float32. See
            :doc:`/precision`.
        compile: False, True (``torch.compile`` with its defaults) or a dict of
            ``torch.compile`` options: the network is compiled once for the forward passes;
            :attr:`network` stays the eager module, so its weights carry no ``_orig_mod.``
            prefix. A network compiled by the caller is unwrapped the same way.
        strategy: ``None``: one process, or ``'ddp'`` automatically when launched by
            ``torchrun`` with ``WORLD_SIZE > 1``; ``'ddp'``: data parallelism over torchrun's
            ranks (joins the process group unless the application did, wraps the network in
            ``DistributedDataParallel``, shards the loaders, reduces epoch values once per
            pass, agrees on stops, writes only on rank 0; see the "Scaling out" page).

    Attributes:
        bus: The :class:`epochal.RecordBus` this model publishes its records on; subscribe
            your own sinks to it (they stay subscribed across calls).
        stop_training: Set to True (e.g. from a callback) to stop at the end of the current
            step. Cleared at the start of every ``fit*`` call.
        clock: Seconds, monotonic; ``time.perf_counter`` unless replaced (tests inject a fake).
        mixed_precision: The autocast/loss-scaling helper of the passes
            (:class:`epochal.core.precision.MixedPrecision`), None at ``'32'``; replace it
            with :func:`epochal.precision.prepare_precision` to tune the scaler.
        forward_network: The module the passes call: the compiled network with ``compile``,
            else :attr:`network` itself.

    Raises:
        TypeError: ``network`` is not an ``nn.Module`` or an argument has the wrong type.
        ConfigurationError: Unknown optimizer, loss or metric name (the message lists valid
            names); optimizer parameters that do not belong to the network; duplicate metric
            names; an unknown precision, one the device and the installed torch cannot run
            (the message names both), or ``torch.compile`` options torch does not take.
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
        precision: str = "32",
        compile: bool | Mapping[str, Any] = False,
        strategy: str | None = None,
    ) -> None:
        if not isinstance(network, nn.Module):
            raise TypeError(
                f"network must be a torch.nn.Module; got {type(network).__name__}."
            )
        self._precision_plan = resolve_precision(precision)
        compile_options = resolve_compile_options(compile)
        self.forward_network = compile_network(network, compile_options)
        network = unwrap_compiled(network)
        # (documented in the class docstring's Attributes)
        self.mixed_precision: MixedPrecision | None = None
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
        else:
            self.mixed_precision = bind_precision(self._precision_plan, network, None)
        self._parallel = attach_data_parallel(self, strategy)
        self._pass_start: dict[str, Any] | None = None  # set by a ModelBundle resuming mid-epoch

    # ------------------------------------------------------------------ plumbing

    @property
    def precision(self) -> str:
        """The training's precision: ``'32'``, ``'bf16-mixed'`` or ``'16-mixed'``."""
        return self._precision_plan.name

    def _setup(self, *, batches_per_step: int = 1, loss: bool = True) -> EpochSetup:
        return EpochSetup(
            precision=self.mixed_precision,
            network=self.forward_network,
            loss_function=self.loss_function if loss else None,
            batch_metrics=tuple(self.batch_metrics) if loss else (),
            epoch_metrics=tuple(self.epoch_metrics) if loss else (),
            device=self.device,
            optimizer=self.optimizer,
            batches_per_step=batches_per_step,
        )

    def _driver(self) -> TrainingDriver:
        if self._parallel is not None:
            return self._parallel.driver(
                bus=self.bus, context=self, clock=self.clock, global_step=self._global_step
            )
        return TrainingDriver(
            bus=self.bus, context=self, clock=self.clock, global_step=self._global_step
        )

    def _attachments(
        self,
        callbacks: Sequence[Callback] | None,
        params: dict[str, Any],
        verbose: bool,
        progress_options: Mapping[str, Any] | None,
    ) -> list[Attachable]:
        attachments: list[Attachable] = []
        if self._parallel is not None:  # rank 0 writes and prints; see epochal._parallel
            callbacks = self._parallel.callbacks(callbacks or [])
            verbose = verbose and self._parallel.is_main
        if verbose:
            from epochal_adapters.progress import TqdmProgress

            attachments.append(TqdmProgress(params=params, **dict(progress_options or {})))
        if callbacks:
            callback_list = CallbackList(callbacks)
            callback_list.set_model(self)  # Poutyne's order: the model, then the params
            callback_list.set_params(dict(params))
            attachments.append(CallbackBusAdapter(callback_list))
        return attachments

    def _take_pass_start(self) -> dict[str, Any]:
        """The ``start``/``after_skip`` a ``ModelBundle`` resuming mid-epoch left for the next
        ``fit_generator`` (once), else nothing."""
        start, self._pass_start = self._pass_start, None
        return dict(start) if start else {}

    @property
    def global_step(self) -> int:
        """Training batches run so far (across ``fit`` calls), updated at the end of each
        training pass (a step record carries the running count); a resumed training sets it."""
        return self._global_step

    @global_step.setter
    def global_step(self, value: int) -> None:
        self._global_step = int(value)

    def log_keys(self, *, with_validation: bool) -> tuple[str, ...]:
        """The keys of the epoch logs ``fit`` writes, in Poutyne's order: ``epoch``,
        ``time``, ``loss``, the metrics, then ``val_loss`` and ``val_<metric>`` when
        validating (see :func:`epochal.core.logs.epoch_log_keys`)."""
        return epoch_log_keys(self.metrics_names, with_validation=with_validation)

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
                it (a new pass starts), fewer ends the epoch early. None: one full pass
                (``len(train_generator)`` batches when it has a ``len()``; a generator
                without one is read until it is exhausted, so an endless generator needs
                ``steps_per_epoch``).
            validation_steps: Validation batches per epoch, likewise. None: one full pass
                when the validation generator has a ``len()``; without one,
                ``steps_per_epoch`` batches (cycling it) when that is set, else until it is
                exhausted (Poutyne's rules).
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
            The history, one dict per epoch with exactly Poutyne's keys (``epoch``, ``time``
            in seconds, ``loss``, the metrics, ``val_loss`` and ``val_<metric>`` when
            validating). The learning rates are :meth:`learning_rates` (``CSVLogger`` writes
            them beside each row).

        Raises:
            ValueError: No optimizer or loss function.
            ConfigurationError: Non-positive ``epochs``/steps/``batches_per_step``.
            EmptyLoaderError: A loader yields no batch (a validation loader whose ``len()`` is
                0 is found before the first training step).
            ShapeMismatchError: The network output does not fit the loss or a metric.
        """
        if self.optimizer is None:
            raise ValueError(
                "fit needs an optimizer; this Model was built with optimizer=None. Pass one, "
                "e.g. Model(network, 'sgd', loss_function)."
            )
        if self.loss_function is None:
            raise ValueError("fit needs a loss function; this Model was built without one.")
        check_positive("epochs", epochs, allow_none=False)
        check_positive("steps_per_epoch", steps_per_epoch)
        check_positive("validation_steps", validation_steps)
        check_positive("batches_per_step", batches_per_step, allow_none=False)
        check_positive("initial_epoch", initial_epoch, allow_none=False)
        if callbacks is not None and not isinstance(callbacks, (list, tuple, CallbackList)):
            raise TypeError(f"callbacks must be a list of Callback; got {type(callbacks).__name__}")
        self.stop_training = False
        if self._parallel is not None:  # this rank's shards, following the epochs
            self._parallel.forget_shards()
            train_generator = self._parallel.shard(train_generator, training=True)
            valid_generator = self._parallel.shard(valid_generator, training=False)
        train_len = _loader_len(train_generator)
        steps = steps_per_epoch if steps_per_epoch is not None else train_len
        valid_steps = None
        if valid_generator is not None:
            valid_len = _loader_len(valid_generator)
            if valid_len == 0 and validation_steps is None:
                raise EmptyLoaderError(
                    "The validation loader yielded no batch (len() is 0); found before training "
                    "started. Expected at least one validation batch: check the validation "
                    "dataset's length, batch_size and drop_last, or pass no validation data."
                )
            # Poutyne's rule: validation_steps, else len(), else steps_per_epoch (cycled).
            if validation_steps is None and valid_len is None:
                validation_steps = steps_per_epoch
            valid_steps = validation_steps if validation_steps is not None else valid_len
        params = {"epochs": epochs, "steps": steps, "valid_steps": valid_steps}
        self.epoch_log_keys = self.log_keys(with_validation=valid_generator is not None)
        self.epoch_complete = True
        if initial_epoch > 1 and steps is not None and self._global_step == 0:
            self._global_step = (initial_epoch - 1) * steps
        attachments = self._attachments(list(callbacks or []), params, verbose, progress_options)
        for attachment in attachments:
            attachment.attach(self.bus)
        driver = self._driver()
        try:
            history = driver.fit(
                train_setup=self._setup(batches_per_step=batches_per_step),
                valid_setup=self._setup(),
                train_generator=train_generator,
                valid_generator=valid_generator,
                steps_per_epoch=steps or None,  # len() when not given, as Poutyne
                validation_steps=valid_steps,
                epochs=epochs,
                initial_epoch=initial_epoch,
                params=params,
                log_keys=self.epoch_log_keys,
                learning_rates=self.learning_rates,
                **self._take_pass_start(),
            )
        finally:
            self._global_step = driver.global_step
            for attachment in attachments:
                attachment.detach()
        return history

    def _float_dtype(self) -> torch.dtype | None:
        """The network's floating dtype (of its first floating parameter), or None."""
        for parameter in self.network.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
        return None

    def _array_dataset(self, *parts: Any, names: tuple[str, ...] = ("x", "y")) -> ArrayDataset:
        return ArrayDataset(*parts, names=names, float_dtype=self._float_dtype())

    def fit(
        self,
        x: Any,
        y: Any,
        validation_data: tuple[Any, Any] | None = None,
        *,
        batch_size: int = 32,
        epochs: int = 1000,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        batches_per_step: int = 1,
        initial_epoch: int = 1,
        verbose: bool = True,
        progress_options: Mapping[str, Any] | None = None,
        callbacks: Sequence[Callback] | None = None,
        dataloader_kwargs: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Train on tensors or NumPy arrays (``x`` may be a tuple of inputs or a dict).

        Shuffles the training examples each epoch. Floating inputs and targets are cast once
        to the network's floating dtype (as Keras does), so NumPy's float64 arrays train a
        float32 network; integer targets (class indices) are kept.

        Args:
            x: Inputs: a tensor or NumPy array ``(examples, ...)``, or a tuple/list/dict of
                them for several inputs.
            y: Targets, likewise.
            validation_data: ``(x_val, y_val)``, or None.
            batch_size: Examples per batch.
            dataloader_kwargs: Extra ``DataLoader`` keywords (they win over ours).
            epochs: As :meth:`fit_generator`.
            steps_per_epoch: As :meth:`fit_generator`.
            validation_steps: As :meth:`fit_generator`.
            batches_per_step: As :meth:`fit_generator`.
            initial_epoch: As :meth:`fit_generator`.
            verbose: As :meth:`fit_generator`.
            progress_options: As :meth:`fit_generator`.
            callbacks: As :meth:`fit_generator`.

        Returns:
            The history, as :meth:`fit_generator`.

        Raises:
            ConfigurationError: ``validation_data`` is not an ``(x_val, y_val)`` pair (found
                before any training step).
            TypeError: ``x`` or ``y`` is a Python list of numbers (the message says what to
                pass).
        """
        check_positive("batch_size", batch_size, allow_none=False)
        train_dataset = self._array_dataset(x, y)
        valid_dataset = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                kind = type(validation_data).__name__
                size = (f" of length {len(validation_data)}"
                        if isinstance(validation_data, (tuple, list)) else "")
                raise ConfigurationError(
                    f"validation_data must be an (x_val, y_val) pair; got a {kind}{size}. "
                    "Pass validation_data=(x_val, y_val): validation needs the targets to "
                    "compute val_loss."
                )
            valid_dataset = self._array_dataset(*validation_data, names=("x_val", "y_val"))
        return self.fit_dataset(
            train_dataset, valid_dataset, batch_size=batch_size, epochs=epochs,
            steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
            batches_per_step=batches_per_step, initial_epoch=initial_epoch, verbose=verbose,
            progress_options=progress_options, callbacks=callbacks,
            dataloader_kwargs=dataloader_kwargs,
        )

    def fit_dataset(
        self,
        train_dataset: torch.utils.data.Dataset[Any],
        valid_dataset: torch.utils.data.Dataset[Any] | None = None,
        *,
        batch_size: int = 32,
        epochs: int = 1000,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        batches_per_step: int = 1,
        initial_epoch: int = 1,
        verbose: bool = True,
        progress_options: Mapping[str, Any] | None = None,
        callbacks: Sequence[Callback] | None = None,
        num_workers: int = 0,
        collate_fn: Callable[..., Any] | None = None,
        dataloader_kwargs: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Train on datasets of ``(x, y)`` examples (shuffled each epoch for training;
        validation keeps the data order).

        Args:
            train_dataset: Training examples.
            valid_dataset: Validation examples, or None.
            batch_size: Examples per batch.
            num_workers: ``DataLoader`` worker processes.
            collate_fn: ``DataLoader``'s ``collate_fn``, or None for PyTorch's default.
            dataloader_kwargs: Extra ``DataLoader`` keywords (they win over ours; validation
                never shuffles).
            epochs: As :meth:`fit_generator`.
            steps_per_epoch: As :meth:`fit_generator`.
            validation_steps: As :meth:`fit_generator`.
            batches_per_step: As :meth:`fit_generator`.
            initial_epoch: As :meth:`fit_generator`.
            verbose: As :meth:`fit_generator`.
            progress_options: As :meth:`fit_generator`.
            callbacks: As :meth:`fit_generator`.

        Returns:
            The history, as :meth:`fit_generator`.
        """
        check_positive("batch_size", batch_size, allow_none=False)
        base: dict[str, Any] = {"batch_size": batch_size, "num_workers": num_workers}
        if collate_fn is not None:
            base["collate_fn"] = collate_fn
        train = torch.utils.data.DataLoader(
            train_dataset, **{**base, "shuffle": True, **dict(dataloader_kwargs or {})}
        )
        valid = None
        if valid_dataset is not None:
            valid = ordered_loader(
                valid_dataset, batch_size, num_workers, collate_fn, dataloader_kwargs
            )
        return self.fit_generator(
            train, valid, epochs=epochs, steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps, batches_per_step=batches_per_step,
            initial_epoch=initial_epoch, verbose=verbose, progress_options=progress_options,
            callbacks=callbacks,
        )

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
        steps = steps if steps is not None else (_loader_len(generator) or None)  # Poutyne
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
        x = to_device(x, self.device)
        x = tuple(x) if isinstance(x, (tuple, list)) else (x,)
        if y is None:
            return x
        return x, to_device(y, self.device)

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

    # ------------------------------------------------------------------ weights and devices

    def get_weights(self) -> dict[str, torch.Tensor]:
        """The network's ``state_dict`` (tensors shared with the network, not copies)."""
        return self.network.state_dict()

    def get_weight_copies(self) -> dict[str, torch.Tensor]:
        """Copies of the network's weights on the CPU, safe to keep while training goes on."""
        return {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}

    def set_weights(self, weights: Mapping[str, torch.Tensor], strict: bool = True) -> Any:
        """Load ``weights`` (a ``state_dict``) into the network.

        With ``strict=False``, the keys that did not match are reported in a
        ``UserWarning`` naming the missing and the unexpected keys.

        Returns:
            ``torch.nn.modules.module._IncompatibleKeys`` with ``missing_keys`` and
            ``unexpected_keys`` (both empty when ``strict``).

        Raises:
            RuntimeError: ``strict`` and the keys or shapes differ (PyTorch's message).
            CheckpointError: ``strict=False`` and no key of ``weights`` matches a key of the
                network (the weights belong to another network); nothing is loaded. The
                message names both key sets.
        """
        if not strict:
            own = set(self.network.state_dict())
            given = list(weights)
            if given and own and not own.intersection(given):
                raise CheckpointError(
                    "set_weights(strict=False): none of the weights' keys matches the "
                    f"network's; nothing was loaded. Weights' keys: {_some(given)}. Network's "
                    f"keys: {_some(sorted(own))}. Load weights saved from this network, or "
                    "rename the keys (e.g. strip a 'module.' prefix) first."
                )
        if any("_orig_mod" in key for key in weights):  # saved from a compiled network
            weights = strip_compile_prefix(weights)
        result = self.network.load_state_dict(weights, strict=strict)
        if not strict and (result.missing_keys or result.unexpected_keys):
            warnings.warn(
                f"Weights loaded with strict=False: missing keys (kept as they were): "
                f"{_some(result.missing_keys) or 'none'}; unexpected keys (ignored): "
                f"{_some(result.unexpected_keys) or 'none'}.",
                stacklevel=2,
            )
        return result

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
            FileNotFoundError: No file at ``f``; the message names it.
            CheckpointError: The file is not a weights checkpoint or holds code to run.
        """
        from epochal._io import load_torch

        try:
            weights = load_torch(f, storage_options=storage_options)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"load_weights: no weights file at {f!r}. Pass the path or URL of a file "
                "written by Model.save_weights (or torch.save of a state_dict), e.g. a "
                "ModelCheckpoint's filename with its {epoch} filled in."
            ) from exc
        return self.set_weights(weights, strict=strict)

    def save_optimizer_state(
        self, f: PathOrFile, *, storage_options: Mapping[str, Any] | None = None
    ) -> None:
        """Save the optimizer's ``state_dict`` (see :meth:`save_weights` for ``f``); with
        ``precision='16-mixed'`` the loss scaler's state rides along under the extra key
        ``'epochal_precision'`` (``torch.optim.Optimizer.load_state_dict`` ignores it)."""
        from epochal._io import save_torch

        if self.optimizer is None:
            raise ValueError("This Model has no optimizer whose state could be saved.")
        save_torch(
            optimizer_file_state(self.optimizer, self.mixed_precision), f,
            storage_options=storage_options,
        )

    def load_optimizer_state(
        self, f: PathOrFile, *, storage_options: Mapping[str, Any] | None = None
    ) -> None:
        """Load an optimizer state saved by :meth:`save_optimizer_state`; its tensors move to
        the parameters' device, and a saved loss scaler state is restored (see
        :doc:`/precision`)."""
        from epochal._io import load_torch

        if self.optimizer is None:
            raise ValueError("This Model has no optimizer to load a state into.")
        load_optimizer_file(
            self.optimizer, self.mixed_precision, load_torch(f, storage_options=storage_options)
        )

    def to(self, device: torch.device | str) -> Model:
        """Move the network, the optimizer's state and future batches to ``device``.

        Returns:
            ``self``.
        """
        self.mixed_precision = bind_precision(  # checked before anything moves
            self._precision_plan, self.network, torch.device(device), self.mixed_precision
        )
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


