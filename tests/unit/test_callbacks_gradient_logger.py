"""Per-batch gradient statistics: GradientLoggerBase and its memory, CSV and TensorBoard
loggers, checked against NumPy statistics of copies of the gradients."""

from __future__ import annotations

import csv
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from epochal import Callback, Model
from epochal.callbacks.gradient_logger import (
    AtomicCSVGradientLogger,
    CSVGradientLogger,
    MemoryGradientLogger,
    TensorBoardGradientLogger,
)
from epochal.exceptions import ConfigurationError
from epochal.testing import MemoryCheckpointStore


class _GradCopies(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.grads: list[dict[str, np.ndarray]] = []

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        self.grads.append(
            {n: p.grad.detach().numpy().copy() for n, p in self.model.network.named_parameters()})


def _fit(callbacks: list[Callback], epochs: int = 2) -> None:
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    model = Model(network, "sgd", nn.MSELoss())
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(8, 3, generator=g), torch.randn(8, 1, generator=g)
    model.fit_generator([(x[:4], y[:4]), (x[4:], y[4:])], epochs=epochs, verbose=False,
                        callbacks=callbacks)


class TestMemoryGradientLogger:
    def test_batch_statistics_match_numpy(self):
        """Every batch's row holds mean/var of |g|, min, abs_min, max, abs_max and the
        requested norms, with its epoch and batch."""
        copies = _GradCopies()
        logger = MemoryGradientLogger(norm_type=[1, 2])
        _fit([copies, logger])
        assert logger.stats_names == ["mean", "var", "min", "abs_min", "max", "abs_max",
                                      "l1", "l2"]
        rows = logger.history["0.weight"]
        assert [(r["epoch"], r["batch"]) for r in rows] == [(1, 1), (1, 2), (2, 1), (2, 2)]
        for row, grads in zip(rows, copies.grads):
            g = grads["0.weight"].astype(np.float64)
            expected = {"mean": np.abs(g).mean(), "var": np.abs(g).var(ddof=1), "min": g.min(),
                        "abs_min": np.abs(g).min(), "max": g.max(), "abs_max": np.abs(g).max(),
                        "l1": np.abs(g).sum(), "l2": np.sqrt((g**2).sum())}
            for key, value in expected.items():
                assert row[key] == pytest.approx(value, rel=1e-5, abs=1e-8), key
        assert set(logger.history) == {"0.weight", "2.weight"}


class TestCSVGradientLogger:
    @pytest.mark.parametrize("cls", [CSVGradientLogger, AtomicCSVGradientLogger])
    def test_one_file_per_layer(self, tmp_path, cls):
        """Each layer's file has the header epoch, batch, stats and one row per batch."""
        memory = MemoryGradientLogger()
        _fit([cls(str(tmp_path / "g_{}.csv")), memory])
        with open(tmp_path / "g_2.weight.csv", newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["epoch", "batch", "mean", "var", "min", "abs_min", "max", "abs_max",
                           "l2.0"]
        assert [r[:2] for r in rows[1:]] == [["1", "1"], ["1", "2"], ["2", "1"], ["2", "2"]]
        assert float(rows[3][2]) == memory.history["2.weight"][2]["mean"]

    def test_append_and_store(self):
        """With a store and append=True a second training adds rows under one header."""
        store = MemoryCheckpointStore()
        _fit([CSVGradientLogger("g/{}.csv", store=store)], epochs=1)
        _fit([CSVGradientLogger("g/{}.csv", store=store, append=True)], epochs=1)
        text = store.read("g/0.weight.csv").decode()
        assert text.count("epoch,batch") == 1 and len(text.strip().splitlines()) == 5

    def test_filename_without_a_layer_field_is_refused(self, tmp_path):
        """A filename without '{}' is a ConfigurationError."""
        with pytest.raises(ConfigurationError, match="needs a"):
            CSVGradientLogger(str(tmp_path / "g.csv"))

    def test_a_regular_file_on_the_path_fails_before_the_first_step(self, tmp_path):
        """Files under an existing regular file are a StorageError at train begin naming the
        callback and the file (not a raw FileExistsError); the file is unchanged."""
        from epochal.exceptions import StorageError

        (tmp_path / "run").write_bytes(b"user data")
        copies = _GradCopies()
        with pytest.raises(StorageError, match=r"CSVGradientLogger's filename .*is an existing "
                                               r"regular file\. Expected a directory path"):
            _fit([copies, CSVGradientLogger(str(tmp_path / "run" / "g_{}.csv"))])
        assert copies.grads == [] and (tmp_path / "run").read_bytes() == b"user data"


class TestTensorBoardGradientLogger:
    def test_steps_count_batches_from_initial_step(self):
        """Each batch is one step after initial_step, one add_scalars per statistic."""
        calls: list[tuple[str, dict[str, float], int]] = []

        class Writer:
            def add_scalars(self, tag, values, step):
                calls.append((tag, dict(values), step))

        _fit([TensorBoardGradientLogger(Writer(), initial_step=10)])
        assert sorted({step for *_, step in calls}) == [11, 12, 13, 14]
        assert ("gradient_stats/0.weight", "abs_max") in {(t, next(iter(v))) for t, v, _ in calls}
