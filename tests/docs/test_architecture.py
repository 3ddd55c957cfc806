"""docs/architecture.md's module tables list every module of the code, each under its ring."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "architecture.md"
HEADING = re.compile(r"^### (?P<ring>[^:]+): `(?P<base>[^`]+)`$")
ROW = re.compile(r"^\| `(?P<module>[^`]+\.py)` \|(?P<cells>.*)\| (?P<lines>\d+) \|$")


def _rows() -> dict[str, tuple[str, list[str]]]:
    """Full path -> (the ring of its table, its other cells)."""
    rows: dict[str, tuple[str, list[str]]] = {}
    ring = base = None
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        heading = HEADING.match(line)
        if heading:
            ring, base = heading["ring"], heading["base"]
            continue
        row = ROW.match(line)
        if row and base is not None and ring is not None:
            path = base + row["module"]
            assert path not in rows, f"{path} has two rows"
            rows[path] = (ring, [cell.strip() for cell in row["cells"].split("|")])
            LINES[path] = int(row["lines"])
    return rows


LINES: dict[str, int] = {}  # full path -> the line count its row gives


def _modules() -> list[str]:
    return sorted(
        str(path.relative_to(ROOT))
        for package in ("src/epochal", "adapters/epochal_adapters")
        for path in (ROOT / package).rglob("*.py")
    )


def _ring_of(path: str) -> str:
    if path.startswith("src/epochal/core/"):
        return "Core"
    if path == "src/epochal/exceptions.py":
        return "Shared by every ring"
    if path in ("src/epochal/bus.py", "src/epochal/ports.py"):
        return "Bus and ports"
    if path.startswith("adapters/"):
        return "Adapters"
    return "Shell"


def test_every_module_has_a_row_and_every_row_a_module() -> None:
    """Each .py file of src/epochal and adapters/epochal_adapters has exactly one row, and no
    row names a file that is gone."""
    rows = _rows()
    modules = _modules()
    assert sorted(set(modules) - set(rows)) == [], "modules missing from the tables"
    assert sorted(set(rows) - set(modules)) == [], "rows for modules that do not exist"


def test_each_row_sits_in_the_table_of_its_ring() -> None:
    """A module's table is the ring its path puts it in, and its job cell is not empty."""
    for path, (ring, cells) in _rows().items():
        assert ring == _ring_of(path), (path, ring)
        assert all(cells), path


def test_line_counts_are_current() -> None:
    """Each row's line count is within 10% (or 10 lines) of the module's: the table is where
    a reader sizes the house, so a count left behind by a split misleads."""
    _rows()
    stale = {}
    for path, stated in LINES.items():
        actual = len((ROOT / path).read_text(encoding="utf-8").splitlines())
        if abs(actual - stated) > max(10, stated // 10):
            stale[path] = (stated, actual)
    assert stale == {}, f"rows whose line count is stale (stated, actual): {stale}"


def test_ring_totals_match_their_tables() -> None:
    """The "N modules, M lines." line under each ring's heading counts the rows of its table
    and sums their line counts."""
    total = re.compile(r"^(?P<n>\d+) modules?, (?P<lines>\d+) lines\.$")
    stated: list[tuple[int, int]] = []
    found: list[list[int]] = []
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        if HEADING.match(line):
            found.append([0, 0])
        elif line.startswith("### "):
            found.append([0, 0])  # a heading of another kind: its rows are not a ring's
        match = total.match(line)
        if match:
            stated.append((int(match["n"]), int(match["lines"])))
        row = ROW.match(line)
        if row and found:
            found[-1][0] += 1
            found[-1][1] += int(row["lines"])
    rings = [tuple(counts) for counts in found if counts[0]]
    assert stated and stated == rings
