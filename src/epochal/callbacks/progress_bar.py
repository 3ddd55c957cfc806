"""Poutyne's text progress bar: :class:`ProgressBar` counts steps and renders as
``' 45.00% |█████████▏          '`` (a percentage, then a bar drawn with eighth blocks)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from epochal.exceptions import ConfigurationError

__all__ = ["EIGHTH_BLOCKS", "ProgressBar"]

#: The partial characters Poutyne draws: a space, then the 1/8 .. 7/8 left blocks.
EIGHTH_BLOCKS: tuple[str, ...] = (" ", "▏", "▎", "▍", "▌", "▋", "▊", "▉")


class ProgressBar:
    """A step counter that renders as a text bar (``str(bar)``), as Poutyne's.

    ``str(bar)`` formats ``bar_format`` with ``percentage`` (the share of ``steps`` done,
    ``'{:6.2f}%'``) and ``bar`` (:meth:`progress_bar_formatting`).

    Args:
        steps: The number of steps of a full bar (``>= 1``).
        bar_length: Width of the bar in characters.
        bar_format: Template with ``{percentage}`` and ``{bar}``; default
            ``'{percentage} |{bar}'``.
        bar_character: Character of a full cell.
        partial_bar_characters: Characters of a partly filled cell, from empty to almost
            full; default :data:`EIGHTH_BLOCKS`.

    Attributes:
        total_steps: ``steps``.
        actual_steps: Steps done so far.
        bar_format, bar_character, partial_bar_characters, bar_length: As given.

    Raises:
        ConfigurationError: ``steps`` or ``bar_length`` is not a positive int, or
            ``partial_bar_characters`` is empty.
    """

    def __init__(
        self,
        steps: int,
        *,
        bar_length: int = 20,
        bar_format: str | None = None,
        bar_character: str = "█",
        partial_bar_characters: Sequence[str] | None = None,
    ) -> None:
        for name, value in (("steps", steps), ("bar_length", bar_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"ProgressBar({name}=...) must be an int >= 1; got "
                                         f"{value!r}.")
        if partial_bar_characters is not None and len(partial_bar_characters) == 0:
            raise ConfigurationError("ProgressBar(partial_bar_characters=...) must not be empty.")
        self.total_steps = steps
        self.bar_format = "{percentage} |{bar}" if bar_format is None else bar_format
        self.bar_character = bar_character
        self.partial_bar_characters: Sequence[str] = (
            EIGHTH_BLOCKS if partial_bar_characters is None else partial_bar_characters
        )
        self.bar_length = bar_length
        self.actual_steps = 0

    def reset(self) -> None:
        """Set the count of steps done back to 0."""
        self.actual_steps = 0

    def update(self, n: int = 1) -> None:
        """Count ``n`` more steps done.

        Args:
            n: Steps to add.
        """
        self.actual_steps += n

    def __str__(self) -> str:
        share = self.actual_steps / self.total_steps
        return self.bar_format.format(percentage=f"{share * 100:6.2f}%",
                                      bar=self.progress_bar_formatting())

    def progress_bar_formatting(self) -> str:
        """The bar alone: full cells, then (below 100%) one partial cell picked by the filled
        fraction of that cell, then spaces, ``bar_length`` characters in all (Poutyne's
        rendering).

        Returns:
            The bar text.
        """
        share = self.actual_steps / self.total_steps
        full = math.floor(share * self.bar_length)
        text = self.bar_character * full
        if share < 1.0:
            fraction = share * self.bar_length - full
            partials = self.partial_bar_characters
            text += partials[min(math.floor(fraction * len(partials)), len(partials) - 1)]
        return text + " " * max(self.bar_length - full - 1, 0)
