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

Inside the shell and the core, three more rules keep the modules free of cycles:

* ``epochal.callbacks``: never the façade or the composition root (``epochal.model`` and its
  ``_model_*`` mixins, ``epochal.bundle`` and its ``_bundle_*`` parts, ``epochal.experiment``,
  the driver, ``_parallel``, the top package); a callback reaches the model through
  ``self.model`` (the ``TrainingContext`` port), and ``Model`` imports the callbacks.
* ``epochal.core``: no ``import`` of epochal inside a function: a lazy import between core
  modules is how an import cycle hides (``core.loop`` and ``core.mixed_step`` had one; their
  shared helpers now live in ``core.steps``).
* The graph of imports between the modules of ``epochal`` and ``epochal_adapters`` (every
  import, as above) has no cycle.
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


def _from_module(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from ... import`` reads, resolved against ``package`` when relative."""
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imported_modules(
    source: str, module: str, *, is_package: bool = False, in_functions: bool = False
) -> list[str]:
    """Every module an ``import`` or ``from ... import`` in ``source`` names, relative imports
    resolved against ``module`` (a dotted name); with ``in_functions``, only the imports
    inside a function or method (at any depth)."""
    found: list[str] = []
    package = module if is_package else module.rpartition(".")[0]
    tree = ast.parse(source)
    if in_functions:
        scopes = (ast.FunctionDef, ast.AsyncFunctionDef)
        nodes = [n for f in ast.walk(tree) if isinstance(f, scopes) for n in ast.walk(f)]
    else:
        nodes = list(ast.walk(tree))
    for node in dict.fromkeys(nodes):  # nested functions are walked once
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            name = _from_module(node, package)
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


_CALLBACKS_FORBIDDEN = ("epochal.model", "epochal.bundle", "epochal.experiment",
                        "epochal._driver", "epochal._parallel")
_CALLBACKS_FORBIDDEN_PREFIXES = ("epochal._model_", "epochal._bundle_")


def callback_violations(name: str, imported: list[str]) -> list[str]:
    """The imports of callback module ``name`` that reach the façade or the composition root
    (or the top package, which loads them)."""
    return [f"{name} imports {target}" for target in imported
            if target == "epochal" or _within(target, _CALLBACKS_FORBIDDEN)
            or target.startswith(_CALLBACKS_FORBIDDEN_PREFIXES)]


def import_graph(files: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """Module -> the modules of ``files`` (name -> (path, is_package)) it imports, from every
    import statement. ``from pkg import sub`` points at ``pkg.sub`` when that is a module, else
    at ``pkg``; an import of a module outside ``files`` points at its nearest parent inside."""
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in files.items():
        package = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _from_module(node, package)
                candidates = [f"{base}.{alias.name}" for alias in node.names]
                candidates = [c if c in files else base for c in candidates]
            else:
                continue
            for target in candidates:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _all_modules() -> dict[str, tuple[Path, bool]]:
    return {_module_name(p, base): (p, p.name == "__init__.py")
            for base, package in ((SRC, "epochal"), (ADAPTERS, "epochal_adapters"))
            for p in sorted((base / package).rglob("*.py"))}


def _ring_files() -> list[tuple[str, Path, str]]:
    files = [(_module_name(p, SRC), p, "core") for p in sorted((SRC / "epochal" / "core").rglob("*.py"))]
    files += [(_module_name(SRC / "epochal" / f, SRC), SRC / "epochal" / f, "ports")
              for f in ("bus.py", "ports.py")]
    files += [(_module_name(p, ADAPTERS), p, "adapters")
              for p in sorted((ADAPTERS / "epochal_adapters").rglob("*.py"))]
    return files


_FILES = _ring_files()
_CALLBACK_FILES = [(_module_name(p, SRC), p)
                   for p in sorted((SRC / "epochal" / "callbacks").rglob("*.py"))]
_CORE_FILES = [(name, path) for name, path, ring in _FILES if ring == "core"]


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

    @pytest.mark.parametrize(("name", "path"), _CALLBACK_FILES, ids=[f[0] for f in _CALLBACK_FILES])
    def test_callbacks_never_import_the_facade(self, name: str, path: Path) -> None:
        """No callback module imports ``Model``, the bundle, their private parts, the driver or
        the top package (also inside functions)."""
        imported = imported_modules(path.read_text(), name, is_package=path.name == "__init__.py")
        assert callback_violations(name, imported) == []

    @pytest.mark.parametrize(("name", "path"), _CORE_FILES, ids=[f[0] for f in _CORE_FILES])
    def test_core_never_imports_epochal_lazily(self, name: str, path: Path) -> None:
        """No function of the core imports a module of epochal (a lazy import hides a cycle)."""
        lazy = imported_modules(path.read_text(), name, is_package=path.name == "__init__.py",
                                in_functions=True)
        assert [m for m in lazy if m.split(".")[0] == "epochal"] == []

    def test_module_graph_has_no_cycle(self) -> None:
        """The imports between the modules of epochal and epochal_adapters form no cycle."""
        graph = import_graph(_all_modules())
        assert {"epochal.core.loop", "epochal.model", "epochal_adapters.storage"} <= set(graph)
        assert cycles(graph) == []
        assert "epochal.core.steps" in graph["epochal.core.mixed_step"]  # from-imports resolved

    def test_checker_finds_a_callback_reaching_the_model(self) -> None:
        """A callback importing ``Model``, a mixin of it, the bundle or the top package is
        caught; one importing the callback base or the core is not."""
        imported = ["epochal.callbacks.base", "epochal.core.records", "epochal.model",
                    "epochal._model_state", "epochal._bundle_callback", "epochal"]
        assert callback_violations("epochal.callbacks.x", imported) == [
            "epochal.callbacks.x imports epochal.model",
            "epochal.callbacks.x imports epochal._model_state",
            "epochal.callbacks.x imports epochal._bundle_callback",
            "epochal.callbacks.x imports epochal",
        ]

    def test_checker_finds_imports_inside_functions_only(self) -> None:
        """``in_functions`` sees the imports in functions, methods and nested functions, not
        the module-level ones."""
        source = ("import math\nfrom epochal.core import records\n"
                  "def f():\n    from epochal.core.mixed_step import mixed_steps\n"
                  "    def g():\n        import epochal.core.logs\n"
                  "class C:\n    def m(self):\n        from . import batches\n")
        lazy = imported_modules(source, "epochal.core.loop", in_functions=True)
        assert lazy == ["epochal.core.mixed_step", "epochal.core.logs", "epochal.core"]

    def test_checker_finds_a_lazy_cycle(self, tmp_path: Path) -> None:
        """Two modules importing each other, one of them lazily and through ``from pkg import
        module``, make a cycle; a chain without the way back does not."""
        (tmp_path / "loop.py").write_text("def run():\n    from pkg.mixed import steps\n")
        (tmp_path / "mixed.py").write_text("from pkg import loop\n")
        (tmp_path / "steps.py").write_text("import math\n")
        files = {f"pkg.{p.stem}": (p, False) for p in sorted(tmp_path.glob("*.py"))}
        graph = import_graph(files)
        assert graph == {"pkg.loop": {"pkg.mixed"}, "pkg.mixed": {"pkg.loop"}, "pkg.steps": set()}
        assert cycles(graph) == [["pkg.loop", "pkg.mixed"]]
        assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
