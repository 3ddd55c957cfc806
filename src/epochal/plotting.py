"""Poutyne's plotting functions: :func:`plot_history` and :func:`plot_metric`.

matplotlib is imported when a function is called (it is in the ``examples`` extra), so
``import epochal`` does not need it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["plot_history", "plot_metric"]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "epochal's plotting functions need matplotlib, which is not installed. Install "
            "the 'examples' extra: pip install 'epochal[examples]' (or pip install matplotlib)."
        ) from exc
    return plt


def _is_dataframe(history: Any) -> bool:
    return hasattr(history, "columns") and hasattr(history, "__getitem__") and not isinstance(
        history, (list, tuple)
    )


def _columns(history: Any) -> list[str]:
    if _is_dataframe(history):
        return [str(column) for column in history.columns]
    if not history:
        raise ValueError("The history is empty: expected at least one epoch's log row.")
    return list(history[0].keys())


def _infer_metrics(history: Any, metrics: Sequence[str] | None) -> list[str]:
    if metrics is not None:
        return list(metrics)
    return [c for c in _columns(history) if c != "epoch" and not c.startswith("val_")]


def _check_length(values: Sequence[Any] | None, metrics: Sequence[str], what: str) -> None:
    if values is not None and len(values) != len(metrics):
        raise ValueError(
            f"Expected one {what} per metric: got {len(values)} {what}s for {len(metrics)} "
            f"metrics ({', '.join(metrics)})."
        )


def plot_history(
    history: Any,
    *,
    metrics: list[str] | None = None,
    labels: list[str] | None = None,
    titles: list[str] | str | None = None,
    axes: Sequence[Any] | None = None,
    show: bool = True,
    save: bool = False,
    save_filename_template: str = "{metric}",
    save_directory: str | None = None,
    save_extensions: list[str] | tuple[str, ...] = ("png",),
    close: bool | None = None,
    fig_kwargs: dict[str, Any] | None = None,
) -> tuple[tuple[Any, ...], Any]:
    """Plot a training history, one figure per metric, training and validation curves
    together (see :func:`plot_metric`).

    Args:
        history: The list of epoch log dicts ``fit`` returns (or the DataFrame of
            ``ModelBundle.get_stats()``),
            or a pandas DataFrame read from a ``CSVLogger`` file.
        metrics: The metrics to plot. Default: every column but ``epoch`` and the ``val_*``
            ones (so ``loss``, the metrics, ``time`` and ``lr``).
        labels: One label per metric (see :func:`plot_metric`). Default: the column names.
        titles: One title per metric, or one title for all. Default: no title.
        axes: One matplotlib ``Axes`` per metric to draw on. Default: a new figure each.
        show: Call ``fig.show()`` on each new figure.
        save: Save each new figure, as ``save_filename_template.format(metric=...)`` plus
            each extension, in ``save_directory`` (created if missing; default: the
            current directory).
        save_filename_template: File name without extension; include ``{metric}``.
        save_directory: Directory of the saved files.
        save_extensions: One file per extension (``('png', 'pdf')``).
        close: Close the new figures at the end. Default: True except in a Jupyter notebook.
        fig_kwargs: Keyword arguments of :func:`matplotlib.pyplot.subplots`.

    Returns:
        ``(figs, axes)``, as Poutyne returns them: a tuple of the figures created and a tuple
        of their axes; when ``axes`` was given, an empty tuple and ``axes`` itself.

    Raises:
        ImportError: matplotlib is missing (install the ``examples`` extra).
        ValueError: ``labels``, ``titles`` (a list) or ``axes`` does not hold one entry per
            metric, or the history is empty.
        KeyError: A metric is not in the history.
    """
    plt = _pyplot()
    metric_names = _infer_metrics(history, metrics)
    _check_length(labels, metric_names, "label")
    if isinstance(titles, str):
        titles = [titles] * len(metric_names)
    _check_length(titles, metric_names, "title")
    _check_length(axes, metric_names, "axe")
    figs: tuple[Any, ...] = ()
    if axes is None:
        created = [plt.subplots(**(fig_kwargs or {})) for _ in metric_names]
        figs = tuple(fig for fig, _ in created)
        axes = tuple(ax for _, ax in created)
    label_iter: Iterable[str | None] = labels if labels is not None else itertools.repeat(None)
    title_iter: Iterable[str] = titles if titles is not None else itertools.repeat("")
    for metric, label, title, ax in zip(metric_names, label_iter, title_iter, axes):
        plot_metric(history, metric, label=label, title=title, ax=ax)
    if save:
        template = save_filename_template
        if save_directory is not None:
            os.makedirs(save_directory, exist_ok=True)
            template = os.path.join(save_directory, save_filename_template)
        for fig, metric in zip(figs, metric_names):
            for extension in save_extensions:
                fig.savefig(template.format(metric=metric) + f".{extension}")
    if show:
        for fig in figs:
            fig.show()
    if close is None:
        from epochal.utils import is_in_jupyter_notebook

        close = not is_in_jupyter_notebook()
    if close:
        for fig in figs:
            plt.close(fig)
    return figs, axes


def plot_metric(
    history: Any,
    metric: str,
    *,
    label: str | None = None,
    title: str = "",
    ax: Any = None,
) -> None:
    """Plot one metric against the epoch: the training curve, and the validation curve when
    the history has ``val_<metric>``, with a legend; x axis ``Epochs`` with integer ticks.

    Args:
        history: The list of epoch log dicts ``fit`` returns, or a pandas DataFrame.
        metric: The column to plot (``'loss'``, ``'acc'``, ...).
        label: The y-axis label; the curves are then named ``'Training <label>'`` and
            ``'Validation <label>'``. Default: no y label, curves named ``metric`` and
            ``'val_' + metric``.
        title: The axes' title.
        ax: The matplotlib ``Axes`` to draw on. Default: the current axes.

    Raises:
        ImportError: matplotlib is missing (install the ``examples`` extra).
        KeyError: ``metric`` is not in the history (the message lists the columns).
        ValueError: The history is empty.
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    columns = _columns(history)
    if metric not in columns:
        raise KeyError(f"No column {metric!r} in the history; its columns are: {', '.join(columns)}.")
    if ax is None:
        ax = plt.gca()
    valid = "val_" + metric
    if _is_dataframe(history):
        epochs = list(history["epoch"])
        values = list(history[metric])
        valid_values = list(history[valid]) if valid in columns else None
    else:
        epochs = [row["epoch"] for row in history]
        values = [row[metric] for row in history]
        valid_values = [row.get(valid) for row in history] if valid in columns else None
    train_label = metric if label is None else "Training " + label
    valid_label = valid if label is None else "Validation " + label
    ax.plot(epochs, values, label=train_label)
    if valid_values is not None:
        ax.plot(epochs, [float("nan") if v is None else v for v in valid_values], label=valid_label)
    ax.set_xlabel("Epochs")
    ax.set_ylabel(label if label is not None else "")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    ax.set_title(title)
