"""TensorBoard: the writer the TensorBoard callbacks write scalars and histograms to.

``torch.utils.tensorboard.SummaryWriter`` needs the ``tensorboard`` package (the
``epochal[tensorboard]`` extra); :func:`summary_writer` builds one and says how to install
it when it is missing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["ScalarWriter", "summary_writer"]


@runtime_checkable
class ScalarWriter(Protocol):
    """What the TensorBoard callbacks need of a writer: ``SummaryWriter``'s ``add_scalar``,
    ``add_scalars``, ``flush`` and ``close``."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> Any: ...

    def add_scalars(
        self, main_tag: str, tag_scalar_dict: Mapping[str, float], global_step: int
    ) -> Any: ...

    def flush(self) -> Any: ...

    def close(self) -> Any: ...


def summary_writer(log_dir: str | os.PathLike[str], **kwargs: Any) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` writing event files under ``log_dir``.

    Args:
        log_dir: The run's directory (local path or a URL TensorBoard supports).
        **kwargs: Other ``SummaryWriter`` arguments (``comment``, ``flush_secs``...).

    Returns:
        The writer.

    Raises:
        ImportError: The ``tensorboard`` package is not installed (``pip install tensorboard``
            or ``pip install epochal[tensorboard]``).
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ImportError(
            "TensorBoard logging needs the 'tensorboard' package: pip install tensorboard "
            "(or pip install epochal[tensorboard])."
        ) from exc
    return SummaryWriter(log_dir=os.fspath(log_dir), **kwargs)
