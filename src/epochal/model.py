"""``Model``: Poutyne's training API, composed from the functional core, the bus and adapters.

Code written for Poutyne's ``Model`` runs after changing only the import line. The loops
themselves live in :mod:`epochal.core.loop`; this class resolves names, moves data, publishes
records on its bus and turns them into Poutyne's return values.

This module holds the constructor, the wiring of a pass (setup, driver, callbacks and the
progress display on the bus), the ``fit`` family and the device moves. ``Model`` inherits
the ``evaluate*``, ``predict*`` and ``*_on_batch`` methods from
:class:`epochal._model_inference.ModelInference` and the weights and optimizer-state
input/output from :class:`epochal._model_state.ModelState`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from epochal._arrays import (
    ArrayDataset,
    DeviceArg,
    check_epochs,
    check_positive,
    devices_of,
    loader_len,
    ordered_loader,
)
from epochal._driver import TrainingDriver
from epochal._model_device import ModelDevice
from epochal._model_inference import ModelInference
from epochal._model_state import ModelState
from epochal._parallel import attach_data_parallel
from epochal.bus import RecordBus
from epochal.callbacks.base import Callback, CallbackBusAdapter, CallbackList
from epochal.core.logs import epoch_log_keys
from epochal.core.metrics import (
    BatchMetric,
    EpochMetricState,
    check_unique_names,
    resolve_loss,
    resolve_metrics,
)
from epochal.core.precision import MixedPrecision, resolve_precision
from epochal.core.steps import EpochSetup
from epochal.exceptions import ConfigurationError, EmptyLoaderError
from epochal.metrics import metric_registry
from epochal.optimizers import check_optimizer_parameters, resolve_optimizer
from epochal.ports import Attachable
from epochal.precision import (
    bind_precision,
    compile_network,
    resolve_compile_options,
    unwrap_compiled,
)

__all__ = ["Model"]

# The array helpers' former private names (``epochal.bundle`` imports ``_ArrayDataset``).
_ArrayDataset = ArrayDataset


class Model(ModelInference, ModelState, ModelDevice):
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
            ``torch.device``, or a list of one of them); None leaves the network where it is
            and moves no batch. :attr:`device` keeps the value as given, as Poutyne's does.
            Several CUDA devices (a longer list, or ``'all'``) run each forward pass through
            ``torch.nn.parallel.data_parallel`` as in Poutyne (see :meth:`to`);
            ``strategy='ddp'`` under ``torchrun`` scales better (see the "Scaling out" page).
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
            (the message names both), ``torch.compile`` options torch does not take, or a
            ``device`` naming none that torch knows, several that are not all CUDA devices,
            or several together with ``strategy='ddp'``.
    """

    def __init__(
        self,
        network: nn.Module,
        optimizer: torch.optim.Optimizer | str | Mapping[str, Any] | None,
        loss_function: Callable[..., Any] | str | None,
        *,
        batch_metrics: Sequence[Any] | None = None,
        epoch_metrics: Sequence[Any] | None = None,
        device: DeviceArg | list[DeviceArg] | None = None,
        precision: str = "32",
        compile: bool | Mapping[str, Any] = False,
        strategy: str | None = None,
    ) -> None:
        if not isinstance(network, nn.Module):
            raise TypeError(
                f"network must be a torch.nn.Module; got {type(network).__name__}."
            )
        # A device torch does not know fails here, before any work.
        if device is not None and devices_of(device)[2] and strategy is not None:
            raise ConfigurationError(
                f"device={device!r} (several devices: DataParallel) and strategy={strategy!r} "
                "cannot be combined; under torchrun pass one device per process (or none: "
                "each rank takes its LOCAL_RANK device)."
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
        self._device_given: DeviceArg | None = None  # what `device` reads (Poutyne's value)
        self._device: torch.device | None = None  # the same, normalised: what the passes use
        # Poutyne's multi-GPU mode: the other devices of data_parallel (device=[...] / 'all').
        self._other_devices: tuple[torch.device, ...] = ()
        self._parallel_forward: tuple[Any, nn.Module] | None = None
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
        # Set by a ModelBundle for its next fit: the preemption guard, and where an epoch a
        # preemption cut short resumes.
        self._pass_start: dict[str, Any] | None = None

    # ------------------------------------------------------------------ plumbing

    @property
    def precision(self) -> str:
        """The training's precision: ``'32'``, ``'bf16-mixed'`` or ``'16-mixed'``."""
        return self._precision_plan.name

    def _setup(self, *, batches_per_step: int = 1, loss: bool = True) -> EpochSetup:
        return EpochSetup(
            precision=self.mixed_precision,
            network=self._pass_network(),
            loss_function=self.loss_function if loss else None,
            batch_metrics=tuple(self.batch_metrics) if loss else (),
            epoch_metrics=tuple(self.epoch_metrics) if loss else (),
            device=self._device,
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
        """What a ``ModelBundle`` left for the next ``fit_generator`` (once), else nothing: its
        preemption guard (``preemption``) and, when resuming mid-epoch, ``start`` and
        ``after_skip``."""
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
            epochs: Last epoch to run (1-based, inclusive). 0, or less than
                ``initial_epoch``, runs no epoch and returns ``[]`` (``on_train_begin`` and
                ``on_train_end`` still run), as in Poutyne.
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
            initial_epoch: First epoch to run (to continue a previous training); at least 1
                (Poutyne would run an epoch 0 for ``initial_epoch=0``).
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
            ConfigurationError: Negative or non-int ``epochs``; ``initial_epoch`` below 1;
                non-positive steps/``batches_per_step``.
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
        check_epochs(epochs, initial_epoch)
        check_positive("steps_per_epoch", steps_per_epoch)
        check_positive("validation_steps", validation_steps)
        check_positive("batches_per_step", batches_per_step, allow_none=False)
        if callbacks is not None and not isinstance(callbacks, (list, tuple, CallbackList)):
            raise TypeError(f"callbacks must be a list of Callback; got {type(callbacks).__name__}")
        self.stop_training = False
        if self._parallel is not None:  # this rank's shards, following the epochs
            self._parallel.forget_shards()
            train_generator = self._parallel.shard(train_generator, training=True)
            valid_generator = self._parallel.shard(valid_generator, training=False)
        train_len = loader_len(train_generator)
        steps = steps_per_epoch if steps_per_epoch is not None else train_len
        valid_steps = None
        if valid_generator is not None:
            valid_len = loader_len(valid_generator)
            if valid_len == 0 and validation_steps is None and epochs >= initial_epoch:
                raise EmptyLoaderError(
                    "The validation loader yielded no batch (len() is 0); found before training "
                    "started. Expected at least one validation batch: check the validation "
                    "dataset's length, batch_size and drop_last, or pass no validation data."
                )
            # Poutyne's rule: validation_steps, else len(), else steps_per_epoch (cycled).
            if validation_steps is None and valid_len is None:
                validation_steps = steps_per_epoch
            valid_steps = validation_steps if validation_steps is not None else valid_len
        params: dict[str, Any] = {"epochs": epochs, "steps": steps}
        if valid_steps is not None:  # as Poutyne: the key only when the count is known
            params["valid_steps"] = valid_steps
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

    def __repr__(self) -> str:
        return (
            f"Model(network={type(self.network).__name__}, optimizer="
            f"{type(self.optimizer).__name__ if self.optimizer else None}, device={self.device})"
        )
