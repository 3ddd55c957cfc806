"""Pure step and epoch functions.

Their only side effect is PyTorch's in-place update of the network's parameters and
gradients and of the optimizer's state (and the draws they make from PyTorch's random number
generators, e.g. for dropout, in the same order as a hand-written loop). No I/O, no printing,
no clock except the injected one.

Accumulation follows the hand-written loop: the epoch loss is
``sum(loss_b * n_b) / sum(n_b)`` over batches ``b`` of ``n_b`` examples, accumulated in
float64 (as Python floats are), so a last batch of 10 among batches of 256 weighs ``10/N``.

:class:`~epochal.core.steps.EpochSetup`, :func:`~epochal.core.steps.compute_loss` and
:func:`~epochal.core.steps.expected_input` live in :mod:`epochal.core.steps` (with the step
helpers the mixed-precision steps share) and stay importable from here.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import torch

from epochal.core.batches import infer_batch_size, split_batch, to_device
from epochal.core.mixed_step import mixed_steps
from epochal.core.pass_state import PassStart, load_metric_statistics, metric_statistics
from epochal.core.records import EpochRecord, PassPhase, StepRecord
from epochal.core.steps import (  # the step helpers, shared with the mixed steps
    _NO_LOSS,
    EpochSetup,
    _batch_metric_values,
    _call_network,
    _detach,
    _in_batch,
    _NetworkRejected,
    _scale_gradients,
    compute_loss,
    expected_input,
)
from epochal.exceptions import DistributedError

# EpochSetup, compute_loss and expected_input live in core.steps; still exported from here.
__all__ = [
    "EpochSetup", "PassHooks", "compute_loss", "eval_step", "expected_input", "run_epoch",
    "train_step",
]


def train_step(
    setup: EpochSetup, x: Any, y: Any, *, loss_scale: float | None = None
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], Any]:
    """Forward and backward pass of one batch (no ``zero_grad``, no optimizer step: the
    caller groups batches into optimizer steps, see :func:`run_epoch`).

    Args:
        setup: The pass's setup; the network must be in train mode.
        x: Inputs, already on the device.
        y: Targets, already on the device.
        loss_scale: When given, ``(loss * loss_scale).backward()`` (gradient accumulation
            weights each batch by its size); else ``loss.backward()``.

    Returns:
        ``(loss, metric_values, y_pred)``: the detached 0-dim loss, the batch metric values
        (detached 0-dim tensors, no host sync) and the detached network output.
    """
    assert setup.loss_function is not None
    if not torch.is_grad_enabled():  # e.g. called under the caller's torch.no_grad()
        with torch.enable_grad():
            return train_step(setup, x, y, loss_scale=loss_scale)
    y_pred = _call_network(setup.network, x)
    loss = compute_loss(setup.loss_function, y_pred, y)
    if loss_scale is None:
        loss.backward()  # type: ignore[no-untyped-call]
    else:
        (loss * loss_scale).backward()  # type: ignore[no-untyped-call]
    # Metrics of a detached output build no graph. The backward pass is done, so ``.data``
    # (an alias without autograd's view bookkeeping: 2.7k instructions against detach()'s
    # 4.0k, twice per step) detaches as safely as detach().
    y_pred = y_pred.data if type(y_pred) is torch.Tensor else _detach(y_pred)
    values = _batch_metric_values(setup, y_pred, y)
    if setup.epoch_metrics:
        with torch.no_grad():
            for metric in setup.epoch_metrics:
                metric.update(y_pred, y)
    return loss.data, values, y_pred


def eval_step(
    setup: EpochSetup, x: Any, y: Any
) -> tuple[torch.Tensor | float, tuple[torch.Tensor, ...], Any]:
    """Forward pass of one batch without gradients (the caller sets eval mode).

    Returns:
        ``(loss, metric_values, y_pred)``; ``loss`` is ``nan`` and no metric is computed when
        ``y`` is None (prediction).
    """
    with torch.no_grad():
        y_pred = _call_network(setup.network, x)
        if y is None or setup.loss_function is None:
            return _NO_LOSS, (), y_pred
        loss = compute_loss(setup.loss_function, y_pred, y)
        values = _batch_metric_values(setup, y_pred, y)
        for metric in setup.epoch_metrics:
            metric.update(y_pred, y)
    return loss, values, y_pred


class PassHooks(Protocol):
    """What a pass tells its driver, and asks it, between batches (one object per pass).

    The flags are read once at the start of the pass: a hook whose flag is False is never
    called, so a pass nobody listens to makes no call per step.

    Attributes:
        announces_steps: Call :meth:`step_begins` before each batch.
        announces_backward: Call :meth:`gradients_ready` before each optimizer step.
    """

    announces_steps: bool
    announces_backward: bool

    def step_begins(self, step: int) -> None:
        """Batch ``step`` (1-based within the pass) is about to run."""

    def gradients_ready(self, step: int) -> None:
        """The gradients of an optimizer step are final (accumulated and normalised) and
        ``optimizer.step()`` is next (gradient clipping acts here); ``step`` is the batch that
        closes the group."""

    def stop_requested(self) -> bool:
        """Polled after each step record is consumed; True ends the pass early."""
        ...

    def finishes_group(self) -> bool:
        """Asked when :meth:`stop_requested` is True inside a group of accumulated batches
        (``batches_per_step > 1``): True runs the group to its last batch and its optimizer
        step before the pass stops (a preemption: the resumed pass must start at a group
        boundary to be bit-identical); False steps the partial group at once (Poutyne's
        behaviour for a stop request). Optional: hooks without it are taken as False."""
        ...


def run_epoch(
    setup: EpochSetup,
    batches: Iterable[Any],
    *,
    phase: PassPhase,
    epoch: int,
    clock: Callable[[], float],
    global_step: int = 0,
    has_ground_truth: bool = True,
    hooks: PassHooks | None = None,
    outputs: list[tuple[Any, Any]] | None = None,
    emit_steps: bool = True,
    start: PassStart | None = None,
    batch_count: int | None = None,
    step_due: Callable[[], bool] | None = None,
) -> Iterator[StepRecord | EpochRecord]:
    """Run one pass of ``phase`` over ``batches``; yield a :class:`StepRecord` per batch, then
    one :class:`EpochRecord`.

    Training (``PassPhase.TRAIN``) groups ``setup.batches_per_step`` consecutive batches into one
    optimizer step: gradients are zeroed at the start of a group; with more than one batch
    per step each batch's loss is back-propagated weighted by its size and the summed
    gradients are divided by the group's sample count before the step, so the step equals one
    on the concatenated batch (for mean-reduced losses). A trailing partial group is stepped at
    the end of the pass; nothing carries over to the next pass. Other phases run without
    gradients in eval mode.

    A stop request inside a group steps the partial group and ends the pass, unless
    ``hooks.finishes_group()`` says to run the group to its end first (a preemption), or the
    group's gradients are not yet synchronised between ranks (below). When the network has
    ``no_sync`` (``DistributedDataParallel``), ``batches_per_step > 1`` and ``batch_count`` is
    given, the batches that do not close a group run under ``network.no_sync()``: their
    gradients are accumulated locally and synchronised once, by the group's last backward
    pass (one gradient all-reduce per optimizer step instead of one per batch).

    Args:
        setup: Network, loss, metrics, optimizer, device.
        batches: The batches of this pass (``(x, y)`` pairs, or ``x`` alone without ground
            truth). Iterated once.
        phase: Which pass this is.
        epoch: 1-based epoch number (0 outside training).
        clock: Seconds, monotonic; read twice per step and twice per pass.
        global_step: Training batches already run before this pass.
        has_ground_truth: False for prediction on inputs alone.
        hooks: The driver's :class:`PassHooks` (step announcements, the moment before each
            optimizer step, stop requests), or None.
        outputs: A list to which ``(y_pred, y_true)`` (detached, on the device) is appended
            per batch, to collect predictions; None collects nothing.
        emit_steps: False skips building and yielding the step records (when nobody reads
            them); the pass then yields its epoch record alone.
        start: Resume a training pass cut short: ``batches`` are its remaining batches, the
            first ``start.steps`` batches' values and epoch metric statistics are put back
            first (steps are numbered from ``start.steps + 1``; ``global_step`` counts the
            training batches before the pass). A training pass cut short by a stop request
            returns its own in ``EpochRecord.partial``.
        batch_count: Batches the whole pass yields (``len(loader)`` or ``steps_per_epoch``,
            counting the ones a resumed pass skipped), or None when unknown. Only used to
            skip DDP's gradient synchronisation inside accumulation groups (above).
        step_due: With ``emit_steps``, a step's record is built and yielded only when
            ``step_due()``, called at the end of the step, is true (a sampling display:
            see :meth:`epochal.bus.RecordBus.due`); None yields every one.

    Yields:
        One ``StepRecord`` per batch (unless ``emit_steps`` is False), then one
        ``EpochRecord``.

    Raises:
        NetworkInputError: The network's forward rejected a batch; the message gives the
            phase, the batch, the input's shapes and dtypes and the first layer's expected
            input (a ``ShapeMismatchError`` and a ``RuntimeError``, chained to the original).
        ShapeMismatchError: The loss or a metric rejects the batch's shapes.
        ValueError: Training without an optimizer or a loss function.
        DistributedError: The pass yielded fewer than ``batch_count`` batches while the last
            group's gradients were not synchronised (the optimizer cannot step on them).
    """
    before_step: Callable[[int], None] | None = None
    before_optimizer_step: Callable[[int], None] | None = None
    should_stop: Callable[[], bool] | None = None
    finish_group: Callable[[], bool] | None = None
    if hooks is not None:
        before_step = hooks.step_begins if hooks.announces_steps else None
        before_optimizer_step = hooks.gradients_ready if hooks.announces_backward else None
        should_stop = hooks.stop_requested
        finish_group = getattr(hooks, "finishes_group", None)
    training = phase is PassPhase.TRAIN
    network = setup.network
    optimizer = setup.optimizer
    if training and (optimizer is None or setup.loss_function is None):
        raise ValueError(
            "Training needs an optimizer and a loss function; this Model has "
            f"optimizer={optimizer!r}, loss_function={setup.loss_function!r}. Pass both to Model."
        )
    group = max(1, int(setup.batches_per_step))
    accumulate = training and group > 1
    params = [p for g in optimizer.param_groups for p in g["params"]] if optimizer else []
    # Held for the pass, so that each step's backward reuses them (see _grad_accumulators).
    accumulators = _grad_accumulators(params) if training else []  # noqa: F841
    # DDP: the batches that do not close a group skip the gradient all-reduce (no_sync).
    no_sync = getattr(network, "no_sync", None) if accumulate and batch_count else None
    unsynced = False  # the group's gradients so far are this rank's alone

    for metric in setup.epoch_metrics:
        metric.reset()
    names = setup.metric_names
    accumulator = _PassAccumulator(1 + len(names))
    network.train(training)
    device = setup.device
    step_train, step_eval, step_optimizer = train_step, eval_step, _optimizer_step
    if setup.precision is not None:  # chosen once per pass: '32' keeps the plain steps
        step_train, step_eval, step_optimizer = mixed_steps(setup.precision)

    # The common optimizer step (one batch, no hook, 32-bit) is called inline.
    plain_step = (step_optimizer is _optimizer_step and not accumulate
                  and before_optimizer_step is None)
    pass_start = clock()
    step = 0
    samples = 0
    if start is not None:
        step, samples = _put_back(start, setup, accumulator)
        global_step += step
    group_batches: list[int] = []
    complete = True
    # Grad mode is set inside train_step / eval_step, never held across a yield.
    for batch in batches:
        step += 1
        if before_step is not None:
            before_step(step)
        step_start = clock() if emit_steps else 0.0
        # Fast paths for the common (tensor, tensor) batch keep per-step Python short.
        if has_ground_truth and type(batch) in (tuple, list) and len(batch) == 2:
            x, y = batch
        else:
            x, y = split_batch(batch, has_ground_truth=has_ground_truth)
        if device is not None:
            x = to_device(x, device)
            y = to_device(y, device)
        elif type(x) is not torch.Tensor or (y is not None and type(y) is not torch.Tensor):
            x = to_device(x, None)  # NumPy arrays (nested too) become tensors
            y = to_device(y, None)
        if type(x) is torch.Tensor and x.dim() > 0:
            size = x.shape[0]
        else:
            size = infer_batch_size(x, y)
        if training:
            assert optimizer is not None
            if not group_batches:
                optimizer.zero_grad()
            unsynced = (no_sync is not None and len(group_batches) + 1 < group
                        and step < batch_count)  # type: ignore[operator]
            try:
                if unsynced:
                    with no_sync():  # type: ignore[misc]
                        train_loss, values, y_pred = step_train(
                            setup, x, y, loss_scale=float(size)
                        )
                else:
                    train_loss, values, y_pred = step_train(
                        setup, x, y, loss_scale=float(size) if accumulate else None
                    )
            except _NetworkRejected as exc:
                raise _in_batch(exc, phase, epoch, step) from exc.__cause__
            group_batches.append(size)
            if len(group_batches) == group:
                if plain_step:
                    optimizer.step()
                else:
                    step_optimizer(
                        optimizer, params, group_batches, accumulate, before_optimizer_step,
                        step,
                    )
                group_batches = []
            global_step += 1
            step_global = global_step
            loss: torch.Tensor | float = train_loss
        else:
            try:
                eval_loss, values, y_pred = step_eval(setup, x, y)
            except _NetworkRejected as exc:
                raise _in_batch(exc, phase, epoch, step) from exc.__cause__
            step_global = step
            loss = eval_loss
        if outputs is not None:
            outputs.append((y_pred, y))
        samples += size
        if isinstance(loss, torch.Tensor):
            accumulator.add(loss, values, size)
        if emit_steps and (step_due is None or step_due()):
            yield StepRecord(
                phase=phase,
                epoch=epoch,
                step=step,
                global_step=step_global,
                batch_size=size,
                loss=loss,
                metrics=types.MappingProxyType(dict(zip(names, values))),
                duration_s=clock() - step_start,
            )
        if should_stop is not None and should_stop() and not (
            group_batches and (unsynced or (finish_group is not None and finish_group()))
        ):
            complete = False
            break
    if training and group_batches and optimizer is not None:
        if unsynced:
            raise DistributedError(
                f"The training pass yielded {step} batches, but {batch_count} were announced "
                "(the loader's len() or steps_per_epoch); the last accumulated batches' "
                "gradients were not synchronised between the ranks yet, so the optimizer "
                "cannot step. Make the loader yield as many batches as its len() says."
            )
        # The trailing partial group is stepped (also when a stop request ended the pass; not
        # when an exception did, nor when the consumer abandoned the generator).
        step_optimizer(optimizer, params, group_batches, accumulate, before_optimizer_step, step)
    has_values = accumulator.samples > 0
    means: dict[str, float] = {}
    first_nonfinite: int | None = None
    if has_values:
        means = dict(zip(("loss", *names), accumulator.means()))  # one host sync per pass
        if not math.isfinite(means["loss"]):
            first_nonfinite = accumulator.first_nonfinite_loss()
    partial = None
    if training and not complete:
        partial = PassStart(
            steps=step, sizes=tuple(accumulator.sizes),
            columns=tuple(tuple(c) for c in getattr(accumulator, "columns", ())),
            epoch_metrics=tuple(metric_statistics(m.metric) for m in setup.epoch_metrics),
        )
    epoch_values = _epoch_metric_values(setup) if has_values else {}
    metrics: dict[str, float] = {name: means[name] for name in names if name in means}
    metrics.update(epoch_values)
    yield EpochRecord(
        phase=phase,
        epoch=epoch,
        steps=step,
        samples=samples,
        loss=means.get("loss", _NO_LOSS),
        metrics=metrics,
        duration_s=clock() - pass_start,
        complete=complete,
        first_nonfinite_step=first_nonfinite,
        partial=partial,
    )


def _put_back(start: PassStart, setup: EpochSetup, accumulator: _PassAccumulator) -> tuple[int, int]:
    """Load a resumed pass's first batches into its accumulator and epoch metrics.

    Returns:
        ``(steps, samples)`` already done.
    """
    for entry, statistics in zip(setup.epoch_metrics, start.epoch_metrics):
        load_metric_statistics(entry.metric, statistics, setup.device)
    for i, size in enumerate(start.sizes):
        values = [torch.tensor(column[i], dtype=torch.float64, device=setup.device)
                  for column in start.columns]  # where the pass's own values are (CUDA)
        accumulator.add(values[0], tuple(values[1:]), size)
    return start.steps, sum(start.sizes)


class _PassAccumulator:
    """Sample-weighted means of per-batch 0-dim tensors over one pass, without a host sync
    per batch and without a tensor operation per batch.

    Each batch's values are only kept (a list append); every ``chunk`` batches they are
    stacked into one tensor per value (bounded memory on long passes: at most ``chunk`` 0-dim
    tensors per value are alive at once). At the end of the pass they are copied to the host
    once and summed in Python floats, in batch order: ``sum(float(v_b) * n_b) / sum(n_b)``
    -- the same operations, in the same order, as a hand-written loop's
    ``loss_sum += float(loss) * len(x)``, so the result is identical.
    """

    def __init__(self, count: int, chunk: int = 128) -> None:
        self.pending: list[list[torch.Tensor]] = [[] for _ in range(count)]
        self.chunks: list[list[torch.Tensor]] = [[] for _ in range(count)]
        self.sizes: list[int] = []
        self.samples = 0
        self.chunk = chunk

    def add(self, loss: torch.Tensor, values: tuple[torch.Tensor, ...], size: int) -> None:
        pending = self.pending
        pending[0].append(loss)
        for i, value in enumerate(values, 1):
            pending[i].append(value)
        self.sizes.append(size)
        self.samples += size
        if len(pending[0]) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        for pending, chunks in zip(self.pending, self.chunks):
            if pending:
                try:  # one op for the whole chunk when the values share a dtype (the rule)
                    chunks.append(torch.stack(pending).to(torch.float64))
                except RuntimeError:
                    chunks.append(torch.stack([v.to(torch.float64) for v in pending]))
                pending.clear()

    def means(self) -> list[float]:
        self._flush()
        columns = torch.stack([torch.cat(chunks) for chunks in self.chunks]).tolist()
        self.columns: list[list[float]] = columns
        self.losses: list[float] = columns[0]
        means = []
        for column in columns:
            total = 0.0
            for value, size in zip(column, self.sizes):
                total += value * size
            means.append(total / self.samples)
        return means


    def first_nonfinite_loss(self) -> int | None:
        """1-based index of the first batch whose loss is nan or inf (after :meth:`means`)."""
        for i, value in enumerate(getattr(self, "losses", ()), 1):
            if not math.isfinite(value):
                return i
        return None


def _grad_accumulators(params: list[torch.nn.Parameter]) -> list[Any]:
    """The ``AccumulateGrad`` nodes of ``params`` (the autograd nodes that add a backward
    pass's gradient to ``.grad``).

    Autograd keeps a parameter's node only while a graph refers to it: a step whose graph is
    freed before the next forward (epochal keeps no graph past its step) makes autograd build
    the node again at every step, with its metadata and a Python reference count taken under
    the GIL. A hand-written loop keeps the last ``loss`` (and its graph) alive until the next
    one, so it reuses them. Holding the nodes for the pass does the same (callgrind: about
    1,000 instructions per parameter per step; DDP holds them likewise).
    """
    nodes: list[Any] = []
    with torch.enable_grad():
        for param in params:
            if not (isinstance(param, torch.Tensor) and param.requires_grad):
                continue
            try:  # an optimization only: a parameter that cannot be viewed is left out
                view = param.view_as(param).grad_fn
            except RuntimeError:
                continue
            if view is not None:
                nodes.extend(node for node, _ in view.next_functions if node is not None)
    return nodes


def _optimizer_step(
    optimizer: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    group_batches: list[int],
    accumulate: bool,
    before_optimizer_step: Callable[[int], None] | None,
    step: int,
) -> None:
    if accumulate:
        _scale_gradients(params, 1.0 / float(sum(group_batches)))
    if before_optimizer_step is not None:
        before_optimizer_step(step)
    optimizer.step()


def _epoch_metric_values(setup: EpochSetup) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in setup.epoch_metrics:
        out.update(zip(metric.names, metric.compute()))
    return out
