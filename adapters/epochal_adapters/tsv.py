"""The one TSV/CSV table format of epochal: the bundle's ``log.tsv`` and ``CSVLogger`` files.

A table is UTF-8 text, one header row, then one row per record; cells are written by
:func:`format_cell` (empty for None, integers for counters, ``repr`` of floats so that a value
read back with ``float()`` is bit-identical). Rows are produced whole, so a writer that rewrites
the file through a :class:`~epochal.ports.CheckpointStore` (atomic per name) never leaves a torn
row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["INT_COLUMNS", "columns_of", "format_cell", "format_table", "parse_table"]

#: Columns whose float values that hold an integer are written as integers.
INT_COLUMNS = frozenset({"epoch", "batch", "size"})


def format_cell(key: str, value: Any) -> str:
    """One cell: empty for None, ``int`` for :data:`INT_COLUMNS` holding an integral float,
    ``repr`` of floats (round-trips exactly), ``str`` of anything else. 0-dim tensors and
    NumPy scalars are converted with ``.item()`` first."""
    if value is None:
        return ""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if key in INT_COLUMNS and isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    return str(value)


def columns_of(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The keys of ``rows`` in first-seen order (the columns of a table of these rows)."""
    columns: list[str] = []
    seen: set[str] = set()
    for row in rows:
        for key in row:
            if key not in seen:
                seen.add(key)
                columns.append(key)
    return columns


def format_table(
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any] | Sequence[str]],
    *,
    separator: str = "\t",
) -> bytes:
    """The table's bytes: a header of ``columns``, then one line per row.

    Args:
        columns: Header names, in order.
        rows: Mappings (cells looked up by column, missing ones empty, formatted with
            :func:`format_cell`) or sequences of already formatted cells.
        separator: One-character field delimiter (``'\\t'`` TSV, ``','`` CSV).

    Returns:
        UTF-8 bytes, ``\\n`` line endings, quoting as Python's ``csv`` module does.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=separator, lineterminator="\n")
    writer.writerow(list(columns))
    for row in rows:
        if isinstance(row, Mapping):
            writer.writerow([format_cell(c, row.get(c)) for c in columns])
        else:
            writer.writerow(list(row))
    return buffer.getvalue().encode("utf-8")


def parse_table(data: bytes | str, *, separator: str = "\t") -> tuple[list[str], list[list[str]]]:
    """``(header, rows)`` of a table written by :func:`format_table` (cells as strings; a
    leading UTF-8 BOM is ignored; empty lines skipped). An empty input gives ``([], [])``."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    parsed = [r for r in csv.reader(io.StringIO(text), delimiter=separator) if r]
    if not parsed:
        return [], []
    return parsed[0], parsed[1:]
