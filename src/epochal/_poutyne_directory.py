"""A directory written by Poutyne's ``ModelBundle``, read as Poutyne reads it, never changed.

Such a directory has none of epochal's manifests or state files, so training there is refused
(see :meth:`epochal._snapshots.SnapshotStore.read_latest`). The read-only calls of
:class:`~epochal.ModelBundle` (``get_stats``, ``get_best_epoch_stats``, ``get_saved_epochs``,
``load_checkpoint``, ``test*``, ``infer*``, ``is_better_than``) read Poutyne's own files
instead: the epoch rows of ``log.tsv`` (Poutyne's CSVLogger table, read with pandas as
Poutyne's ``get_stats`` reads it) and the weights files ``checkpoint.ckpt`` and
``checkpoint_epoch_{epoch}.ckpt`` (plain ``state_dict`` files, loaded weights-only). Nothing
in the directory is written, renamed or deleted: ``test`` returns its logs but does not write
``{name}_log.tsv`` there, and says so once per bundle with a warning.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from epochal.core import resume
from epochal.exceptions import CheckpointError
from epochal.ports import CheckpointStore

__all__ = ["is_poutyne_directory", "poutyne_log_rows", "warn_test_log_not_written"]


def is_poutyne_directory(store: CheckpointStore) -> bool:
    """Whether ``store`` holds a directory of Poutyne's ``ModelBundle`` and no epochal bundle
    (see :func:`epochal.core.resume.written_by_poutyne_only`)."""
    return resume.written_by_poutyne_only(store.names())


def poutyne_log_rows(store: CheckpointStore) -> list[dict[str, Any]]:
    """The rows of Poutyne's ``log.tsv``, one dict per epoch in the file's column order, or
    ``[]`` when there is none (Poutyne's bundle trained with ``logging=False``).

    Raises:
        CheckpointError: ``log.tsv`` is not a tab-separated table; the message names it.
    """
    if not store.exists(resume.LOG):
        return []
    import pandas as pd

    source = store.url(resume.LOG)
    try:
        table = pd.read_csv(io.BytesIO(store.read(resume.LOG)), sep="\t")
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError is a ValueError
        raise CheckpointError(
            f"{source} is not a readable log table ({exc}). Expected the tab-separated "
            "log.tsv Poutyne's ModelBundle writes."
        ) from exc
    if "epoch" not in table.columns:
        raise CheckpointError(
            f"{source} has no 'epoch' column (columns: {', '.join(map(str, table.columns))}). "
            "Expected the log.tsv Poutyne's ModelBundle writes."
        )
    return [dict(row) for row in table.to_dict("records")]


def warn_test_log_not_written(describe: str, name: str) -> None:
    """Say that ``{name}_log.tsv`` was not written in Poutyne's directory ``describe``."""
    warnings.warn(
        f"{describe} was written by Poutyne's ModelBundle: epochal reads it but changes "
        f"nothing there, so test did not write {name}_log.tsv (Poutyne's test would). The "
        "test logs are returned; save them yourself if you need the file. (Said once per "
        "bundle.)",
        UserWarning,
        stacklevel=4,
    )
