"""Data parallelism for ``Model``: the distributed building blocks wired into a training.

:func:`start_data_parallel` decides, when a ``Model`` is built, whether it trains on several
ranks (``strategy='ddp'``, or ``strategy=None`` under torchrun with ``WORLD_SIZE > 1``) and
returns a :class:`DataParallel` that the model consults at a handful of points:

* the network: the model keeps the plain network (``model.network``, ``get_weights``,
  checkpoints and snapshots hold its weights, without DDP's ``module.`` prefix); training
  passes run its ``DistributedDataParallel`` wrapper, evaluation passes the plain network
  (exact, uneven evaluation shards must not meet a collective in ``forward``);
* the data: every loader ``fit_generator``/``evaluate_generator`` receive is replaced by this
  rank's shard (:func:`epochal.distributed.shard_loader`), reshuffled at each ``EpochBegin``
  by (seed, epoch);
* the driver (:class:`ParallelDriver`): one reduction of sums and counts per pass
  (:func:`epochal.distributed.reduce_pass`), a stop flag per training step
  (:class:`epochal.distributed.StopConsensus`), one blocking agreement per epoch;
* the callbacks: rank 0 keeps them all; the other ranks drop those that write files or print
  (:func:`writes_output`), and show no progress.

With one process none of this exists: the model's path is the plain one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from epochal._driver import TrainingDriver, _PassHooks
from epochal.core.records import EpochBegin, EpochRecord, PassPhase, TrainBegin, TrainEnd
from epochal.core.steps import EpochSetup
from epochal.distributed.consensus import (
    StopConsensus,
    StopFlagCarrier,
    StopReason,
    StopVerdict,
)
from epochal.distributed.env import DistributedEnv, detect_env
from epochal.distributed.failure import (
    abort_communicators,
    announce_failure,
    collective_failed,
    default_store,
    describe,
    lost_peer_error,
    peer_failed_error,
    peer_failure,
)
from epochal.distributed.group import (
    DistributedSession,
    agree_seed,
    broadcast_object,
    restart_caveat,
    start_process_group,
    wrap_network,
)
from epochal.distributed.reduction import check_reducible, reduce_pass
from epochal.distributed.sharding import shard_loader
from epochal.distributed.signals import PreemptionGuard
from epochal.exceptions import ConfigurationError, DistributedError, PeerFailedError

__all__ = [
    "DataParallel", "ParallelDriver", "attach_data_parallel", "barrier", "main_then_share",
    "start_data_parallel", "writes_output",
]

STRATEGIES = (None, "ddp")


def resolve_strategy(strategy: str | None, env: DistributedEnv | None) -> str | None:
    """``'ddp'`` or None (one process) for ``Model``'s ``strategy`` argument.

    None chooses ``'ddp'`` when torchrun's environment says there are several ranks.

    Raises:
        ConfigurationError: An unknown strategy, or ``'ddp'`` without torchrun's environment.
    """
    if strategy not in STRATEGIES:
        raise ConfigurationError(
            f"strategy must be None (automatic: 'ddp' under torchrun with several ranks) or "
            f"'ddp'; got {strategy!r}."
        )
    if strategy is None:
        return "ddp" if env is not None and env.world_size > 1 else None
    if env is None:
        raise ConfigurationError(
            "strategy='ddp' needs torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, "
            "MASTER_PORT); none is set. Launch the script with `torchrun --nproc-per-node N "
            "script.py`, or use strategy=None to train in one process."
        )
    return strategy


def writes_output(callback: Any) -> bool:
    """Whether a callback writes files or prints, and so runs on rank 0 only.

    A callback's own ``rank_zero_only`` attribute decides when it has one. Otherwise epochal's
    writers are: checkpoints (``PeriodicSaveCallback`` and its subclasses), loggers
    (``Logger``: CSV, TensorBoard, MLflow, W&B), ``StructlogLogger``, the CSV/TensorBoard
    gradient loggers and trackers, the progress printers and ``NotificationCallback``.
    Callbacks that change the training (schedulers, clipping, early stopping, ``TerminateOnNaN``,
    ``BestModelRestore``) run on every rank.
    """
    explicit = getattr(callback, "rank_zero_only", None)
    if explicit is not None:
        return bool(explicit)
    from epochal.callbacks import gradient_logger, gradient_tracker
    from epochal.callbacks.logger import Logger
    from epochal.callbacks.notification import NotificationCallback
    from epochal.callbacks.periodic import PeriodicSaveCallback
    from epochal.callbacks.progress import EpochProgressionCallback, ProgressionCallback
    from epochal.callbacks.structlog_logger import StructlogLogger

    writers: tuple[type, ...] = (
        PeriodicSaveCallback,
        Logger,
        StructlogLogger,
        ProgressionCallback,
        EpochProgressionCallback,
        NotificationCallback,
        gradient_logger.CSVGradientLogger,
        gradient_logger.TensorBoardGradientLogger,
        gradient_tracker.TensorBoardGradientTracker,
    )
    return isinstance(callback, writers)


@attrs.define
class DataParallel:
    """One rank's share of a data-parallel training (built by :func:`start_data_parallel`).

    Attributes:
        session: The process group and this rank's device.
        network: The ``DistributedDataParallel`` wrapper of the model's network.
        seed: The data seed, the same on every rank (the order of every epoch's shards
            depends on it and on the epoch only).
        preemption: A guard whose signal the stop flag carries (set by ``ModelBundle.train``
            while it runs), or None.
        verdict: The stop the ranks agreed on in the last training pass, or None.
        carrier: The :class:`~epochal.distributed.StopFlagCarrier` between the wrapper and
            the network when the stop flag rides on the gradient all-reduce (CPU ranks with
            DDP's default options), else None.
    """

    session: DistributedSession
    network: torch.nn.Module
    seed: int
    carrier: StopFlagCarrier | None = None
    preemption: PreemptionGuard | None = None
    verdict: StopVerdict | None = None
    _shards: list[Any] = attrs.field(factory=list)
    _flag_group: Any = None

    def flag_group(self) -> Any:
        """The process group of the stop flag: the training's own with gloo; with nccl a gloo
        group over the same ranks, created once at the first call (a collective: every rank
        builds its first driver at the same point) and reused by every later call."""
        if self.session.backend == "gloo":
            return None
        if self._flag_group is None:
            self._flag_group = dist.new_group(backend="gloo")
        return self._flag_group

    @property
    def rank(self) -> int:
        """This rank."""
        return self.session.rank

    @property
    def world_size(self) -> int:
        """Number of ranks."""
        return self.session.world_size

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes."""
        return self.session.is_main

    def shard(self, loader: Any, *, training: bool) -> Any:
        """This rank's shard of ``loader`` (None stays None), set to epoch 1; it follows the
        epochs (``EpochBegin``) until :meth:`forget_shards`.

        Raises:
            ShardingError: The loader cannot be sharded (see
                :func:`epochal.distributed.shard_loader`).
        """
        if loader is None:
            return None
        sharded = shard_loader(
            loader, rank=self.rank, world_size=self.world_size, seed=self.seed,
            training=training,
        )
        sharded.set_epoch(1)
        self._shards.append(sharded)
        return sharded

    def evaluation_data(self, loader: Any, *, phase: PassPhase, collect: bool) -> Any:
        """An evaluation call's batches: this rank's exact shard for a test pass whose record
        is reduced over the ranks; the whole data when the call returns predictions (every
        rank then computes the same full result, nothing is reduced)."""
        self.forget_shards()
        if phase is PassPhase.TEST and not collect:
            return self.shard(loader, training=False)
        return loader

    @property
    def sharded(self) -> bool:
        """Whether the current call runs on shards (and its records are reduced)."""
        return bool(self._shards)

    def on_epoch_begin(self, record: EpochBegin) -> None:
        """Select the epoch's order on every shard handed out (bus handler)."""
        for sharded in self._shards:
            sharded.set_epoch(record.epoch)

    def forget_shards(self) -> None:
        """Stop following the shards of a finished call."""
        self._shards.clear()

    def callbacks(self, callbacks: Sequence[Any]) -> list[Any]:
        """The callbacks this rank runs: all on rank 0, those not writing output elsewhere."""
        if self.is_main:
            return list(callbacks)
        return [callback for callback in callbacks if not writes_output(callback)]

    def driver(
        self, *, bus: Any, context: Any, clock: Callable[[], float], global_step: int
    ) -> ParallelDriver:
        """A :class:`ParallelDriver` for one call of the model."""
        return ParallelDriver(
            bus=bus, context=context, clock=clock, global_step=global_step, parallel=self
        )


def warn_restart_caveat(env: DistributedEnv, environ: Any = None) -> None:
    """On rank 0, a ``RuntimeWarning`` when torchrun may restart the workers without
    ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` (PyTorch issue #135712; see
    :func:`epochal.distributed.restart_caveat`)."""
    caveat = restart_caveat(env, environ)
    if caveat is not None and env.is_main:
        warnings.warn(caveat, RuntimeWarning, stacklevel=3)


def start_data_parallel(
    network: torch.nn.Module,
    strategy: str | None,
    *,
    environ: Any = None,
    ddp_options: dict[str, Any] | None = None,
) -> DataParallel | None:
    """Start data parallelism for a model's network, or return None for one process.

    Joins the process group unless the application already did (nccl on CUDA, gloo on CPU),
    moves the network to ``cuda:LOCAL_RANK`` (or keeps it on the CPU), wraps it in
    ``DistributedDataParallel`` (which copies rank 0's weights to every rank) and agrees on
    the data seed (rank 0's ``torch.initial_seed()``: seeded runs shard reproducibly).

    Args:
        network: The plain network (left unwrapped; the wrapper shares its parameters).
        strategy: ``None`` or ``'ddp'`` (see :func:`resolve_strategy`).
        environ: Variables to read instead of ``os.environ`` (tests).
        ddp_options: Keywords of ``DistributedDataParallel``.

    Raises:
        ConfigurationError: Bad ``strategy``.
        DistributedError: The process group could not start (names the cause).
    """
    env = detect_env(environ)
    if resolve_strategy(strategy, env) is None:
        return None
    assert env is not None
    warn_restart_caveat(env, environ)
    session = start_process_group(env)
    options = ddp_options or {}
    carrier = None
    if (session.device.type == "cpu" and not isinstance(network, DistributedDataParallel)
            and not options.get("find_unused_parameters") and not options.get("static_graph")
            and any(p.requires_grad for p in network.parameters())):
        # (a network without trainable parameters keeps DDP's own refusal of it)
        carrier = StopFlagCarrier(network)  # the stop flag rides on the gradient all-reduce
    wrapper = wrap_network(carrier if carrier is not None else network, session.device,
                           **options)
    seed = agree_seed(torch.initial_seed() % (2**62))
    return DataParallel(session=session, network=wrapper, seed=seed, carrier=carrier)


def attach_data_parallel(model: Any, strategy: str | None) -> DataParallel | None:
    """:func:`start_data_parallel` for a ``Model``: also places the model on the rank's
    device and has its shards follow the epochs published on its bus. None for one process.
    """
    parallel = start_data_parallel(model.network, strategy)
    if parallel is not None:
        model.device = parallel.session.device
        model.bus.subscribe(EpochBegin, parallel.on_epoch_begin)
    return parallel


class _ParallelPassHooks(_PassHooks):
    """Pass hooks of a rank: a training pass polls the agreed stop flag after each step."""

    __slots__ = ("_consensus",)

    def __init__(self, driver: ParallelDriver, phase: PassPhase, epoch: int) -> None:
        super().__init__(driver, phase, epoch)
        self._consensus = driver.consensus

    def stop_requested(self) -> bool:
        if not self._training:
            return False
        if self._driver.context.stop_training:
            self._consensus.request(StopReason.REQUESTED)
        return self._consensus.after_step() is not None

    def finishes_group(self) -> bool:
        """A preemption (on any rank) runs the accumulation group to its end."""
        verdict = self._consensus.verdict
        return verdict is not None and verdict.reason is StopReason.PREEMPTED


class ParallelDriver(TrainingDriver):
    """The training driver of one rank.

    Differences from :class:`~epochal._driver.TrainingDriver`: training passes run the DDP
    wrapper; a stop request or an exception in a handler on any rank reaches every rank by
    the per-step flag (within two steps, at one step for all); each pass's record is reduced
    over the ranks before it is published (so callbacks, logs and the history see the job's
    values); each epoch ends with one blocking agreement on stops and failures. An exception
    in a handler is re-raised on its rank at the agreed stop (``PeerFailedError`` elsewhere).
    An exception inside a pass's own steps (forward, loss, backward, data) is told to the
    other ranks at once (:mod:`epochal.distributed.failure`): they raise ``PeerFailedError``
    naming the rank and its exception instead of waiting in a collective.
    """

    def __init__(self, *, parallel: DataParallel, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.parallel = parallel
        self.consensus = StopConsensus(
            parallel.flag_group(), preemption=parallel.preemption, carrier=parallel.carrier
        )

    def _pass_hooks(self, phase: PassPhase, epoch: int) -> _PassHooks:
        self.consensus.start_pass()
        return _ParallelPassHooks(self, phase, epoch)

    def _step_publisher(self) -> Callable[[Any], list[Any]]:
        publish = self.bus.publish
        consensus = self.consensus

        def guarded(record: Any) -> list[Any]:
            try:
                return publish(record)
            except Exception as exc:  # keep stepping with the others until the agreed stop
                consensus.fail(exc)
                return []

        return guarded

    def publish(self, record: Any) -> None:
        if type(record) in (TrainBegin, TrainEnd):
            super().publish(record)
            return
        try:
            super().publish(record)
        except Exception as exc:
            self.consensus.fail(exc)

    def run_pass(
        self, setup: EpochSetup, batches: Iterable[Any], *, phase: PassPhase, epoch: int,
        **kwargs: Any,
    ) -> EpochRecord:
        if phase is PassPhase.TRAIN:
            parallel = self.parallel
            loss_function = setup.loss_function
            if parallel.carrier is not None and loss_function is not None:
                loss_function = parallel.carrier.carry(loss_function, parallel.network)
            setup = attrs.evolve(setup, network=parallel.network, loss_function=loss_function)
        else:
            check_reducible(setup.epoch_metrics)
        try:
            return super().run_pass(setup, batches, phase=phase, epoch=epoch, **kwargs)
        except Exception as exc:
            verdict = self.consensus.verdict
            if isinstance(exc, PeerFailedError) or (verdict is not None and verdict.error is exc):
                raise  # a failure every rank agreed on, at the same step: nobody waits
            self._fail_fast(exc, phase, epoch)
            raise

    def _fail_fast(self, exc: Exception, phase: PassPhase, epoch: int) -> None:
        """An exception escaped a pass on this rank. Raise ``PeerFailedError`` when a peer's
        failure caused it; otherwise announce it to the peers, abort the NCCL communicators
        and return (the caller re-raises ``exc``, with a note naming this rank)."""
        rank, world = self.parallel.rank, self.parallel.world_size
        if world == 1:
            return  # no peer to tell
        where = f"the {phase.value} pass of epoch {epoch}" if epoch else f"the {phase.value} pass"
        store = default_store()
        lost = collective_failed(exc)
        peer = peer_failure(store, rank=rank, world_size=world, wait_s=2.0 if lost else 0.0)
        if peer is not None:
            raise peer_failed_error(peer, rank=rank, where=where) from exc
        if lost:
            raise lost_peer_error(exc, rank=rank, world_size=world, where=where) from exc
        step = f", step {self.consensus.steps + 1}" if phase is PassPhase.TRAIN else ""
        announce_failure(store, rank=rank, text=f"during {where}{step}: {describe(exc)}")
        abort_communicators(self.parallel.session.backend)
        if hasattr(exc, "add_note"):  # Python 3.11+
            exc.add_note(
                f"Raised on rank {rank} of {world} during {where}{step}; the other ranks were "
                "told and stop with PeerFailedError."
            )

    def _finish_pass(self, setup: EpochSetup, record: EpochRecord) -> EpochRecord:
        if record.phase is PassPhase.TRAIN:
            verdict = self.consensus.finish_pass()
            self.parallel.verdict = verdict
            if verdict is not None:
                verdict.raise_if_failed()
                self.context.stop_training = True
        if not self.parallel.sharded:
            return record  # every rank saw the whole data
        return reduce_pass(
            record, batch_metric_names=setup.metric_names, epoch_metrics=setup.epoch_metrics
        )

    def _end_epoch(self) -> None:
        if self.context.stop_training:
            self.consensus.request(StopReason.REQUESTED)
        verdict = self.consensus.agree()
        if verdict is not None:
            verdict.raise_if_failed()
            self.context.stop_training = True

    def finish_call(self) -> None:
        """After an evaluation: agree on failures of its handlers (collective)."""
        verdict = self.consensus.agree()
        if verdict is not None:
            verdict.raise_if_failed()



def main_then_share(parallel: DataParallel | None, work: Callable[[], Any]) -> Any:
    """``work()`` run on rank 0 alone, its result sent to every rank (one process: run it).

    For what reads or repairs shared storage (a bundle's directory) once for the whole job:
    every rank then trusts the same commit, and no rank reads while rank 0 repairs.

    Raises:
        Exception: On rank 0, what ``work`` raised.
        DistributedError: On the other ranks when ``work`` raised on rank 0 (names the
            error): every rank stops, none waits.
    """
    if parallel is None:
        return work()
    outcome: tuple[str, Any] = ("ok", None)
    error: BaseException | None = None
    if parallel.is_main:
        try:
            outcome = ("ok", work())
        except Exception as exc:
            error = exc
            outcome = ("error", f"{type(exc).__name__}: {exc}")
    shared = broadcast_object(outcome, src=0)
    if error is not None:
        raise error
    kind, value = shared
    if kind == "error":
        raise DistributedError(
            f"Rank 0 failed while reading the shared state, so this rank stops too: {value}"
        )
    return value


def barrier(parallel: DataParallel | None) -> None:
    """Wait for every rank (one process: nothing). After rank 0's commit, so that no rank
    reads or resumes from a commit still being written."""
    if parallel is not None:
        dist.barrier()
