"""The logging callbacks, gathered: ``Logger`` (the base), ``CSVLogger`` and
``AtomicCSVLogger`` (:mod:`~epochal.callbacks.csv_logger`), ``TensorBoardLogger``
(:mod:`~epochal.callbacks.tensorboard_logger`), ``StructlogLogger``
(:mod:`~epochal.callbacks.structlog_logger`), and the writer protocols they use."""

from __future__ import annotations

from epochal.callbacks.csv_logger import AtomicCSVLogger, CSVLogger
from epochal.callbacks.logger import Logger
from epochal.callbacks.structlog_logger import StructlogLogger
from epochal.callbacks.tensorboard_logger import TensorBoardLogger
from epochal_adapters.structlog_sink import EventLogger
from epochal_adapters.tensorboard import ScalarWriter

__all__ = [
    "AtomicCSVLogger",
    "CSVLogger",
    "EventLogger",
    "Logger",
    "ScalarWriter",
    "StructlogLogger",
    "TensorBoardLogger",
]
