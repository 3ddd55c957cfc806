"""ColorProgress: Poutyne's progress lines, character for character, with ANSI colours."""

from __future__ import annotations

import io

import pytest

from epochal import ColorProgress
from epochal.callbacks.color_progress import ANSI_COLORS, format_duration
from epochal.exceptions import ConfigurationError


def _session(progress) -> None:
    """One training epoch with a bar, validation, a test pass and a prediction pass."""
    progress.set_progress_bar(3)
    progress.on_epoch_begin(2, 10)
    for batch in (1, 2, 3):
        progress.on_train_batch_end(remaining_time=3.0 - batch, batch_number=batch,
                                    metrics_str="loss: 0.500000, acc: 75.000000", steps=3)
    progress.on_valid_begin()
    progress.on_valid_batch_end(remaining_time=0.25, batch_number=1, metrics_str="", steps=3)
    progress.on_epoch_end(4000.5, 3, 1, "loss: 0.5, acc: 75.0, val_loss: 0.4, val_acc: 80.0")
    progress.close_progress_bar()
    progress.on_test_begin()
    progress.on_test_batch_end(remaining_time=0.5, batch_number=12, metrics_str="loss: 1.0")
    progress.on_test_end(1.5, 12, "test_loss: 1.0")
    progress.on_predict_begin()
    progress.on_predict_batch_end(remaining_time=0.5, batch_number=1, metrics_str="", steps=2,
                                  do_print=False)
    progress.on_predict_end(0.75, 2, "")


def test_lines_equal_poutynes_without_colours(capsys):
    """Without colours every byte written equals Poutyne's ColorProgress output."""
    poutyne_progress = pytest.importorskip("poutyne.framework.callbacks.color_formatting")
    _session(poutyne_progress.ColorProgress(coloring=False))
    theirs = capsys.readouterr().out
    buffer = io.StringIO()
    _session(ColorProgress(False, file=buffer))
    assert buffer.getvalue() == theirs
    assert "Epoch:  2/10 Step: 1/3  33.33% |" in theirs and "1h6m40.50s" in theirs


def test_colours_wrap_each_part():
    """With colours on, each part carries its ANSI code and each line ends with a reset."""
    buffer = io.StringIO()
    progress = ColorProgress({"time_color": "LIGHTRED_EX"}, file=buffer)
    progress.on_epoch_begin(1, 3)
    progress.on_epoch_end(0.5, 4, None, "loss: 1.0")
    line = buffer.getvalue()
    magenta, cyan = ANSI_COLORS["MAGENTA"], ANSI_COLORS["CYAN"]
    assert line.startswith(f"\r{magenta}Epoch: {cyan}1/3 {magenta}Train steps: {cyan}4 ")
    assert f"{ANSI_COLORS['LIGHTRED_EX']}0.50s " in line
    assert f"{magenta}loss:{ANSI_COLORS['LIGHTBLUE_EX']} 1.0" in line
    assert line.endswith("\x1b[0m\n")


def test_a_shorter_line_is_padded_over_the_previous_one():
    """A step line shorter than the previous one is padded with spaces to cover it."""
    buffer = io.StringIO()
    progress = ColorProgress(False, file=buffer)
    progress.on_test_batch_end(remaining_time=0.5, batch_number=1, metrics_str="loss: 10.0")
    first = buffer.getvalue()
    progress.on_test_batch_end(remaining_time=0.5, batch_number=2, metrics_str="")
    assert len(buffer.getvalue()) == 2 * len(first)


@pytest.mark.parametrize("coloring", [{"txt_color": "RED"}, {"text_color": "PINK"}, "yes"])
def test_bad_coloring_is_refused(coloring):
    """An unknown key, an unknown colour or a non-bool/dict is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match=r"colou?r"):
        ColorProgress(coloring)


def test_format_duration():
    """Durations print as Poutyne's: zero leading units left out."""
    assert format_duration(0.1) == "0.10s"
    assert format_duration(125.25) == "2m5.25s"
    assert format_duration(90061.0) == "1d1h1m1.00s"
