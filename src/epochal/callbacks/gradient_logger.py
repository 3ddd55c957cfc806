"""Per-batch statistics of each layer's gradient: ``GradientLoggerBase`` and the loggers that
keep them in memory (``MemoryGradientLogger``), in one CSV file per layer
(``CSVGradientLogger``, ``AtomicCSVGradientLogger``) or in TensorBoard
(``TensorBoardGradientLogger``).

The statistics of a batch are computed on the gradients' device when the batch ends and kept
there; :meth:`GradientLoggerBase.log_stats` receives them, as floats, for all the epoch's
batches in order when the epoch ends (and when training ends, for an epoch a stop cut short):
one device-to-host copy per epoch, never one per step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from epochal.callbacks._files import file_location, probe_location
from epochal.callbacks.base import Callback
from epochal.exceptions import ConfigurationError
from epochal.ports import CheckpointStore

__all__ = [
    "AtomicCSVGradientLogger",
    "CSVGradientLogger",
    "GradientLoggerBase",
    "MemoryGradientLogger",
    "TensorBoardGradientLogger",
]


class GradientLoggerBase(Callback):
    """Compute statistics of each layer's gradient after every training batch and hand them
    to :meth:`log_stats`.

    Statistics per layer: ``mean`` and ``var`` (sample variance) of the absolute gradient,
    ``min``, ``abs_min``, ``max``, ``abs_max``, and ``l<p>`` (the p-norm) for each
    ``norm_type``.

    Args:
        keep_bias: Also log the parameters whose name contains ``'bias'``.
        norm_type: A norm order or a list of them (``2.0``, ``[1, 2, float('inf')]``).

    Attributes:
        stats_names: The statistic names, in order.
        layers: The logged parameter names (those requiring a gradient), set at train begin.
    """

    def __init__(self, keep_bias: bool = False, norm_type: float | list[float] = 2.0) -> None:
        super().__init__()
        self.keep_bias = keep_bias
        self.norm_type = [norm_type] if isinstance(norm_type, (int, float)) else list(norm_type)
        self.stats_names = ["mean", "var", "min", "abs_min", "max", "abs_max"]
        self.stats_names += [f"l{norm}" for norm in self.norm_type]
        self.layers: list[str] = []
        self.epoch = 0
        self._pending: list[tuple[int, int, dict[str, Any], torch.Tensor]] = []

    def _keep_layer(self, param: torch.nn.Parameter, name: str) -> bool:
        return param.requires_grad and (self.keep_bias or "bias" not in name)

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.layers = [n for n, p in self.model.network.named_parameters()
                       if self._keep_layer(p, n)]
        self._pending = []

    def on_epoch_begin(self, epoch_number: int, logs: dict[str, Any]) -> None:
        self.epoch = epoch_number

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        with torch.no_grad():
            rows = []
            for name, param in self.model.network.named_parameters():
                if not self._keep_layer(param, name):
                    continue
                grad = param.grad if param.grad is not None else torch.zeros_like(param)
                grad = grad.detach().float()
                magnitude = grad.abs()
                values = [magnitude.mean(), magnitude.var(), grad.min(), magnitude.min(),
                          grad.max(), magnitude.max()]
                values += [torch.linalg.vector_norm(magnitude, ord=n) for n in self.norm_type]
                rows.append(torch.stack(values))
        if rows:
            self._pending.append((self.epoch, batch_number, dict(logs), torch.stack(rows)))

    def _flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        tables = torch.stack([table for *_, table in pending]).cpu().tolist()
        for (epoch, batch, logs, _), table in zip(pending, tables):
            layer_stats = {layer: dict(zip(self.stats_names, row))
                           for layer, row in zip(self.layers, table)}
            self.log_stats(epoch, batch, logs, layer_stats)

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        self._flush()

    def on_train_end(self, logs: dict[str, Any]) -> None:
        self._flush()

    def log_stats(
        self, epoch_number: int, batch_number: int, logs: dict[str, Any],
        layer_stats: dict[str, dict[str, float]],
    ) -> None:
        """Record one batch's statistics (subclasses define it).

        Args:
            epoch_number: The batch's epoch.
            batch_number: The batch's number in its epoch.
            logs: The batch logs.
            layer_stats: ``{layer: {statistic: value}}``.

        Raises:
            NotImplementedError: Always, here.
        """
        raise NotImplementedError(f"{type(self).__name__} must define log_stats().")


class MemoryGradientLogger(GradientLoggerBase):
    """Keep the statistics in memory: ``history[layer]`` is a list of dicts, one per batch,
    with the statistics plus ``epoch`` and ``batch``.

    Args:
        **kwargs: ``keep_bias``, ``norm_type``: as :class:`GradientLoggerBase`.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.history: dict[str, list[dict[str, float]]] = {}

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        super().on_train_begin(logs)
        self.history = {layer: [] for layer in self.layers}

    def log_stats(
        self, epoch_number: int, batch_number: int, logs: dict[str, Any],
        layer_stats: dict[str, dict[str, float]],
    ) -> None:
        for layer, stats in layer_stats.items():
            self.history[layer].append({**stats, "epoch": epoch_number, "batch": batch_number})


