"""docs/architecture.md's module table lists every module of the code, in its ring."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "architecture.md"
ROW = re.compile(r"^\| `(?P<path>[^`]+\.py)` \| (?P<ring>[^|]+?) \| (?P<job>[^|]+?) \| (?P<lines>\d+) \|$")


def _rows() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            rows[match["path"]] = (match["ring"], match["job"])
    return rows


def _modules() -> list[str]:
    return sorted(
        str(path.relative_to(ROOT))
        for package in ("src/epochal", "adapters/epochal_adapters")
        for path in (ROOT / package).rglob("*.py")
    )


def _ring_of(path: str) -> str:
    if path.startswith("src/epochal/core/"):
        return "core"
    if path == "src/epochal/exceptions.py":
        return "core (shared)"
    if path in ("src/epochal/bus.py", "src/epochal/ports.py"):
        return "bus and ports"
    if path.startswith("adapters/"):
        return "adapters"
    return "shell"


def test_every_module_has_a_row_and_every_row_a_module() -> None:
    """Each .py file of src/epochal and adapters/epochal_adapters has exactly one row, and no
    row names a file that is gone."""
    rows = _rows()
    modules = _modules()
    assert sorted(set(modules) - set(rows)) == [], "modules missing from the table"
    assert sorted(set(rows) - set(modules)) == [], "rows for modules that do not exist"


def test_each_row_names_the_ring_its_path_is_in() -> None:
    """The ring column agrees with where the file lives (core/, bus and ports, adapters/, or
    the shell, whose rows say which part of it)."""
    for path, (ring, job) in _rows().items():
        expected = _ring_of(path)
        if expected == "shell":
            assert ring == "shell" or ring.startswith("shell: "), (path, ring)
        else:
            assert ring == expected, (path, ring)
        assert job.strip(), path
