"""ModelBundle statistics as pandas DataFrames, as Poutyne returns them."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from epochal import ModelBundle
from epochal._bundle_stats import rows_frame


def _batches(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(4 * n, 3, generator=g), torch.randn(4 * n, 1, generator=g)
    return [(x[i : i + 4], y[i : i + 4]) for i in range(0, 4 * n, 4)]


def test_rows_frame_keeps_order_types_and_empty_columns():
    """Rows become a table with the rows' key order and integer epochs; no rows, an empty
    table with the given columns."""
    frame = rows_frame([{"epoch": 1, "time": 0.5, "loss": 2.0},
                        {"epoch": 2, "time": 0.4, "loss": 1.0}])
    assert list(frame.columns) == ["epoch", "time", "loss"]
    assert frame["epoch"].tolist() == [1, 2] and frame["epoch"].dtype.kind == "i"
    empty = rows_frame([], columns=["epoch"])
    assert empty.empty and list(empty.columns) == ["epoch"]


def test_bundle_stats_are_poutynes_dataframes(tmp_path):
    """get_stats is the log as a DataFrame (equal to the history train returned),
    get_best_epoch_stats the best row as a one-row DataFrame keeping its index,
    get_saved_epochs the rows of the epochs with a best checkpoint."""
    torch.manual_seed(0)
    bundle = ModelBundle.from_network(str(tmp_path), nn.Linear(3, 1), loss_function="mse",
                                      optimizer={"optim": "sgd", "lr": 0.05})
    history = bundle.train(_batches(3, 0), _batches(2, 1), epochs=4, verbose=False)
    stats = bundle.get_stats()
    assert isinstance(stats, pd.DataFrame)
    assert stats[["epoch", "loss", "val_loss"]].to_dict("records") == [
        {k: row[k] for k in ("epoch", "loss", "val_loss")} for row in history]
    best = bundle.get_best_epoch_stats()
    best_index = int(stats["val_loss"].idxmin())
    assert isinstance(best, pd.DataFrame) and list(best.index) == [best_index]
    assert best["val_loss"].item() == stats["val_loss"].min()
    saved = bundle.get_saved_epochs()
    running_best = stats["val_loss"].cummin()
    improved = stats["epoch"][stats["val_loss"] <= running_best].tolist()
    assert saved["epoch"].tolist() == improved
