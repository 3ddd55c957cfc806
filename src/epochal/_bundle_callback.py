"""The bundle's training-side half: the callback ``ModelBundle.train`` appends last.

``BundleCallback`` restores a snapshot at train begin (weights, optimizer, callbacks, random
and loader states, the loss scaler), keeps the log rows and the best epoch, and commits each
epoch through the :class:`~epochal._snapshots.SnapshotStore` (on rank 0 under ``torchrun``,
mid-epoch when a preemption cut the pass short). ``bundle.py`` composes it with the store;
nothing here reads or writes files except through that store.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from epochal._parallel import DataParallel, barrier
from epochal._preemption import (
    epoch_start_states,
    gather_passes,
    preempted,
)
from epochal._snapshots import Snapshot, SnapshotStore
from epochal.callbacks._monitoring import non_finite_tensors
from epochal.callbacks.base import Callback
from epochal.core.monitor import Monitor, MonitorState
from epochal.core.records import EpochRecord, PassPhase
from epochal.distributed.signals import PreemptionGuard
from epochal.seeding import get_random_states, set_random_states

__all__ = [
    "BundleCallback",
    "EpochEndRates",
    "loader_generators",
    "log_row",
    "stateful_callbacks",
]


def loader_generators(loader: Any) -> list[torch.Generator]:
    """The torch generators that decide a loader's data order (its own and its sampler's)."""
    found: list[torch.Generator] = []
    for owner in (loader, getattr(loader, "sampler", None),
                  getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found


def stateful_callbacks(callbacks: Sequence[Any]) -> list[tuple[str, Any]]:
    return [
        (f"{i}:{type(cb).__name__}", cb)
        for i, cb in enumerate(callbacks)
        if callable(getattr(cb, "state_dict", None))
        and callable(getattr(cb, "load_state_dict", None))
    ]


class EpochEndRates(Callback):
    """First of the bundle's callbacks: the learning rates at an epoch's end, before any
    callback (an LR scheduler) changes them, i.e. the rates the epoch's last step used.

    ``log.tsv`` logs these, as Poutyne's bundle does (its CSV logger runs before its
    schedulers); the bundle's callback, last, would see the next epoch's rates.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rates: dict[str, float] | None = None

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        self.rates = dict(self.model.learning_rates())


