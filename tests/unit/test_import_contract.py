"""DESIGN.md's import rule, checked statically on the source (no torch, no epochal import).

Runs in the lint session: ``pytest --noconftest tests/unit/test_import_contract.py``.

The rule, ring by ring (every ``import`` statement counts: module level, inside functions,
under ``TYPE_CHECKING``):

* ``epochal.core``: the standard library, ``torch``, ``attrs``, ``epochal.exceptions`` and
  ``epochal.core`` itself.
* ``epochal.ports`` and ``epochal.bus``: the same, plus each other.
* ``epochal_adapters``: anything third-party, but of epochal only ``epochal.core``,
  ``epochal.ports``, ``epochal.bus`` and ``epochal.exceptions`` (never the shell: ``Model``,
  callbacks, bundle, ``epochal.testing``, the top package).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
ADAPTERS = ROOT / "adapters"

_CORE_ALLOWED = ("torch", "attrs", "epochal.exceptions", "epochal.core")
_PORTS_ALLOWED = (*_CORE_ALLOWED, "epochal.bus", "epochal.ports")
_ADAPTER_EPOCHAL = ("epochal.core", "epochal.ports", "epochal.bus", "epochal.exceptions")


def _module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """Every module an ``import`` or ``from ... import`` in ``source`` names, relative imports
    resolved against ``module`` (a dotted name)."""
    found: list[str] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            if name == "__future__":
                continue
            found.append(name)
    return found


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(name: str, imported: list[str], ring: str) -> list[str]:
    """The imports of module ``name`` that break ``ring``'s rule (``core``, ``ports`` or
    ``adapters``)."""
    stdlib = set(sys.stdlib_module_names)
    bad = []
    for target in imported:
        root = target.split(".")[0]
        if ring == "adapters":
            ok = root != "epochal" or _within(target, _ADAPTER_EPOCHAL)
        else:
            allowed = _CORE_ALLOWED if ring == "core" else _PORTS_ALLOWED
            ok = root in stdlib or _within(target, allowed)
        if not ok:
            bad.append(f"{name} imports {target}")
    return bad


def _ring_files() -> list[tuple[str, Path, str]]:
    files = [(_module_name(p, SRC), p, "core") for p in sorted((SRC / "epochal" / "core").rglob("*.py"))]
    files += [(_module_name(SRC / "epochal" / f, SRC), SRC / "epochal" / f, "ports")
              for f in ("bus.py", "ports.py")]
    files += [(_module_name(p, ADAPTERS), p, "adapters")
              for p in sorted((ADAPTERS / "epochal_adapters").rglob("*.py"))]
    return files


_FILES = _ring_files()


class TestImportContract:
    def test_every_ring_has_modules(self) -> None:
        """The check sees the core, the ports/bus and the adapters (including data/)."""
        names = {name for name, _, _ in _FILES}
        assert {"epochal.core.loop", "epochal.bus", "epochal.ports"} <= names
        assert "epochal_adapters.data.torchvision_source" in names

    @pytest.mark.parametrize(("name", "path", "ring"), _FILES, ids=[f[0] for f in _FILES])
    def test_module_keeps_its_ring_rule(self, name: str, path: Path, ring: str) -> None:
        """Every import of every module of a ring (also inside functions) points inward."""
        imported = imported_modules(path.read_text(), name, is_package=path.name == "__init__.py")
        assert violations(name, imported, ring) == []

    def test_checker_finds_a_lazy_upward_import(self) -> None:
        """An import of the shell inside a core function is caught, as is a third-party one."""
        source = "import math\ndef f():\n    from epochal.model import Model\n    import numpy\n"
        found = violations("epochal.core.x", imported_modules(source, "epochal.core.x"), "core")
        assert found == ["epochal.core.x imports epochal.model", "epochal.core.x imports numpy"]

    def test_checker_resolves_relative_imports(self) -> None:
        """``from ..model import Model`` in an adapter resolves to the shell and is caught."""
        source = "from ..model import Model\nfrom epochal.core.records import EpochRecord\n"
        imported = imported_modules(source, "epochal.core.x")
        assert imported == ["epochal.model", "epochal.core.records"]
        assert violations("epochal_adapters.x", ["epochal.model", "epochal.testing"], "adapters") \
            == ["epochal_adapters.x imports epochal.model", "epochal_adapters.x imports epochal.testing"]

    def test_no_torch_or_package_import(self) -> None:
        """This module needs neither torch nor epochal, so the lint session can run it alone."""
        source = Path(__file__).read_text()
        imported = imported_modules(source, "tests.unit.test_import_contract")
        assert not [m for m in imported if m.split(".")[0] in ("torch", "epochal")]
