"""Exceptions raised by epochal. Each subclasses the built-in a caller would catch anyway.

Messages say what was wrong, what was expected, and what to do.
"""

from __future__ import annotations

from typing import Any, TypeVar

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


class ShapeMismatchError(EpochalError, ValueError, RuntimeError):
    """The network's output and the target have shapes the loss or a metric rejects.

    A ``ValueError`` and a ``RuntimeError`` (what PyTorch raises for shapes it rejects). Raised
    for an error of the loss or of a metric, it is also an instance of that error's built-in
    class (``IndexError`` for a target out of range...; see :func:`also_as`), so an ``except``
    written for the PyTorch error still catches it.
    """


class CheckpointError(EpochalError, ValueError):
    """A checkpoint or manifest is corrupt, truncated, unsafe, or belongs to another network."""


class ResumeError(EpochalError, RuntimeError):
    """A working directory's state cannot be resumed as asked."""


class NetworkInputError(ShapeMismatchError):
    """The network's forward rejected a batch (shapes or dtypes it cannot take).

    A ``ShapeMismatchError`` that is also an instance of the built-in class of the error it is
    chained to (``TypeError`` for a tuple given to a ``Linear``, ``RuntimeError`` for a shape
    or dtype...), so code that caught the network's own error still catches it.
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


_E = TypeVar("_E", bound=EpochalError)


def _builtin_class(exc: BaseException) -> type[BaseException] | None:
    """The first built-in exception class in ``type(exc)``'s MRO, other than ``Exception``."""
    for klass in type(exc).__mro__:
        if klass.__module__ == "builtins" and klass not in (Exception, BaseException, object):
            return klass
    return None


def also_as(cls: type[_E], original: BaseException | None) -> type[_E]:
    """``cls``, or a subclass of it that is also the built-in class of ``original``.

    Used where epochal turns another error (a network's, a loss's) into its own: the epochal
    error keeps its name, module and message, and an ``except TypeError`` (``IndexError``...)
    written for the original still catches it. ``cls`` itself when it already is one, when
    ``original`` is None or has no built-in class, or when the two cannot be combined (a
    built-in with its own instance layout, such as ``OSError``).
    """
    builtin = _builtin_class(original) if original is not None else None
    if builtin is None or issubclass(cls, builtin):
        return cls
    return _combined(cls, builtin)


_COMBINED: dict[tuple[type, type], type] = {}


def _combined(cls: type[_E], builtin: type[BaseException]) -> type[_E]:
    known = _COMBINED.get((cls, builtin))
    if known is not None:
        return known
    try:
        combined = type(cls.__name__, (cls, builtin), {
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
            "__reduce__": _reduce_combined,
        })
    except TypeError:  # instance lay-out conflict
        combined = cls
    _COMBINED[cls, builtin] = combined
    return combined


def _reduce_combined(self: BaseException) -> tuple[Any, ...]:
    """Pickle a combined class as the pair it was built from (it has no module-level name)."""
    epochal_class, builtin = type(self).__bases__
    return (_rebuild, (epochal_class, builtin, self.args), self.__dict__ or None)


def _rebuild(cls: type[_E], builtin: type[BaseException], args: tuple[Any, ...]) -> _E:
    error: _E = _combined(cls, builtin)(*args)
    return error
