"""ProgressionCallback and EpochProgressionCallback: the lines they print."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from epochal import Model
from epochal.callbacks.progress import EpochProgressionCallback, ProgressionCallback
from epochal.exceptions import ConfigurationError


def _data(n: int = 3):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4 * n, 2, generator=g), torch.randn(4 * n, 1, generator=g)
    return [(x[i:i + 4], y[i:i + 4]) for i in range(0, 4 * n, 4)]


def _model() -> Model:
    torch.manual_seed(0)
    return Model(nn.Linear(2, 1), "sgd", nn.MSELoss())


def _lines(text: str) -> list[str]:
    """The lines as a terminal shows them: each ``\\r`` starts the line over."""
    return [line.split("\r")[-1].rstrip() for line in text.split("\n") if line]


def test_progression_lines_for_steps_epochs_and_tests():
    """Every 2nd training step gets a line with its bar and ETA, rewritten in place; each
    epoch a summary with the step counts, time and metrics; a test a 'Test steps' line."""
    out = io.StringIO()
    callback = ProgressionCallback(coloring=False, show_every_n_train_steps=2,
                                   show_on_valid=False, file=out)
    model = _model()
    history = model.fit_generator(_data(4), _data(1), epochs=2, verbose=False,
                                  callbacks=[callback])
    model.evaluate_generator(_data(2), verbose=False, callbacks=[callback])
    text = out.getvalue()
    steps = [part for part in text.split("\r") if "Step: " in part]
    assert [part[:32] for part in steps[:2]] == ["Epoch: 1/2 Step: 2/4  50.00% |██",
                                                 "Epoch: 1/2 Step: 4/4 100.00% |██"]
    assert "|ETA: 0.00s loss: " in steps[1]
    lines = _lines(text)
    assert lines[0].startswith("Epoch: 1/2 Train steps: 4 Val steps: 1 ")
    assert f"val_loss: {history[0]['val_loss']:f}" in lines[0]
    assert lines[-1].startswith("Test steps: 2 ") and "test_loss: " in lines[-1]
    assert len(lines) == 3 and "\x1b[" not in text


def test_none_shows_only_the_summaries():
    """show_every_n_train_steps='none' prints the epoch lines only."""
    out = io.StringIO()
    _model().fit_generator(_data(), epochs=3, verbose=False, callbacks=[
        ProgressionCallback(show_every_n_train_steps="none", coloring=False, file=out)])
    expected = ["Epoch: 1/3", "Epoch: 2/3", "Epoch: 3/3"]
    assert out.getvalue().count("\r") == 3
    assert [line[:10] for line in _lines(out.getvalue())] == expected


def test_epoch_progression_every_n_epochs():
    """EpochProgressionCallback prints the epochs that are multiples of n, nothing per step."""
    out = io.StringIO()
    history = _model().fit_generator(_data(), epochs=4, verbose=False, callbacks=[
        EpochProgressionCallback(show_every_n_epochs=2, coloring=False, file=out)])
    lines = _lines(out.getvalue())
    assert [line.split()[1] for line in lines] == ["2/4", "4/4"]
    assert f"loss: {history[3]['loss']:f}" in lines[1]


def test_colours_are_drawn_by_default():
    """coloring=True (the default) draws Poutyne's colours, as ANSI codes."""
    out = io.StringIO()
    _model().fit_generator(_data(), epochs=1, verbose=False, callbacks=[
        ProgressionCallback(file=out)])
    assert "\x1b[35mEpoch: \x1b[36m1/1 " in out.getvalue()


class _Names:
    def __init__(self):
        self.metrics_names = ["acc"]


def _drive(callback) -> None:
    """The hook calls of a 2-epoch training with validation, then a test pass."""
    callback.set_params({"epochs": 2, "steps": 3, "valid_steps": 2})
    callback.set_model(_Names())
    callback.on_train_begin({})
    for epoch in (1, 2):
        callback.on_epoch_begin(epoch, {})
        for batch in (1, 2, 3):
            callback.on_train_batch_end(batch, {"batch": batch, "size": 4, "time": 0.5 * batch,
                                                "loss": 1.0 / batch, "acc": 10.0 * batch})
        callback.on_valid_begin({})
        for batch in (1, 2):
            callback.on_valid_batch_end(batch, {"batch": batch, "size": 4, "time": 0.25,
                                                "val_loss": 2.0, "val_acc": 50.0})
        callback.on_valid_end({})
        callback.on_epoch_end(epoch, {"epoch": epoch, "time": 3.5, "loss": 0.5, "acc": 20.0,
                                      "val_loss": 2.0, "val_acc": 50.0})
    callback.on_train_end({})
    callback.set_params({"steps": 2})
    callback.on_test_begin({})
    for batch in (1, 2):
        callback.on_test_batch_end(batch, {"batch": batch, "size": 4, "time": 0.1,
                                           "test_loss": 1.5, "test_acc": 25.0})
    callback.on_test_end({"time": 0.2, "test_loss": 1.5, "test_acc": 25.0})


@pytest.mark.parametrize("options", [{}, {"show_every_n_train_steps": 2, "equal_weights": True},
                                     {"progress_bar": False, "show_on_valid": False}])
def test_output_equals_poutynes(capsys, options):
    """Given the same hook calls, ProgressionCallback writes exactly what Poutyne's does."""
    poutyne = pytest.importorskip("poutyne")
    _drive(poutyne.ProgressionCallback(coloring=False, **options))
    theirs = capsys.readouterr().out
    out = io.StringIO()
    _drive(ProgressionCallback(coloring=False, file=out, **options))
    assert out.getvalue() == theirs


def test_invalid_options_are_refused():
    """Invalid show_every_n_* values and coloring keys are ConfigurationErrors."""
    with pytest.raises(ConfigurationError, match="show_every_n_train_steps"):
        ProgressionCallback(show_every_n_train_steps=0)
    with pytest.raises(ConfigurationError, match="show_every_n_epochs"):
        EpochProgressionCallback(show_every_n_epochs="some")
    with pytest.raises(ConfigurationError, match="coloring"):
        ProgressionCallback(coloring={"bad": "RED"})