class TensorBoardGradientLogger(GradientLoggerBase):
    """Write each statistic with ``add_scalars('gradient_stats/<layer>', {stat: value},
    step)``, the step counting training batches from ``initial_step + 1``.

    Args:
        writer: A ``SummaryWriter`` (see :mod:`epochal_adapters.tensorboard`).
        initial_step: The step before the first batch (to continue a run's curves).
        **kwargs: ``keep_bias``, ``norm_type``: as :class:`GradientLoggerBase`.
    """

    def __init__(self, writer: Any, initial_step: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.writer = writer
        self.current_step = initial_step

    def log_stats(
        self, epoch_number: int, batch_number: int, logs: dict[str, Any],
        layer_stats: dict[str, dict[str, float]],
    ) -> None:
        self.current_step += 1
        for layer, stats in layer_stats.items():
            for name, value in stats.items():
                self.writer.add_scalars(f"gradient_stats/{layer}", {name: value},
                                        self.current_step)


class CSVGradientLogger(GradientLoggerBase):
    """Write one CSV file per layer, columns ``epoch``, ``batch`` and the statistics.

    Each file is rewritten whole, atomically, through a
    :class:`~epochal.ports.CheckpointStore` when an epoch ends (object stores cannot
    append), in the library's table format (:mod:`epochal_adapters.tsv`).

    Args:
        filename: A path/URL (or with ``store`` a name) with one ``{}`` field that is
            replaced by the layer name, e.g. ``'grads/{}.csv'``.
        separator: The one-character field delimiter.
        append: Keep the rows of existing files (their header must match).
        store: A :class:`~epochal.ports.CheckpointStore` holding the files, or None.
        storage_options: fsspec options for a URL.
        **kwargs: ``keep_bias``, ``norm_type``: as :class:`GradientLoggerBase`.

    Raises:
        ConfigurationError: ``filename`` has no ``{}`` field; a bad separator; with
            ``append``, an existing file's header differs.
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        *,
        separator: str = ",",
        append: bool = False,
        store: CheckpointStore | None = None,
        storage_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.filename = os.fspath(filename)
        owner = type(self).__name__
        if "{}" not in self.filename:
            raise ConfigurationError(
                f"{owner}: filename {self.filename!r} needs a '{{}}' field, replaced by each "
                "layer's name (one file per layer), e.g. 'grads/{}.csv'."
            )
        if not isinstance(separator, str) or len(separator) != 1:
            raise ConfigurationError(f"{owner}: separator must be one character; got "
                                     f"{separator!r}.")
        self.separator = separator
        self.append = append
        self.store = store
        self.storage_options = dict(storage_options or {})
        self.fieldnames: list[str] = []
        self._rows: dict[str, list[Sequence[str]]] = {}

    def _location(self, layer: str) -> tuple[CheckpointStore, str]:
        return file_location(type(self).__name__, self.filename.replace("{}", layer),
                             self.store, self.storage_options)

    def _write(self, layer: str) -> None:
        from epochal_adapters.tsv import format_table

        store, name = self._location(layer)
        store.write(name, format_table(self.fieldnames, self._rows[layer],
                                       separator=self.separator))

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        from epochal_adapters.tsv import parse_table

        super().on_train_begin(logs)
        probe_location(type(self).__name__, self.filename, self.store, self.storage_options)
        self.fieldnames = ["epoch", "batch", *self.stats_names]
        self._rows = {}
        for layer in self.layers:
            rows: list[Sequence[str]] = []
            if self.append:
                store, name = self._location(layer)
                try:
                    header, parsed = parse_table(store.read(name), separator=self.separator)
                except FileNotFoundError:
                    header, parsed = [], []
                rows = list(parsed)
                if header and header != self.fieldnames:
                    raise ConfigurationError(
                        f"{type(self).__name__} cannot append to {store.url(name)}: its "
                        f"columns are {header}, expected {self.fieldnames}."
                    )
            self._rows[layer] = list(rows)
            self._write(layer)

    def log_stats(
        self, epoch_number: int, batch_number: int, logs: dict[str, Any],
        layer_stats: dict[str, dict[str, float]],
    ) -> None:
        from epochal_adapters.tsv import format_cell

        for layer, stats in layer_stats.items():
            row = {**stats, "epoch": epoch_number, "batch": batch_number}
            self._rows[layer].append([format_cell(c, row.get(c)) for c in self.fieldnames])

    def _flush(self) -> None:
        had_rows = bool(self._pending)
        super()._flush()
        if had_rows:
            for layer in self.layers:
                self._write(layer)


class AtomicCSVGradientLogger(CSVGradientLogger):
    """:class:`CSVGradientLogger` under Poutyne's atomic name (every write of
    :class:`CSVGradientLogger` is already atomic).

    Args:
        filename: As :class:`CSVGradientLogger`.
        separator: As :class:`CSVGradientLogger`.
        append: As :class:`CSVGradientLogger`.
        temporary_filename: Accepted for Poutyne compatibility and unused (the store writes
            through its own temporary file).
        **kwargs: As :class:`CSVGradientLogger`.
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        *,
        separator: str = ",",
        append: bool = False,
        temporary_filename: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(filename, separator=separator, append=append, **kwargs)
        self.temporary_filename = temporary_filename
