"""``ModelBundle``: one working directory, one call to train, resume by calling it again.

A bundle is a composition root: a :class:`~epochal.Model`, a
:class:`~epochal.ports.CheckpointStore` over the working directory (any fsspec URL: a local
path, ``memory://``, ``s3://bucket/prefix``), and callbacks wired onto the model's bus. Code
that embeds epochal can build the same thing by hand from the same parts (see the docs).

What the working directory holds:

=====================================  ======================================================
``log.tsv``                            one row per finished epoch, exactly once, TSV with a
                                       header
``checkpoint_epoch_{epoch}.ckpt``      weights of each epoch that improved the monitored
                                       value (only the latest with
                                       ``keep_only_last_best=True``)
``checkpoint.ckpt``                    weights of the last finished epoch
``state/epoch_{epoch:04d}.state``      the full training state at the end of that epoch
                                       (weights, optimizer, LR schedulers, RNG states incl.
                                       the loaders' generators, counters, callback states,
                                       log rows); the last two are kept
``manifests/epoch_{epoch:04d}.json``   the commit point of that epoch: names the state file
                                       with its size and SHA-256; written last
``bundle.json``                        the identity record, written before anything else
``{name}_log.tsv``                     the result of ``test(..., name=name)``
``plots/{metric}.png``, ``.pdf``       train and validation curves of each logged column
                                       (Poutyne's names; matplotlib, the ``examples`` extra)
``tensorboard/``                       TensorBoard event files of each epoch's logs (the
                                       ``tensorboard`` extra; derived, not committed)
=====================================  ======================================================

Exact resume: at the end of each epoch the bundle commits a snapshot by writing the state
file, then the manifest naming it (each write is atomic: a temp file + fsync + rename
locally, one upload remotely). Resume trusts only the newest manifest whose state file
matches its size and checksum, so a crash at any moment (even ``kill -9`` during a write)
loses at most the epoch in progress, which then runs again identically. Derived files
(``log.tsv``, ``checkpoint.ckpt``) are rewritten from the committed state on every commit and
on resume, so they never hold a duplicate or uncommitted row. A kill before the first
manifest leaves files no manifest names; the identity record tells them from someone else's
files, and the next ``train`` removes them and starts fresh.

The parts: :mod:`epochal._snapshots` (commit, read, derive, prune), :mod:`epochal.core.resume`
(the pure decisions), ``epochal_adapters.plots`` (curves), ``epochal_adapters.tsv`` (tables).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from epochal._arrays import check_epochs
from epochal._bundle_callback import BundleCallback, EpochEndRates
from epochal._bundle_data import BundleData
from epochal._bundle_eval import BundleEvaluation
from epochal._bundle_paths import BundlePaths
from epochal._bundle_resume import BundleResume
from epochal._bundle_stats import BundleRecords
from epochal._bundle_tensorboard import bundle_tensorboard_logger
from epochal._commit_writer import committing, open_commits, wants_background_commits
from epochal._parallel import main_then_share
from epochal._preemption import (
    BundleGuard,
    exit_message,
    pass_start_for,
)
from epochal._snapshots import Latest, SnapshotStore
from epochal.callbacks.base import Callback
from epochal.core import resume
from epochal.core.monitor import Monitor
from epochal.distributed.group import check_world_size
from epochal.exceptions import (
    ConfigurationError,
    ResumeError,
)
from epochal.model import Model
from epochal.ports import CheckpointStore
from epochal.seeding import set_seeds

__all__ = ["ModelBundle"]

_TASKS: dict[str, dict[str, Any]] = {
    "classif": {
        "loss_function": "cross_entropy",
        "batch_metrics": ["accuracy"],
        "epoch_metrics": ["f1"],
        "monitor_metric": "val_acc",
        "monitor_mode": "max",
    },
    "reg": {
        "loss_function": "mse",
        "batch_metrics": [],
        "epoch_metrics": [],
        "monitor_metric": "val_loss",
        "monitor_mode": "min",
    },
}


def _task(task: str | None) -> dict[str, Any]:
    """The defaults of a task: any name starting with ``'classif'`` or ``'reg'`` (Poutyne's
    rule: ``'classif'``, ``'classification'``, ``'reg'``, ``'regr'``, ``'regression'``)."""
    if task is None:
        return {}
    key = task.lower()
    for prefix, spec in _TASKS.items():
        if key.startswith(prefix):
            return spec
    raise ConfigurationError(
        f"Unknown task {task!r}; expected a name starting with 'classif' (cross-entropy, "
        "accuracy, F1, monitor val_acc max) or 'reg' (MSE, monitor val_loss min), or None."
    )


class ModelBundle(BundlePaths, BundleRecords, BundleEvaluation, BundleResume, BundleData):
    """A model trained in a working directory that keeps its logs, its best and last
    checkpoints and its full training state, so that ``train`` can be called again to resume.

    Build one with :meth:`from_network` or :meth:`from_model`.

    Args:
        directory: Working directory: a local path or any fsspec URL (``s3://bucket/run``),
            or a ready :class:`~epochal.ports.CheckpointStore`.
        model: The :class:`~epochal.Model` to train.
        logging: Write files (logs, checkpoints, state). False trains without writing
            anything and cannot resume.
        monitoring: Track the best epoch of ``monitor_metric`` (best checkpoints,
            ``load_checkpoint('best')``). False: 'best' means the last epoch.
        monitor_metric: Log key to monitor (default ``'val_loss'``, or the task's).
        monitor_mode: ``'min'`` or ``'max'`` (default ``'min'``, or the task's).
        storage_options: fsspec options for a URL directory (e.g. S3 endpoint and keys).
        background_commits: Write each epoch's commit in a background thread while the next
            epoch trains (the snapshot's files are first serialized into staging files
            outside memory, or, for a store without ``open_staged``, the snapshot is copied;
            the next commit and the end of ``train`` wait for the write and re-raise its
            error). None: on for remote stores
            (``s3://``...), off for local directories and memory.

    Raises:
        ConfigurationError: Bad ``monitor_mode``.
    """

    def __init__(
        self,
        directory: str | CheckpointStore,
        model: Model,
        *,
        logging: bool = True,
        monitoring: bool = True,
        monitor_metric: str | None = None,
        monitor_mode: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        background_commits: bool | None = None,
    ) -> None:
        from epochal_adapters.storage import open_store

        if not isinstance(model, Model):
            raise TypeError(f"model must be an epochal.Model; got {type(model).__name__}")
        self.model = model
        self.store: CheckpointStore = open_store(
            directory, dict(storage_options) if storage_options else None
        )
        if isinstance(directory, (str, os.PathLike)):
            self.directory = os.fspath(directory)
        else:
            self.directory = str(getattr(self.store, "base_url", None) or repr(self.store))
        self.set_paths()
        self.logging = logging
        self._snapshots = SnapshotStore(self.store, describe=self.directory)
        self.background_commits = wants_background_commits(self.store, background_commits)
        self.monitor: Monitor | None = None
        if monitoring:
            self.monitor = Monitor(key=monitor_metric or "val_loss", mode=monitor_mode or "min")

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_network(
        cls,
        directory: str | CheckpointStore,
        network: nn.Module,
        *,
        device: torch.device | str | None = None,
        logging: bool = True,
        optimizer: torch.optim.Optimizer | str | Mapping[str, Any] = "sgd",
        loss_function: Callable[..., Any] | str | None = None,
        batch_metrics: Sequence[Any] | None = None,
        epoch_metrics: Sequence[Any] | None = None,
        monitoring: bool = True,
        monitor_metric: str | None = None,
        monitor_mode: str | None = None,
        task: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        precision: str = "32",
        compile: bool | Mapping[str, Any] = False,
        background_commits: bool | None = None,
    ) -> ModelBundle:
        """Build a bundle around a network.

        Defaults, as Poutyne's: a ``loss_function`` left None, or ``batch_metrics`` /
        ``epoch_metrics`` left None or empty, come from the network's attribute of that name
        when it has one, else from the task: ``task='classif'`` gives cross-entropy,
        ``['accuracy']``, ``['f1']`` and monitors ``val_acc`` (max); ``task='reg'`` gives MSE
        and monitors ``val_loss`` (min). With neither, the loss stays None: the bundle can
        load checkpoints, test nothing and infer, and :meth:`train` refuses to start. An
        explicit ``monitor_metric`` without ``monitor_mode`` is minimized (Poutyne's default
        mode), whatever the task; an explicit ``monitor_mode`` is always kept. ``precision`` and ``compile``
        are :class:`~epochal.Model`'s (``'32'``, ``'bf16-mixed'``, ``'16-mixed'``; False, True
        or ``torch.compile`` options); the loss scaler's state of ``'16-mixed'`` is part of
        every snapshot, so a resume scales exactly as an uninterrupted run.

        Raises:
            ConfigurationError: Unknown task; a precision or compile option
                :class:`~epochal.Model` refuses.
        """
        defaults = _task(task)
        # Poutyne's rules: a missing (or empty) argument comes from the network's attribute
        # of that name, else from the task; a loss may stay None (a bundle for inference).
        if loss_function is None:
            loss_function = getattr(network, "loss_function", None)
            if loss_function is None:
                loss_function = defaults.get("loss_function")
        batch_metrics = _metrics_default(network, "batch_metrics", batch_metrics, defaults)
        epoch_metrics = _metrics_default(network, "epoch_metrics", epoch_metrics, defaults)
        if monitor_metric is None and monitoring:
            monitor_metric = defaults.get("monitor_metric")
            if monitor_mode is None:
                monitor_mode = defaults.get("monitor_mode")
        model = Model(
            network,
            optimizer,
            loss_function,
            batch_metrics=batch_metrics,
            epoch_metrics=epoch_metrics,
            device=device,
            precision=precision,
            compile=compile,
        )
        return cls(
            directory,
            model,
            logging=logging,
            monitoring=monitoring,
            monitor_metric=monitor_metric,
            monitor_mode=monitor_mode,
            storage_options=storage_options,
            background_commits=background_commits,
        )

    @classmethod
    def from_model(
        cls,
        directory: str | CheckpointStore,
        model: Model,
        *,
        device: torch.device | str | None = None,
        logging: bool = True,
        monitoring: bool = True,
        monitor_metric: str | None = None,
        monitor_mode: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        background_commits: bool | None = None,
    ) -> ModelBundle:
        """Build a bundle around an existing :class:`~epochal.Model`."""
        if device is not None:
            model.to(device)
        return cls(
            directory,
            model,
            logging=logging,
            monitoring=monitoring,
            monitor_metric=monitor_metric,
            monitor_mode=monitor_mode,
            storage_options=storage_options,
            background_commits=background_commits,
        )

    # ------------------------------------------------------------------ training

    @property
    def monitoring(self) -> bool:
        """Whether the bundle tracks a best epoch (Poutyne's attribute)."""
        return self.monitor is not None

    @property
    def monitor_metric(self) -> str | None:
        """The monitored log key, or None without monitoring (Poutyne's attribute)."""
        return self.monitor.key if self.monitor is not None else None

    @property
    def monitor_mode(self) -> str | None:
        """``'min'`` or ``'max'``, or None without monitoring (Poutyne's attribute)."""
        return self.monitor.mode if self.monitor is not None else None

    def train(
        self,
        train_generator: Iterable[Any],
        valid_generator: Iterable[Any] | None = None,
        *,
        epochs: int = 1000,
        callbacks: Sequence[Callback] | None = None,
        lr_schedulers: Sequence[Callback] | None = None,
        keep_only_last_best: bool = False,
        save_every_epoch: bool = False,
        disable_tensorboard: bool = False,
        seed: int | None = 42,
        **fit_kwargs: Any,
    ) -> list[dict[str, Any]]:
        """Train up to epoch ``epochs``, resuming from the directory's last committed epoch.

        A fresh directory starts at epoch 1 (after ``set_seeds(seed)`` unless ``seed`` is
        None). A directory trained to epoch ``k < epochs`` restores the full state of epoch
        ``k`` (weights, optimizer, LR schedulers, every stateful callback, RNG states and the
        training loader's generator) and runs epochs ``k+1 .. epochs``: the result equals an
        uninterrupted training, bit for bit on the CPU. A directory already at ``epochs`` (or
        stopped early at or before it) only reports so. With ``verbose`` a resumed call prints
        the epoch it resumes at and the manifest it trusts.

        At the end the network holds the best epoch's weights (as Poutyne's bundle, which
        restores the best checkpoint when training ends), the best of every call so far;
        without monitoring, the last epoch's. As Poutyne's bundle, and whatever ``verbose``
        says, it prints a line at each new best epoch (``Epoch 3: val_acc improved from
        81.00000 to 83.50000, saving file to <dir>/checkpoint_epoch_3.ckpt``) and one when
        it restores the best weights (``Restoring data from <file>``).

        The directory is checked before the first step: it must exist or be creatable, be a
        directory and accept writes (for a bucket: exist and accept a small write and delete).

        Args:
            train_generator: Training batches (the same loader, or an equal one, each call).
            valid_generator: Validation batches.
            epochs: The last epoch to reach (1000 by default, as Poutyne's).
            callbacks: More callbacks; those with ``state_dict``/``load_state_dict`` are saved
                and restored (pass the same list, in the same order, when resuming).
            lr_schedulers: LR scheduler callbacks (saved and restored like callbacks).
            keep_only_last_best: Keep only the newest ``checkpoint_epoch_*.ckpt``.
            save_every_epoch: Write ``checkpoint_epoch_{epoch}.ckpt`` for every epoch.
            disable_tensorboard: Write no TensorBoard logs. Otherwise, as Poutyne's bundle,
                a ``TensorBoardLogger`` writes each epoch's logs and learning rates to
                ``tensorboard/`` when the ``tensorboard`` package is installed (a
                ``UserWarning`` when it is not). The event files are derived logs, outside
                the committed snapshot: a resume purges the steps from the epoch it resumes
                at (``SummaryWriter(purge_step=...)``), so re-run epochs are not drawn twice.
                Written for a local directory only (a warning for an object store).
            seed: Seed for a fresh start (ignored when resuming: the RNG states are restored).
            **fit_kwargs: Passed to :meth:`Model.fit_generator` (``verbose``,
                ``steps_per_epoch``, ``batches_per_step``, ...).

        Returns:
            The history of the epochs this call trained (``fit_generator``'s: one dict of
            logs per epoch, without ``lr``), as Poutyne's ``train`` returns; empty when there
            is nothing left to train. Every epoch so far, with the learning rates, is in
            :meth:`get_stats` and ``log.tsv``.

        Raises:
            ConfigurationError: The model has no loss function (checked first), or ``epochs``
                is negative or not an int (``epochs=0`` on a fresh directory trains nothing
                and returns ``[]``, as Poutyne's).
            StorageError: The directory cannot be used (names the path and the problem).
            CheckpointError: The directory's state is corrupt, or belongs to another network
                (the message lists missing and unexpected keys).
            ResumeError: ``initial_epoch`` is given (the bundle decides where to start), or the
                directory holds training files of someone else.
        """
        if self.model.loss_function is None:
            raise ConfigurationError(
                "ModelBundle.train needs a loss function; this bundle's Model has none. Build "
                "it with loss_function=... or task='classif' / 'reg' (or a network with a "
                "loss_function attribute)."
            )
        if "initial_epoch" in fit_kwargs:
            raise ResumeError(
                "ModelBundle.train decides the initial epoch from its directory; do not pass "
                "initial_epoch."
            )
        check_epochs(epochs, 1)  # a negative or non-int epochs fails before the directory is read
        parallel = self.model._parallel  # data parallelism: rank 0 reads, repairs and writes
        main = parallel is None or parallel.is_main
        verbose = bool(fit_kwargs.get("verbose", True)) and main
        latest = (
            main_then_share(parallel, self._snapshots.open_for_training)
            if self.logging else Latest()
        )
        snapshot = latest.snapshot
        if snapshot is not None:
            check_world_size(
                snapshot.world_size, parallel.world_size if parallel is not None else 1,
                allow_change=snapshot.partial_step is None,
            )
            if parallel is not None and snapshot.data_seed is not None:
                parallel.seed = snapshot.data_seed
            self._check_network(snapshot)
            self._check_optimizer(snapshot)
        if snapshot is not None and main:
            self._snapshots.prune(
                last_epoch=snapshot.epoch,
                best_epoch=snapshot.best.get("best_epoch"),
                keep_only_last_best=keep_only_last_best,
                save_every_epoch=save_every_epoch,
            )
        first = resume.start_epoch(
            committed=snapshot.epoch if snapshot else None,
            stopped=snapshot.stopped if snapshot else False,
            partial_step=snapshot.partial_step if snapshot else None,
            epochs=epochs,
        )
        if first is None and snapshot is not None:
            if main:
                self._report_nothing_to_train(snapshot, epochs)
            self.model.set_weights(dict(snapshot.network))
            self._restore_best(snapshot.best.get("best_epoch"), snapshot.epoch, None)
            return []  # as Poutyne: the history of the epochs this call trained
        if snapshot is None:
            if seed is not None:
                set_seeds(seed)
        elif main:
            assert first is not None  # a committed snapshot with nothing to train returned
            self._report_resume(latest, first, len(lr_schedulers or ()), verbose=verbose)
        user_callbacks = [*(lr_schedulers or []), *(callbacks or [])]
        guard = BundleGuard(self.model) if self.logging else None  # epochal._preemption
        snapshots = open_commits(self._snapshots, background=self.background_commits)
        rates = EpochEndRates()
        bundle_callback = BundleCallback(
            snapshots=snapshots if self.logging else None,
            latest=snapshot,
            monitor=self.monitor,
            check_monitor=self._check_monitor,
            callbacks=user_callbacks,
            train_loader=train_generator,
            keep_only_last_best=keep_only_last_best,
            save_every_epoch=save_every_epoch,
            keep_best_in_memory=not self.logging and self.monitor is not None,
            parallel=parallel,
            guard=guard,
            announce_best=self._announcer(save_every_epoch) if main else None,
            rates=rates,
        )
        # What the next fit_generator hands its driver: the guard (a preemption inside a
        # group of accumulated batches waits for the group's end) and, when resuming
        # mid-epoch, where the epoch a preemption cut short resumes.
        fit_options: dict[str, Any] = {"preemption": guard} if guard is not None else {}
        if snapshot is not None and snapshot.partial_step is not None and snapshot.partial:
            fit_options["start"] = pass_start_for(snapshot.partial, parallel)
            fit_options["after_skip"] = bundle_callback.restore_step_states
        self.model._pass_start = fit_options or None
        extra: list[Callback] = []
        if self.logging and main and not disable_tensorboard:
            tensorboard = bundle_tensorboard_logger(
                self.store, first_epoch=first if first is not None else 1,
                describe=self.directory,
            )
            extra = [tensorboard] if tensorboard is not None else []
        with contextlib.ExitStack() as stack:
            for logger in extra:  # closed also when fit raises (on_train_end closes it too)
                stack.callback(logger.writer.close)  # type: ignore[attr-defined]
            stack.enter_context(committing(snapshots))  # waits for a background write
            stack.callback(bundle_callback.unsubscribe)  # also when fit raises
            if guard is not None:
                stack.enter_context(guard)
                if parallel is not None:
                    parallel.preemption = guard
                    stack.callback(setattr, parallel, "preemption", None)
            history = self.model.fit_generator(
                train_generator,
                valid_generator,
                epochs=epochs,
                initial_epoch=first if first is not None else 1,
                callbacks=[rates, *extra, *user_callbacks, bundle_callback],
                **fit_kwargs,
            )
        if bundle_callback.preempted_at is not None:
            epoch, step = bundle_callback.preempted_at
            message = exit_message(guard, epoch=epoch, step=step, location=self.directory)
            raise SystemExit(message if main else 1)
        rows = bundle_callback.rows
        last = int(rows[-1]["epoch"]) if rows else None
        best_epoch = bundle_callback.best.best_epoch
        if main and self.monitor is not None and best_epoch is not None:
            print(  # Poutyne's line: its ModelCheckpoint, or BestModelRestore without files
                f"Restoring data from {self.best_checkpoint_filename.format(epoch=best_epoch)}"
                if self.logging and not save_every_epoch else "Restoring best model"
            )
        self._restore_best(best_epoch, last, bundle_callback.best_weights)
        if self.logging and main:
            from epochal_adapters.plots import plot_history

            plot_history(rows, self.store, "plots/")
        return history

    def __repr__(self) -> str:
        return f"ModelBundle({self.directory!r}, {self.model!r})"


def _metrics_default(
    network: nn.Module, name: str, given: Sequence[Any] | None, defaults: Mapping[str, Any]
) -> Sequence[Any] | None:
    """Poutyne's rule for ``batch_metrics``/``epoch_metrics``: the given list unless it is
    None or empty, else the network's attribute ``name`` when it has one, else the task's."""
    if given:
        return given
    if hasattr(network, name):
        found: Sequence[Any] | None = getattr(network, name)
        return found
    return defaults.get(name) or given
