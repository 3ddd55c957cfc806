"""Training curves as PNG files in a :class:`~epochal.ports.CheckpointStore` (matplotlib).

One figure per logged metric: the training value and the validation value (``val_<metric>``)
against the epoch. Needs matplotlib (the ``examples`` extra); without it, warns once per call
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
    return [
        k for k in columns_of(rows)
        if k not in ("epoch", "time") and not k.startswith(("val_", "lr"))
    ]


def plot_history(
    rows: Sequence[Mapping[str, Any]], store: CheckpointStore, prefix: str = "plots/"
) -> list[str]:
    """Write ``{prefix}{metric}.png`` for each metric of ``rows``.

    Args:
        rows: Epoch log rows (``epoch`` and metric values; ``val_<metric>`` for validation;
            ``time`` and learning rates are not plotted). None or NaN cells leave a gap.
        store: Where to write.
        prefix: Name prefix of the PNG files (``'plots/'``).

    Returns:
        The names written (empty without rows or without matplotlib).
    """
    if not rows:
        return []
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
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
        for label, column in (("train", key), ("valid", f"val_{key}")):
            values = [r.get(column) for r in rows]
            if any(v is not None and not math.isnan(float(v)) for v in values):
                axes.plot(epochs, [math.nan if v is None else float(v) for v in values],
                          marker="o", label=label)
        axes.set_xlabel("epoch")
        axes.set_ylabel(key)
        axes.legend()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
        name = f"{prefix}{key}.png"
        store.write(name, buffer.getvalue())
        written.append(name)
    return written