class BundleCallback(Callback):
    """The bundle's own callback, last in the list: restores a snapshot at train begin (after
    every other callback has initialised itself) and commits one at each finished epoch
    (after every other callback has updated its state).

    Args:
        snapshots: Where commits go (None: nothing is written, as with ``logging=False``).
        latest: The trusted commit to restore, or None for a fresh start.
        monitor: The monitored key and mode, or None.
        check_monitor: Called with the epoch log keys at train begin.
        callbacks: The stateful user callbacks to save and restore.
        train_loader: Its torch generators are saved and restored.
        keep_best_in_memory: Keep a copy of the best epoch's weights (when no file holds it).
        rates: Where the epoch's learning rates are read for its ``log.tsv`` row (None:
            the optimizer's at this callback's turn).
        announce_best: Print Poutyne's line at each new best epoch (``Epoch N: val_acc
            improved from a to b``), followed by ``, saving file to <path>`` when it returns
            a path for the epoch; None prints nothing (other ranks than 0).
    """

    def __init__(
        self,
        *,
        snapshots: SnapshotStore | None,
        latest: Snapshot | None,
        monitor: Monitor | None,
        check_monitor: Callable[[Sequence[str]], None],
        callbacks: Sequence[Any],
        train_loader: Any,
        keep_only_last_best: bool,
        save_every_epoch: bool,
        keep_best_in_memory: bool,
        parallel: DataParallel | None = None,
        guard: PreemptionGuard | None = None,
        announce_best: Callable[[int], str | None] | None = None,
        rates: EpochEndRates | None = None,
    ) -> None:
        super().__init__()
        self.rates = rates
        self.announce_best = announce_best
        self.parallel = parallel
        self.guard = guard
        self.epoch_start: dict[str, Any] | None = None
        self.preempted_at: tuple[int, int | None] | None = None  # (epoch, step or None)
        self._subscription: Any = None
        self.snapshots = snapshots
        self.snapshot = latest
        self.monitor = monitor
        self.check_monitor = check_monitor
        self.callbacks = list(callbacks)
        self.generators = loader_generators(train_loader)
        self.keep_only_last_best = keep_only_last_best
        self.save_every_epoch = save_every_epoch
        self.keep_best_in_memory = keep_best_in_memory
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.rows: list[dict[str, Any]] = [dict(r) for r in latest.log_rows] if latest else []
        self.best = MonitorState.from_dict(dict(latest.best)) if latest else MonitorState()

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        if self.monitor is not None:
            self.check_monitor(self.model.epoch_log_keys)
        snapshot = self.snapshot
        if snapshot is None:
            return
        model = self.model
        model.set_weights(dict(snapshot.network))
        if model.optimizer is not None and snapshot.optimizer is not None:
            model.optimizer.load_state_dict(dict(snapshot.optimizer))
        for key, callback in stateful_callbacks(self.callbacks):
            if key in snapshot.callbacks:
                callback.load_state_dict(snapshot.callbacks[key])
        if snapshot.partial_step is not None and snapshot.partial:
            # mid-epoch: the epoch's start states draw its data order again; the step's
            # states follow once the batches already run are skipped (restore_step_states)
            start = snapshot.partial["epoch_start"]
            for generator, state in zip(self.generators, start["loader_generators"]):
                generator.set_state(state)
            set_random_states(start["random_states"])
        else:
            self.restore_step_states()
        model.global_step = int(snapshot.global_step)
        precision = getattr(model, "mixed_precision", None)
        if snapshot.precision is not None and precision is not None:
            precision.load_state_dict(snapshot.precision)

    def restore_step_states(self) -> None:
        """Restore the snapshot's RNG and loader generator states."""
        snapshot = self.snapshot
        assert snapshot is not None
        for generator, state in zip(self.generators, snapshot.loader_generators):
            generator.set_state(state)
        set_random_states(snapshot.random_states)

    def on_epoch_begin(self, epoch_number: int, logs: dict[str, Any]) -> None:
        if self.guard is not None and self.snapshots is not None:
            self.epoch_start = epoch_start_states(self.generators)
            if self._subscription is None:
                bus = self.model.bus  # type: ignore[attr-defined]  # the Model's
                self._subscription = bus.subscribe(EpochRecord, self._on_record)

    def on_train_end(self, logs: dict[str, Any]) -> None:
        self.unsubscribe()

    def unsubscribe(self) -> None:
        """Stop watching the model's epoch records (idempotent)."""
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None

    def _on_record(self, record: EpochRecord) -> None:
        """A training pass a preemption cut short: commit it, before any epoch-end handler
        (a scheduler's step) changes the state."""
        if record.phase is not PassPhase.TRAIN or record.complete or record.partial is None:
            return
        if not preempted(self.guard, self.parallel) or self.epoch_start is None:
            return
        passes = gather_passes(record.partial, self.parallel)
        self.preempted_at = (record.epoch, record.partial.steps)
        self._commit(
            record.epoch, self.model.network.state_dict(), is_best=False, stopped=False,
            partial_step=record.partial.steps,
            partial={"epoch_start": self.epoch_start, "passes": passes},
        )

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        if not self.model.epoch_complete:
            return  # a finished epoch is committed here; a preempted one by _on_record
        weights = self.model.network.state_dict()
        if non_finite_tensors(weights):
            # No state, checkpoint or log row from diverged weights replaces a good one: the
            # directory stays at the last finite epoch (which a resume would run again).
            where = self.snapshots.describe if self.snapshots else "the bundle"
            warnings.warn(
                f"Epoch {epoch_number}: the network's weights hold NaN or infinite values; "
                f"{where} keeps its state of the last finite epoch.",
                RuntimeWarning,
                stacklevel=2,
            )
            self.model.stop_training = True
            return
        rates = self.rates.rates if self.rates is not None else None
        self.rows.append(log_row(logs, self.model.learning_rates() if rates is None else rates))
        monitor = self.monitor
        is_best = False
        if monitor is not None and logs.get(monitor.key) is not None:
            old_best = self.best.best
            self.best = self.best.update(monitor, epoch_number, float(logs[monitor.key]))
            is_best = self.best.best_epoch == epoch_number
            if is_best and self.announce_best is not None:
                shown = old_best if old_best is not None else (
                    math.inf if monitor.mode == "min" else -math.inf)
                path = self.announce_best(epoch_number)
                print(f"Epoch {epoch_number:d}: {monitor.key} improved from {shown:0.5f} to "
                      f"{float(logs[monitor.key]):0.5f}"
                      + (f", saving file to {path}" if path else ""))
        if is_best and self.keep_best_in_memory:
            self.best_weights = {k: v.detach().clone() for k, v in weights.items()}
        if self.snapshots is None:
            return
        interrupted = preempted(self.guard, self.parallel)
        if interrupted:
            self.preempted_at = (epoch_number, None)
        self._commit(epoch_number, weights, is_best=is_best,
                     stopped=bool(self.model.stop_training) and not interrupted)

    def _commit(
        self, epoch_number: int, weights: Mapping[str, torch.Tensor], *, is_best: bool,
        stopped: bool, partial_step: int | None = None, partial: Mapping[str, Any] | None = None,
    ) -> None:
        assert self.snapshots is not None
        monitor = self.monitor
        optimizer = self.model.optimizer
        parallel = self.parallel
        if parallel is not None and not parallel.is_main:
            barrier(parallel)  # rank 0 commits for the job; read nothing before it is done
            return
        self.snapshots.commit(
            Snapshot(
                epoch=epoch_number,
                global_step=self.model.global_step,
                network=weights,
                optimizer=optimizer.state_dict() if optimizer is not None else None,
                optimizer_class=type(optimizer).__name__ if optimizer is not None else None,
                callbacks={k: cb.state_dict() for k, cb in stateful_callbacks(self.callbacks)},
                random_states=get_random_states(),
                loader_generators=[g.get_state() for g in self.generators],
                log_rows=[dict(r) for r in self.rows],
                best=self.best.to_dict(),
                stopped=stopped,
                partial_step=partial_step,
                world_size=parallel.world_size if parallel is not None else 1,
                data_seed=parallel.seed if parallel is not None else None,
                partial=partial,
                precision=scaler_state(self.model),
            ),
            is_best=is_best,
            monitor=monitor.key if monitor is not None else None,
            keep_only_last_best=self.keep_only_last_best,
            save_every_epoch=self.save_every_epoch,
        )
        barrier(parallel)


def scaler_state(model: Any) -> dict[str, Any] | None:
    """The loss scaler's state for the snapshot (``'16-mixed'``), else None."""
    precision = getattr(model, "mixed_precision", None)
    return None if precision is None or precision.scaler is None else precision.state_dict()


def log_row(logs: Mapping[str, Any], learning_rates: Mapping[str, float]) -> dict[str, Any]:
    """An epoch's ``log.tsv`` row: Poutyne's CSVLogger order ``epoch, time, lr, loss, ...``.

    The learning rates come from the optimizer at the epoch's end; any already in ``logs``
    are moved to the same place."""
    head = {k: logs[k] for k in ("epoch", "time") if k in logs}
    rates = {k: v for k, v in logs.items() if k == "lr" or k.startswith("lr_group_")}
    rates.update(learning_rates)
    rest = {k: v for k, v in logs.items() if k not in head and k not in rates}
    return {**head, **rates, **rest}
