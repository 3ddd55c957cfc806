"""Host syncs in the training path: a constant number per epoch, none per step.

Every call that copies a tensor's value to the host (``Tensor.item``, ``float()``, ``int()``,
``bool()``, ``.cpu()``, ``.tolist()``, ``.numpy()``) is counted while ``Model.fit_generator``
trains with the display off; running twice the steps must make exactly as many calls. With the
display on, the extra calls are the values of the progress lines actually printed: O(refreshes),
not O(steps).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from epochal import Model

_SYNCING = ("item", "__float__", "__int__", "__bool__", "__index__", "cpu", "tolist", "numpy")


class _SyncCounter:
    """Counts host-copying tensor calls made while it is installed."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = dict.fromkeys(_SYNCING, 0)
        self.active = False

    def wrap(self, name: str, original: Any) -> Any:
        @functools.wraps(original)
        def counted(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if self.active:
                self.calls[name] += 1
            return original(tensor, *args, **kwargs)

        return counted

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> Iterator[_SyncCounter]:
    counting = _SyncCounter()
    for name in _SYNCING:
        monkeypatch.setattr(torch.Tensor, name, counting.wrap(name, getattr(torch.Tensor, name)))
    yield counting


def _train(counter: _SyncCounter, steps: int, *, epochs: int = 2, valid: bool = True,
           batches_per_step: int = 1, display: dict[str, Any] | None = None,
           **model_options: Any) -> dict[str, int]:
    torch.manual_seed(0)
    x = torch.rand(steps * 8, 1, 6, 6)
    y = torch.randint(0, 3, (steps * 8,))
    train = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    valid_loader = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=8) if valid else None
    network = nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Linear(16, 3))
    model = Model(network, "sgd", "cross_entropy", **model_options)
    counter.calls = dict.fromkeys(_SYNCING, 0)
    counter.active = True
    try:
        model.fit_generator(train, valid_loader, epochs=epochs, verbose=display is not None,
                            progress_options=display, batches_per_step=batches_per_step)
    finally:
        counter.active = False
    return dict(counter.calls)


class TestHostSyncsPerEpoch:
    def test_counter_sees_a_per_step_sync(self, counter: _SyncCounter) -> None:
        """The counter itself works: a loop calling ``float(loss)`` per step counts each."""
        counter.active = True
        for _ in range(5):
            float(torch.ones(()) * 2)
            torch.ones(2).tolist()
        counter.active = False
        assert counter.calls["__float__"] == 5
        assert counter.calls["tolist"] == 5

    @pytest.mark.parametrize(
        "options",
        [
            {},
            {"batch_metrics": ["accuracy"]},
            {"batch_metrics": ["accuracy"], "epoch_metrics": ["f1"]},
        ],
        ids=["loss", "batch-metric", "epoch-metric"],
    )
    def test_twice_the_steps_make_the_same_syncs(self, counter: _SyncCounter,
                                                 options: dict[str, Any]) -> None:
        """Training 10 and 20 steps per epoch (with validation) copies to the host equally often."""
        short = _train(counter, 10, **options)
        long = _train(counter, 20, **options)
        assert long == short, f"host syncs grow with the steps: {short} -> {long}"

    def test_syncs_per_epoch_are_bounded(self, counter: _SyncCounter) -> None:
        """Each epoch costs a handful of host copies (the epoch's means), not one per step."""
        one = _train(counter, 30, epochs=1, batch_metrics=["accuracy"])
        two = _train(counter, 30, epochs=2, batch_metrics=["accuracy"])
        per_epoch = sum(two.values()) - sum(one.values())
        assert 0 < per_epoch <= 8, (one, two)

    def test_gradient_accumulation_adds_no_per_step_sync(self, counter: _SyncCounter) -> None:
        """Grouping batches into optimizer steps keeps the count constant in the steps too."""
        short = _train(counter, 12, batches_per_step=3)
        long = _train(counter, 24, batches_per_step=3)
        assert long == short, f"host syncs grow with the steps: {short} -> {long}"


class _TickingClock:
    """A clock that advances one second per reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


class TestHostSyncsWithTheDisplay:
    def test_display_syncs_only_for_the_lines_it_prints(self, counter: _SyncCounter) -> None:
        """With the display on, the host copies beyond the display-off count are the printed
        progress lines' values (loss and accuracy, two per line), and fewer lines are printed
        than steps run."""
        off = sum(_train(counter, 30, batch_metrics=["accuracy"]).values())
        out = io.StringIO()
        on = sum(_train(counter, 30, batch_metrics=["accuracy"], display={
            "file": out, "clock": _TickingClock(), "min_interval_s": 5.0}).values())
        printed = [line for line in out.getvalue().splitlines() if " step " in line]
        assert 0 < len(printed) < 2 * (30 + 8)
        assert on - off == 2 * len(printed), (off, on, printed)

    def test_display_between_refreshes_adds_no_sync(self, counter: _SyncCounter) -> None:
        """A display that is never due for a refresh makes exactly the display-off count of host
        copies, for 10 and 20 steps per epoch alike."""
        def display() -> dict[str, Any]:
            return {"file": io.StringIO(), "clock": lambda: 0.0, "min_interval_s": 1.0}

        off = _train(counter, 10, batch_metrics=["accuracy"])
        short = _train(counter, 10, batch_metrics=["accuracy"], display=display())
        long = _train(counter, 20, batch_metrics=["accuracy"], display=display())
        assert short == off
        assert long == short

    def test_summary_line_shows_the_exact_epoch_values(self) -> None:
        """The display's epoch line shows the returned history's values, 6 decimals each."""
        torch.manual_seed(0)
        x, y = torch.rand(80, 1, 6, 6), torch.randint(0, 3, (80,))
        network = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
        model = Model(network, "sgd", "cross_entropy", batch_metrics=["accuracy"])
        out = io.StringIO()
        history = model.fit_generator(
            DataLoader(TensorDataset(x, y), batch_size=8),
            DataLoader(TensorDataset(x[:24], y[:24]), batch_size=8), epochs=2, verbose=True,
            progress_options={"file": out})
        summaries = [line for line in out.getvalue().splitlines() if line.startswith("Epoch: ")]
        assert len(summaries) == 2
        for line, logs in zip(summaries, history):
            for key in ("loss", "acc", "val_loss", "val_acc"):
                assert f" {key}: {logs[key]:f}" in line, (key, line)
