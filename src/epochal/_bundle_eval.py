"""The bundle's evaluation and inference: ``test``/``test_dataset``/``test_data`` and
``infer``/``infer_dataset``/``infer_data``, as Poutyne's ``ModelBundle`` runs them.

``BundleEvaluation`` is a part of :class:`~epochal.ModelBundle` (a mixin). Each method loads
the ``checkpoint`` weights (with logging; ``'best'`` means the last epoch without
monitoring), then calls the :class:`~epochal.Model` method of the same input kind with the
remaining keywords (``evaluate_generator``/``evaluate_dataset``/``evaluate``,
``predict_generator``/``predict_dataset``/``predict``), so every keyword those accept
(``batch_size``, ``num_workers``, ``collate_fn``, ``dataloader_kwargs``, ``return_pred``,
``concatenate_returns``, ...) works here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from epochal._poutyne_directory import is_poutyne_directory, warn_test_log_not_written
from epochal._snapshots import SnapshotStore
from epochal.core.monitor import Monitor
from epochal.model import Model
from epochal.seeding import set_seeds

__all__ = ["BundleEvaluation"]


class BundleEvaluation:
    """The test and inference methods of :class:`~epochal.ModelBundle`."""

    # Set by ModelBundle.__init__ (and BundleRecords).
    _snapshots: SnapshotStore
    monitor: Monitor | None
    model: Model
    logging: bool
    _warned_test_log: bool = False  # the Poutyne-directory warning of test, once per bundle
    _load_checkpoint: Callable[..., dict[str, Any] | None]

    # ------------------------------------------------------------------ test

    def test(self, test_generator: Iterable[Any], **kwargs: Any) -> Any:
        """Evaluate the ``checkpoint`` weights on ``test_generator`` and write
        ``{name}_log.tsv`` (Poutyne's ``test``).

        With ``logging=False`` the network's current weights are evaluated and no file is
        written (``checkpoint`` has no effect), as in Poutyne.

        Args:
            test_generator: Test batches.
            **kwargs: ``checkpoint`` (``'best'`` by default, see :meth:`load_checkpoint`),
                ``seed`` (42; set before evaluating, None leaves the RNGs alone), ``name``
                (``'test'``: the file is ``{name}_log.tsv``), ``verbose`` (True: prints
                ``Running {name}``, the checkpoint loaded and a progress bar), and the
                keywords of :meth:`Model.evaluate_generator` (``return_pred``,
                ``callbacks``, ``steps``...).

        Returns:
            The evaluation's logs ``{'time': s, 'test_loss': ..., 'test_<metric>': ...}``
            (keys prefixed ``test_`` whatever ``name`` is), or, with ``return_pred`` /
            ``return_ground_truth``, the tuple :meth:`Model.evaluate_generator` returns with
            these logs first. ``{name}_log.tsv`` holds the checkpoint's epoch row followed by
            the logs without ``time`` (only the logs for a checkpoint given as a path).

        Raises:
            ValueError: ``return_dict_format=False`` (the result is always a dict).
            StorageError: The directory does not accept writes (checked before evaluating).

        In a directory written by Poutyne's ``ModelBundle`` the checkpoint is read from
        Poutyne's files and nothing is written: no ``{name}_log.tsv`` (a warning says so, once
        per bundle).
        """
        return self._test(self.model.evaluate_generator, test_generator, **kwargs)

    def test_dataset(self, test_dataset: torch.utils.data.Dataset[Any], **kwargs: Any) -> Any:
        """:meth:`test` on a dataset of ``(x, y)`` examples, through
        :meth:`Model.evaluate_dataset` (``batch_size``, ``num_workers``, ``collate_fn``,
        ``dataloader_kwargs``)."""
        return self._test(self.model.evaluate_dataset, test_dataset, **kwargs)

    def test_data(self, x: Any, y: Any, **kwargs: Any) -> Any:
        """:meth:`test` on tensors or NumPy arrays, through :meth:`Model.evaluate` (floating
        arrays cast to the network's dtype)."""
        return self._test(self.model.evaluate, x, y, **kwargs)

    def _test(
        self,
        evaluate: Callable[..., Any],
        *args: Any,
        checkpoint: str | int = "best",
        seed: int | None = 42,
        name: str = "test",
        verbose: bool = True,
        **kwargs: Any,
    ) -> Any:
        if kwargs.get("return_dict_format") is False:
            raise ValueError(
                "ModelBundle.test returns the logs as a dict; do not pass "
                "return_dict_format=False."
            )
        kwargs["return_dict_format"] = True
        if seed is not None:
            set_seeds(seed)
        row = None
        foreign = self.logging and is_poutyne_directory(self._snapshots.store)
        if self.logging:
            if not foreign:
                self._snapshots.probe()  # {name}_log.tsv is written after the evaluation
            row = self._load_checkpoint(self._checkpoint(checkpoint), verbose=verbose,
                                        strict=True)
        if verbose:
            print(f"Running {name}")
        result = evaluate(*args, verbose=verbose, **kwargs)
        if foreign:  # Poutyne's directory: nothing is written there
            if not self._warned_test_log:
                self._warned_test_log = True
                warn_test_log_not_written(self._snapshots.describe, name)
        elif self.logging:
            logs = result[0] if isinstance(result, tuple) else result
            table = {**(row or {}), **{k: v for k, v in logs.items() if k != "time"}}
            self._snapshots.write_table(f"{name}_log.tsv", [table])
        return result

    # ------------------------------------------------------------------ inference

    def infer(self, generator: Iterable[Any], **kwargs: Any) -> Any:
        """Predictions of the ``checkpoint`` weights on ``generator`` (Poutyne's ``infer``).

        Args:
            generator: Batches of inputs (or ``(x, y)`` with ``has_ground_truth=True``).
            **kwargs: ``checkpoint`` (``'best'`` by default; no effect with
                ``logging=False``), ``verbose``, and the keywords of
                :meth:`Model.predict_generator`.

        Returns:
            What :meth:`Model.predict_generator` returns (NumPy arrays by default).
        """
        return self._predict(self.model.predict_generator, generator, **kwargs)

    def infer_dataset(self, dataset: torch.utils.data.Dataset[Any], **kwargs: Any) -> Any:
        """:meth:`infer` on a dataset, through :meth:`Model.predict_dataset` (``batch_size``,
        ``num_workers``, ``collate_fn``, ``dataloader_kwargs``)."""
        return self._predict(self.model.predict_dataset, dataset, **kwargs)

    def infer_data(self, x: Any, **kwargs: Any) -> Any:
        """:meth:`infer` on tensors or NumPy arrays, through :meth:`Model.predict`."""
        return self._predict(self.model.predict, x, **kwargs)

    def _predict(
        self,
        predict: Callable[..., Any],
        *args: Any,
        verbose: bool = True,
        checkpoint: str | int = "best",
        **kwargs: Any,
    ) -> Any:
        if self.logging:
            self._load_checkpoint(self._checkpoint(checkpoint), verbose=verbose, strict=True)
        return predict(*args, verbose=verbose, **kwargs)

    def _checkpoint(self, checkpoint: str | int) -> str | int:
        """``'best'`` means ``'last'`` without monitoring (Poutyne's rule)."""
        return "last" if checkpoint == "best" and self.monitor is None else checkpoint
