"""plot_history and plot_metric draw real matplotlib figures (Agg backend)."""

from __future__ import annotations

import builtins
import sys

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from epochal.plotting import plot_history, plot_metric

HISTORY = [
    {"epoch": 1, "time": 0.5, "loss": 1.0, "acc": 50.0, "val_loss": 1.2, "val_acc": 45.0, "lr": 0.1},
    {"epoch": 2, "time": 0.4, "loss": 0.5, "acc": 70.0, "val_loss": 0.8, "val_acc": 60.0, "lr": 0.1},
    {"epoch": 3, "time": 0.4, "loss": 0.25, "acc": 80.0, "val_loss": 0.7, "val_acc": 65.0, "lr": 0.01},
]


@pytest.fixture(autouse=True)
def _close_all():
    yield
    plt.close("all")


class TestPlotMetric:
    def test_training_and_validation_curves(self):
        """Both curves are drawn against the epochs, named by the metric, with a legend."""
        _fig, ax = plt.subplots()
        plot_metric(HISTORY, "loss", ax=ax, title="Loss")
        train, valid = ax.get_lines()
        assert list(train.get_xdata()) == [1, 2, 3] and list(train.get_ydata()) == [1.0, 0.5, 0.25]
        assert list(valid.get_ydata()) == [1.2, 0.8, 0.7]
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["loss", "val_loss"]
        assert ax.get_title() == "Loss" and ax.get_xlabel() == "Epochs" and ax.get_ylabel() == ""

    def test_label(self):
        """A label names the y axis and the curves 'Training <label>'/'Validation <label>'."""
        _fig, ax = plt.subplots()
        plot_metric(HISTORY, "acc", label="Accuracy", ax=ax)
        assert ax.get_ylabel() == "Accuracy"
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [
            "Training Accuracy", "Validation Accuracy"]

    def test_no_validation_column(self):
        """A metric without val_ twin draws one curve."""
        _fig, ax = plt.subplots()
        plot_metric(HISTORY, "lr", ax=ax)
        assert len(ax.get_lines()) == 1

    def test_epoch_without_validation_is_a_gap(self):
        """A row without val_ values (an epoch a stop cut short) plots as NaN in the
        validation curve."""
        history = [*HISTORY[:2], {"epoch": 3, "time": 0.1, "loss": 0.3, "acc": 75.0, "lr": 0.1}]
        _fig, ax = plt.subplots()
        plot_metric(history, "loss", ax=ax)
        valid = list(ax.get_lines()[1].get_ydata())
        assert valid[:2] == [1.2, 0.8] and valid[2] != valid[2]

    def test_current_axes_by_default(self):
        """Without ax, the current axes are used."""
        _fig, ax = plt.subplots()
        plot_metric(HISTORY, "loss")
        assert len(ax.get_lines()) == 2

    def test_missing_metric(self):
        """An unknown metric fails with the history's columns listed."""
        with pytest.raises(KeyError, match="val_acc"):
            plot_metric(HISTORY, "accuracy")


class TestPlotHistory:
    def test_one_figure_per_metric(self):
        """Every non-val, non-epoch column gets a figure; titles and labels per metric."""
        figs, axes = plot_history(HISTORY, show=False)
        assert len(figs) == 4 and len(axes) == 4
        assert type(figs) is tuple and type(axes) is tuple  # as Poutyne's (zip(*...))
        assert [ax.get_lines()[0].get_label() for ax in axes] == ["time", "loss", "acc", "lr"]

    def test_metrics_labels_titles(self):
        """metrics, labels and a shared title are applied to each plot."""
        figs, axes = plot_history(HISTORY, metrics=["loss", "acc"], labels=["Loss", "Accuracy"],
                                  titles="Run 1", show=False, close=False)
        assert [ax.get_ylabel() for ax in axes] == ["Loss", "Accuracy"]
        assert [ax.get_title() for ax in axes] == ["Run 1", "Run 1"]
        assert all(plt.fignum_exists(fig.number) for fig in figs)

    def test_figures_closed_by_default(self):
        """Outside a notebook the figures are closed at the end."""
        figs, _ = plot_history(HISTORY, metrics=["loss"], show=False)
        assert not plt.fignum_exists(figs[0].number)

    def test_given_axes(self):
        """Given axes are drawn on and no figure is created."""
        _fig, (a1, a2) = plt.subplots(1, 2)
        given = [a1, a2]
        figs, axes = plot_history(HISTORY, metrics=["loss", "acc"], axes=given, show=False)
        assert figs == () and axes is given and len(a1.get_lines()) == 2 and len(a2.get_lines()) == 2

    def test_save(self, tmp_path):
        """save=True writes one file per metric and extension in save_directory."""
        directory = tmp_path / "plots"
        plot_history(HISTORY, metrics=["loss", "acc"], show=False, save=True,
                     save_directory=str(directory), save_filename_template="run_{metric}",
                     save_extensions=("png", "svg"), fig_kwargs={"figsize": (3, 2)})
        names = sorted(p.name for p in directory.iterdir())
        assert names == ["run_acc.png", "run_acc.svg", "run_loss.png", "run_loss.svg"]
        assert (directory / "run_loss.png").read_bytes()[:4] == b"\x89PNG"

    def test_length_mismatch(self):
        """A labels list of the wrong length fails before drawing."""
        with pytest.raises(ValueError, match="one label per metric"):
            plot_history(HISTORY, metrics=["loss", "acc"], labels=["Loss"], show=False)

    def test_dataframe(self):
        """A pandas DataFrame read from a CSV log plots like the list of dicts."""
        pd = pytest.importorskip("pandas")
        _figs, axes = plot_history(pd.DataFrame(HISTORY), metrics=["loss"], show=False)
        assert list(axes[0].get_lines()[1].get_ydata()) == [1.2, 0.8, 0.7]

    def test_missing_matplotlib_names_the_extra(self, monkeypatch):
        """Without matplotlib the ImportError names the 'examples' extra."""
        real_import = builtins.__import__

        def fake_import(name, *args, **kwargs):
            if name.startswith("matplotlib"):
                raise ImportError("No module named 'matplotlib'")
            return real_import(name, *args, **kwargs)

        for name in [n for n in sys.modules if n.startswith("matplotlib")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setattr(builtins, "__import__", fake_import)
        with pytest.raises(ImportError, match=r"epochal\[examples\]"):
            plot_history(HISTORY, show=False)
