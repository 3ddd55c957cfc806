"""Exceptions raised by epochal. Each subclasses the built-in a caller would catch anyway.

Messages say what was wrong, what was expected, and what to do.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigurationError",
    "DistributedError",
    "EmptyLoaderError",
    "EpochalError",
    "MonitorKeyError",
    "NetworkInputError",
    "PeerFailedError",
    "ResumeError",
    "ShapeMismatchError",
    "ShardingError",
    "StorageError",
]


class EpochalError(Exception):
    """Base class of every epochal-specific error."""


class ConfigurationError(EpochalError, ValueError):
    """An argument has a wrong value (unknown name, bad mode, negative patience...)."""


class MonitorKeyError(EpochalError, KeyError):
    """A callback monitors, or formats a filename with, a key the training will never log."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly.
        return str(self.args[0]) if self.args else ""


class EmptyLoaderError(EpochalError, ValueError):
    """A loader yielded no batch where at least one was needed."""


class ShapeMismatchError(EpochalError, ValueError):
    """The network's output and the target have shapes the loss or a metric rejects."""


class CheckpointError(EpochalError, ValueError):
    """A checkpoint or manifest is corrupt, truncated, unsafe, or belongs to another network."""


class ResumeError(EpochalError, RuntimeError):
    """A working directory's state cannot be resumed as asked."""


class NetworkInputError(ShapeMismatchError, RuntimeError):
    """The network's forward rejected a batch (shapes or dtypes it cannot take).

    A ``ShapeMismatchError`` that is also a ``RuntimeError``, like the PyTorch error it is
    chained to, so code that caught PyTorch's error still catches it.
    """


class StorageError(EpochalError, OSError):
    """A working directory or bucket cannot be used: missing bucket, read-only directory, a
    path that is a regular file. Raised before training starts."""


class DistributedError(EpochalError, RuntimeError):
    """The distributed setup failed: a bad torchrun environment, a process group that could
    not start, a peer rank that failed, or a world size that does not match a snapshot."""


class PeerFailedError(DistributedError):
    """Another rank raised an exception; this rank stopped at the same step instead of hanging.

    Attributes:
        failed_rank: The lowest rank that reported an error.
    """

    def __init__(self, message: str, *, failed_rank: int) -> None:
        super().__init__(message)
        self.failed_rank = failed_rank


class ShardingError(EpochalError, TypeError):
    """A loader cannot be split between ranks (an iterable dataset, a custom sampler...)."""
