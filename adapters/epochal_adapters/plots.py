"""Training curves as PNG and PDF files in a :class:`~epochal.ports.CheckpointStore`
(matplotlib), named as Poutyne's ModelBundle names them.

One figure per logged column but ``epoch`` and the ``val_*`` ones (so ``time`` and ``lr`` too,
as Poutyne does): the training value (labelled ``<metric>``) and the validation value
(``val_<metric>``) against the epoch. Needs matplotlib (the ``examples`` extra); without it, warns once per call
and writes nothing.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from epochal.ports import CheckpointStore
from epochal_adapters.tsv import columns_of

__all__ = ["plot_history"]


def _plotted_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return [k for k in columns_of(rows) if k != "epoch" and not k.startswith("val_")]


def plot_history(
    rows: Sequence[Mapping[str, Any]],
    store: CheckpointStore,
    prefix: str = "plots/",
    extensions: Sequence[str] = ("png", "pdf"),
) -> list[str]:
    """Write ``{prefix}{metric}.{extension}`` for each column of ``rows`` and each extension.

    Args:
        rows: Epoch log rows (``epoch`` and metric values; ``val_<metric>`` for validation).
            None or NaN cells leave a gap.
        store: Where to write.
        prefix: Name prefix of the files (``'plots/'``).
        extensions: One file per extension and column; Poutyne's ModelBundle writes
            ``('png', 'pdf')``.

    Returns:
        The names written (empty without rows or without matplotlib).
    """
    if not rows:
        return []
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        warnings.warn(
            "matplotlib is not installed: no plots for this bundle (pip install "
            "'epochal[examples]').",
            RuntimeWarning,
            stacklevel=2,
        )
        return []
    epochs = [int(r["epoch"]) for r in rows]
    written = []
    for key in _plotted_keys(rows):
        figure = Figure(figsize=(6, 4))
        axes = figure.subplots()
        for column in (key, f"val_{key}"):
            values = [r.get(column) for r in rows]
            if any(v is not None and not math.isnan(float(v)) for v in values):
                axes.plot(epochs, [math.nan if v is None else float(v) for v in values],
                          label=column)
        axes.set_xlabel("Epochs")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend()
        for extension in extensions:
            buffer = io.BytesIO()
            figure.savefig(buffer, format=extension)
            name = f"{prefix}{key}.{extension}"
            store.write(name, buffer.getvalue())
            written.append(name)
    return written
