"""The bundle's statistics as pandas tables, the form Poutyne's bundle returns them in.

pandas is imported on call, so importing epochal does not need it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["rows_frame"]


def rows_frame(rows: Sequence[dict[str, Any]], *, columns: Iterable[str] | None = None) -> Any:
    """A ``pandas.DataFrame`` of log rows, one row per dict, columns in the rows' key order.

    Args:
        rows: Log rows (``epoch``, ``time``, ``loss``, ...), as ``log.tsv`` holds them.
        columns: Columns of an empty table (when ``rows`` is empty).

    Returns:
        The table, indexed ``0 .. len(rows) - 1`` as ``pandas.read_csv`` indexes
        ``log.tsv`` in Poutyne.

    Raises:
        ImportError: pandas is not installed; the message says how to install it.
    """
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas is a dependency
        raise ImportError(
            "ModelBundle statistics are pandas DataFrames, as in Poutyne; install pandas "
            "(pip install pandas)."
        ) from exc
    if not rows:
        return pd.DataFrame(columns=list(columns or ()))
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return pd.DataFrame([dict(row) for row in rows], columns=list(names))
