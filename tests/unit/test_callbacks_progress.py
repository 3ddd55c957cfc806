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


def test_progression_lines_for_steps_epochs_and_tests():
    """Every 2nd training step gets a line with its ETA; each epoch a summary with the step
    counts, time and metrics; a test a 'Test steps' line."""
    out = io.StringIO()
    callback = ProgressionCallback(show_every_n_train_steps=2, show_on_valid=False, file=out)
    model = _model()
    history = model.fit_generator(_data(4), _data(1), epochs=2, verbose=False,
                                  callbacks=[callback])
    model.evaluate_generator(_data(2), verbose=False, callbacks=[callback])
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Epoch: 1/2 Step: 2/4: ETA ")
    assert lines[1].startswith("Epoch: 1/2 Step: 4/4: ETA 0.00s loss: ")
    assert lines[2].startswith("Epoch: 1/2 Train steps: 4 Val steps: 1 ")
    assert f"val_loss: {history[0]['val_loss']:f}" in lines[2]
    assert lines[-1].startswith("Test steps: 2 ") and "test_loss: " in lines[-1]
    assert [line[:13] for line in lines[6:8]] == ["Test Step: 1/", "Test Step: 2/"]
    assert len(lines) == 2 * 3 + 2 + 1


def test_none_shows_only_the_summaries():
    """show_every_n_train_steps='none' prints the epoch lines only."""
    out = io.StringIO()
    _model().fit_generator(_data(), epochs=3, verbose=False, callbacks=[
        ProgressionCallback(show_every_n_train_steps="none", file=out)])
    expected = ["Epoch: 1/3", "Epoch: 2/3", "Epoch: 3/3"]
    assert [line[:10] for line in out.getvalue().splitlines()] == expected


def test_epoch_progression_every_n_epochs():
    """EpochProgressionCallback prints the epochs that are multiples of n, nothing per step."""
    out = io.StringIO()
    history = _model().fit_generator(_data(), epochs=4, verbose=False, callbacks=[
        EpochProgressionCallback(show_every_n_epochs=2, file=out)])
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["2/4", "4/4"]
    assert f"loss: {history[3]['loss']:f}" in lines[1]


def test_invalid_options_are_refused():
    """Invalid show_every_n_* values and coloring keys are ConfigurationErrors."""
    with pytest.raises(ConfigurationError, match="show_every_n_train_steps"):
        ProgressionCallback(show_every_n_train_steps=0)
    with pytest.raises(ConfigurationError, match="show_every_n_epochs"):
        EpochProgressionCallback(show_every_n_epochs="some")
    with pytest.raises(ConfigurationError, match="coloring"):
        ProgressionCallback(coloring={"bad": "RED"})
