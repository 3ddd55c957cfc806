"""ProgressBar: Poutyne's text bar, rendered character for character as Poutyne's."""

from __future__ import annotations

import pytest

from epochal import ProgressBar
from epochal.exceptions import ConfigurationError


@pytest.mark.parametrize("steps", [1, 3, 7, 40])
def test_every_count_renders_as_poutynes(steps):
    """For each count from 0 to steps, str() and the bar equal Poutyne's output."""
    poutyne = pytest.importorskip("poutyne")
    ours, theirs = ProgressBar(steps), poutyne.ProgressBar(steps)
    for _ in range(steps + 1):
        assert str(ours) == str(theirs)
        assert ours.progress_bar_formatting() == theirs.progress_bar_formatting()
        assert len(ours.progress_bar_formatting()) == 20
        ours.update()
        theirs.update()


def test_format_characters_and_reset():
    """bar_format, bar_character, bar_length and reset work as documented."""
    bar = ProgressBar(4, bar_length=4, bar_format="[{bar}] {percentage}", bar_character="#",
                      partial_bar_characters=["0", "1"])
    bar.update(2)
    assert str(bar) == "[##0 ]  50.00%"
    bar.update(2)
    assert str(bar) == "[####] 100.00%"
    bar.reset()
    assert bar.actual_steps == 0 and str(bar) == "[0   ]   0.00%"


def test_bad_steps_are_refused():
    """steps must be a positive int."""
    with pytest.raises(ConfigurationError, match="steps"):
        ProgressBar(0)
