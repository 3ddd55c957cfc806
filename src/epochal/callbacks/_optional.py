"""Importing an optional library a callback needs, with an error that says what to install."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["require"]


def require(module: str, owner: str, pip_name: str) -> Any:
    """Import ``module`` or raise ``ImportError`` naming ``owner`` and ``pip install
    <pip_name>``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{owner} needs the '{pip_name}' package, which is not installed: "
            f"pip install {pip_name}"
        ) from exc
