"""The examples in the docstrings of ``epochal`` and ``epochal_adapters`` run and pass.

Every module whose source holds a ``>>>`` prompt is collected (found by reading the files, so
modules of optional integrations that are never imported here stay unimported) and its
doctests run with :func:`doctest.testmod`. ``nox -s tests`` runs this module with the rest of
the suite, so an example that stops matching the code fails the build.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (ROOT / "src" / "epochal", ROOT / "adapters" / "epochal_adapters")


def _module_name(path: Path) -> str:
    for package in PACKAGES:
        if path.is_relative_to(package):
            parts = path.relative_to(package.parent).with_suffix("").parts
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise AssertionError(path)


def _modules_with_examples() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted(package.rglob("*.py")):
            if ">>> " in path.read_text(encoding="utf-8"):
                found.append(_module_name(path))
    return found


MODULES = _modules_with_examples()


def test_examples_are_found() -> None:
    """The collection finds the modules known to hold examples (it is not silently empty)."""
    assert {"epochal.bus", "epochal.core.logs", "epochal_adapters.storage"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_pass(name: str) -> None:
    """Every example in the module's docstrings gives the output it shows."""
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{name} holds '>>> ' but doctest found no example in it"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
