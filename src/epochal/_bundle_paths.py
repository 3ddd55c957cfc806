"""Poutyne's file-name attributes of a bundle: ``get_path`` and ``set_paths``.

:class:`~epochal.ModelBundle` inherits :class:`BundlePaths`, so code written for Poutyne's
``ModelBundle``/``Experiment`` that reads ``bundle.log_filename`` or builds a path with
``bundle.get_path('extra.txt')`` works unchanged.
"""

from __future__ import annotations

import os
import posixpath

__all__ = ["BundlePaths"]


class BundlePaths:
    """The names of the files a bundle writes in its directory, as Poutyne names them.

    Only the files epochal writes have an attribute: the optimizer, LR-scheduler, random-state
    and epoch files Poutyne writes separately are part of epochal's committed state file
    (``state/epoch_*.state``), so they have no path of their own.

    Attributes:
        BEST_CHECKPOINT_FILENAME: Template of the best checkpoints (``{epoch}``).
        MODEL_CHECKPOINT_FILENAME: Weights of the last finished epoch.
        LOG_FILENAME: The training log, one row per epoch.
        PLOTS_DIRECTORY: Curves of each metric.
        TENSORBOARD_DIRECTORY: TensorBoard event files of the training.
        TEST_LOG_FILENAME: Template of ``test`` results (``{name}``).
    """

    BEST_CHECKPOINT_FILENAME = "checkpoint_epoch_{epoch}.ckpt"
    MODEL_CHECKPOINT_FILENAME = "checkpoint.ckpt"
    LOG_FILENAME = "log.tsv"
    PLOTS_DIRECTORY = "plots"
    TENSORBOARD_DIRECTORY = "tensorboard"
    TEST_LOG_FILENAME = "{name}_log.tsv"

    directory: str

    def get_path(self, *paths: str) -> str:
        """The path of ``paths`` inside the bundle's directory (Poutyne's method).

        A local directory is joined with ``os.path.join``; an fsspec URL (``s3://...``,
        ``memory://...``) with ``/``.

        Args:
            *paths: Path components relative to the directory.

        Returns:
            The joined path or URL.
        """
        if "://" in self.directory:
            return posixpath.join(self.directory, *paths)
        return os.path.join(self.directory, *paths)

    def set_paths(self) -> None:
        """Set the file-name attributes from :attr:`directory` (Poutyne's method; the
        constructor calls it, call it again after changing ``directory``).

        Sets ``best_checkpoint_filename``, ``model_checkpoint_filename``, ``log_filename``,
        ``plots_directory``, ``tensorboard_directory`` and ``test_log_filename`` to full
        paths (the templates keep their ``{epoch}``/``{name}`` fields).
        """
        self.best_checkpoint_filename = self.get_path(self.BEST_CHECKPOINT_FILENAME)
        self.model_checkpoint_filename = self.get_path(self.MODEL_CHECKPOINT_FILENAME)
        self.log_filename = self.get_path(self.LOG_FILENAME)
        self.plots_directory = self.get_path(self.PLOTS_DIRECTORY)
        self.tensorboard_directory = self.get_path(self.TENSORBOARD_DIRECTORY)
        self.test_log_filename = self.get_path(self.TEST_LOG_FILENAME)
