"""Callback hooks as callbacks/base.py delivers them from the training records."""

from __future__ import annotations

import torch
from torch import nn

from epochal import Callback, Model


def _batches(n_batches: int, size: int = 4):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_batches * size, 3, generator=g)
    y = torch.randn(n_batches * size, 1, generator=g)
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


class TestTrainEndLogs:
    def test_on_train_end_receives_an_empty_dict_as_in_poutyne(self):
        """on_train_end gets {} (Poutyne 1.19 passes an empty dict), while on_epoch_end
        still gets the epoch's logs."""
        seen: list[tuple[str, dict]] = []

        class Spy(Callback):
            def on_epoch_end(self, epoch_number, logs):
                seen.append(("epoch_end", dict(logs)))

            def on_train_end(self, logs):
                seen.append(("train_end", dict(logs)))

        torch.manual_seed(0)
        Model(nn.Linear(3, 1), "sgd", "mse").fit_generator(
            _batches(2), epochs=2, callbacks=[Spy()], verbose=False)
        assert [hook for hook, _ in seen] == ["epoch_end", "epoch_end", "train_end"]
        assert "loss" in seen[1][1] and seen[1][1]["epoch"] == 2
        assert seen[2][1] == {}
