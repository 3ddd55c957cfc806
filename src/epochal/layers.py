"""Poutyne's layers: :class:`Lambda`, a module around a function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["Lambda"]


class Lambda(nn.Module):
    """A module whose forward pass calls a function on its inputs.

    Useful to put a small operation in an ``nn.Sequential``:
    ``nn.Sequential(nn.Conv2d(1, 8, 3), Lambda(lambda x: x.flatten(1)), nn.Linear(...))``.
    The function holds no parameters: anything it closes over is not trained nor saved.

    Args:
        func: Called with the module's positional inputs; its result is the output.

    Raises:
        TypeError: ``func`` is not callable.
    """

    def __init__(self, func: Callable[..., Any]) -> None:
        super().__init__()
        if not callable(func):
            raise TypeError(f"Lambda needs a callable; got {type(func).__name__}")
        self.func = func

    def forward(self, *x: Any) -> Any:
        """Return ``func(*x)``."""
        return self.func(*x)

    def extra_repr(self) -> str:
        return getattr(self.func, "__qualname__", type(self.func).__name__)
