"""Poutyne's documented public API exists in epochal with compatible signatures.

``tests/data/poutyne_api.json`` lists every documented public name of Poutyne 1.19 with its
signature (and, for classes, the signatures of its public methods); it is written by
``tests/tools/dump_poutyne_api.py``, so this test needs no Poutyne install. For each entry:

* the name exists in ``epochal``;
* each Poutyne parameter exists in epochal's signature with a compatible kind (a parameter
  Poutyne lets callers pass by position is at the same position in epochal; a keyword one
  may be keyword-only or positional-or-keyword) and the same default;
* epochal may add parameters only if they have a default (or are ``*args``/``**kwargs``)
  and come after Poutyne's positional ones.

Two allow-lists, one line per entry, keyed ``Name``, ``Name.member`` or
``Name[.member](parameter)``:

* ``NOT_YET``: not implemented yet (issue #10); empty since every name is implemented.
  ``test_not_yet_is_empty`` keeps it empty (a new Poutyne name goes in with its
  implementation), and ``test_not_yet_entries_still_fail`` fails when an entry passes.
* ``DIFFERENCES``: deliberate differences, each pointing to its row of
  ``docs/differences.md``.
"""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path
from typing import Any

import pytest

import epochal

API_FILE = Path(__file__).resolve().parents[1] / "data" / "poutyne_api.json"
API: dict[str, Any] = json.loads(API_FILE.read_text(encoding="utf-8"))["names"]

# Not implemented yet (#10). One line per entry; delete a line when its test passes.
NOT_YET: dict[str, str] = {
}

# Deliberate differences; each comment names its row in docs/differences.md.
DIFFERENCES: dict[str, str] = {
}

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _default_repr(value: Any) -> str | None:
    if value is inspect.Parameter.empty:
        return None
    if inspect.isroutine(value) or inspect.isclass(value):
        return f"<{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')}>"
    return repr(value)


def _signature(obj: Any, *, drop_first: bool) -> list[inspect.Parameter] | None:
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return None
    return params[1:] if drop_first and params else params


def _same_default(theirs: str, ours: Any) -> bool:
    if _default_repr(ours) == theirs:
        return True
    try:  # 0 and 0.0, (1, 2) and [1, 2] written differently but equal
        value = ast.literal_eval(theirs)
    except (ValueError, SyntaxError):
        return False
    try:
        return (bool(value == ours) and type(value) in (int, float, bool, str, type(None))) or (
            isinstance(value, (tuple, list)) and isinstance(ours, (tuple, list))
            and list(value) == list(ours)
        )
    except Exception:
        return False


def _is_pass_through(theirs: list[dict[str, Any]]) -> bool:
    # Poutyne's ``(*args, **kwargs)`` forwards everything to PyTorch (the LR-scheduler
    # wrappers, Model.cuda): there is no Poutyne contract to check beyond "accepts the
    # PyTorch arguments", which an explicit PyTorch signature in epochal satisfies.
    return bool(theirs) and {p["kind"] for p in theirs} <= {"VAR_POSITIONAL", "VAR_KEYWORD"}


def compare_parameters(
    key: str, theirs: list[dict[str, Any]] | None, ours: list[inspect.Parameter] | None
) -> dict[str, str]:
    """Problems of epochal's parameters against Poutyne's, keyed ``key(parameter)``."""
    if theirs is None or _is_pass_through(theirs):
        return {}
    if ours is None:
        return {key: "epochal's signature cannot be read"}
    problems: dict[str, str] = {}
    by_name = {p.name: p for p in ours}
    our_positional = [p for p in ours if p.kind in _POSITIONAL]
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in ours)
    has_var_pos = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in ours)
    their_positional = [p for p in theirs if p["kind"] in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")]
    for param in theirs:
        name, kind = param["name"], param["kind"]
        where = f"{key}({name})"
        if kind == "VAR_POSITIONAL":
            # Poutyne forwards *args to a callee (PyTorch's scheduler, the checkpoint base
            # class); epochal may spell the callee's parameters out instead.
            if not has_var_pos and len(our_positional) <= len(their_positional):
                problems[where] = "Poutyne takes *args; epochal does not"
            continue
        if kind == "VAR_KEYWORD":
            if not has_var_kw:
                problems[where] = "Poutyne takes **kwargs; epochal does not"
            continue
        if kind in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD"):
            position = their_positional.index(param)
            if position >= len(our_positional):
                if not (has_var_pos and kind == "POSITIONAL_ONLY"):
                    problems[where] = f"not accepted at position {position}"
                continue
            mine = our_positional[position]
            if kind == "POSITIONAL_OR_KEYWORD" and (
                mine.name != name or mine.kind is inspect.Parameter.POSITIONAL_ONLY
            ):
                problems[where] = f"position {position} is {mine.name!r} in epochal"
                continue
        else:  # KEYWORD_ONLY
            mine = by_name.get(name)
            if mine is None or mine.kind is inspect.Parameter.POSITIONAL_ONLY:
                if not has_var_kw:
                    problems[where] = "missing"
                continue
        if param["default"] is not None and not _same_default(param["default"], mine.default):
            problems[where] = (
                f"default {_default_repr(mine.default)} in epochal, {param['default']} in Poutyne"
            )
    their_names = {p["name"] for p in theirs}
    their_var_pos = any(p["kind"] == "VAR_POSITIONAL" for p in theirs)
    for position, mine in enumerate(ours):
        if mine.name in their_names or mine.kind in (
            inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD
        ):
            continue
        forwarded = their_var_pos and mine.kind in _POSITIONAL and position >= len(their_positional)
        if mine.default is inspect.Parameter.empty and not forwarded:
            problems[f"{key}({mine.name})"] = "epochal requires a parameter Poutyne does not have"
        elif mine.kind in _POSITIONAL and position < len(their_positional):
            problems[f"{key}({mine.name})"] = "epochal's extra parameter shifts Poutyne's positions"
    return problems


def _has_member(cls: type, name: str) -> bool:
    if hasattr(cls, name):
        return True
    return any(name in getattr(klass, "__annotations__", {}) for klass in cls.__mro__)


def problems_of(name: str) -> dict[str, str]:
    """Every compatibility problem of one Poutyne name, keyed as the allow-lists are."""
    entry = API[name]
    try:
        ours = getattr(epochal, name)
    except AttributeError:
        return {name: "missing from epochal"}
    kind = entry["kind"]
    if kind == "data":
        if type(ours).__name__ != entry["type"]:
            return {name: f"is a {type(ours).__name__}, Poutyne's is a {entry['type']}"}
        return {}
    if kind == "function":
        if not callable(ours):
            return {name: "is not callable in epochal"}
        return compare_parameters(name, entry["parameters"], _signature(ours, drop_first=False))
    if not inspect.isclass(ours):
        return {name: f"is a {type(ours).__name__} in epochal, a class in Poutyne"}
    problems = compare_parameters(name, entry["parameters"], _signature(ours, drop_first=False))
    for member, spec in entry["members"].items():
        key = f"{name}.{member}"
        if not _has_member(ours, member):
            problems[key] = "missing"
            continue
        if spec["kind"] == "property":
            continue
        attribute = inspect.getattr_static(ours, member, None)
        bound = spec["kind"] in ("classmethod", "staticmethod") or isinstance(
            attribute, (classmethod, staticmethod)
        )
        member_problems = compare_parameters(
            key, spec["parameters"], _signature(getattr(ours, member), drop_first=not bound)
        )
        if member_problems:  # one entry per method: its parameters are fixed together
            problems[key] = "; ".join(f"{k}: {v}" for k, v in sorted(member_problems.items()))
    return problems


def _all_problems() -> dict[str, str]:
    problems: dict[str, str] = {}
    for name in API:
        problems.update(problems_of(name))
    return problems


def _allowed(key: str) -> bool:
    return key in NOT_YET or key in DIFFERENCES


@pytest.mark.parametrize("name", sorted(API))
def test_poutyne_name_is_compatible(name):
    """The Poutyne name exists in epochal with compatible signatures, except allow-listed
    entries."""
    unexpected = {k: v for k, v in problems_of(name).items() if not _allowed(k)}
    assert not unexpected, "\n".join(f"{k}: {v}" for k, v in sorted(unexpected.items()))


def test_not_yet_is_empty():
    """Every Poutyne name and parameter is implemented (fails while NOT_YET has entries)."""
    assert not NOT_YET, f"{len(NOT_YET)} Poutyne names/parameters not yet implemented (#10)"


def test_not_yet_entries_still_fail():
    """Each NOT_YET entry names a real, current problem: a fixed entry must be removed."""
    problems = _all_problems()
    fixed = sorted(key for key in NOT_YET if key not in problems)
    assert not fixed, "These NOT_YET entries pass now; delete their lines:\n" + "\n".join(fixed)


def test_differences_entries_are_real():
    """Each DIFFERENCES entry names a current difference (no stale justification)."""
    problems = _all_problems()
    stale = sorted(key for key in DIFFERENCES if key not in problems)
    assert not stale, "These DIFFERENCES entries match Poutyne now; delete them:\n" + "\n".join(stale)


def test_allow_lists_are_disjoint():
    """An entry is either not yet implemented or a deliberate difference, not both."""
    assert not set(NOT_YET) & set(DIFFERENCES)


def test_migration_page_lists_every_name():
    """docs/migration.md has a row for every Poutyne name (regenerate it with
    tests/tools/migration_table.py)."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "migration.md").read_text(encoding="utf-8")
    missing = sorted(name for name in API if f"| `poutyne.{name}` |" not in page)
    assert not missing, f"docs/migration.md lacks rows for: {', '.join(missing)}"


class TestChecker:
    """The comparison itself catches what it should (so an empty problem list means something)."""

    def test_detects_a_missing_parameter_and_a_wrong_default(self):
        """A missing keyword and a different default are both reported."""

        def ours(a, b=2, *, c=True):
            return a

        theirs = [
            {"name": "a", "kind": "POSITIONAL_OR_KEYWORD", "default": None},
            {"name": "b", "kind": "POSITIONAL_OR_KEYWORD", "default": "3"},
            {"name": "d", "kind": "KEYWORD_ONLY", "default": "None"},
        ]
        problems = compare_parameters("f", theirs, _signature(ours, drop_first=False))
        assert set(problems) == {"f(b)", "f(d)"}

    def test_detects_positional_order_and_extra_required(self):
        """A swapped position and an extra required parameter are reported."""

        def ours(b, a, z):
            return a

        theirs = [
            {"name": "a", "kind": "POSITIONAL_OR_KEYWORD", "default": None},
            {"name": "b", "kind": "POSITIONAL_OR_KEYWORD", "default": None},
        ]
        problems = compare_parameters("f", theirs, _signature(ours, drop_first=False))
        assert set(problems) == {"f(a)", "f(b)", "f(z)"}

    def test_accepts_keyword_only_extras_with_defaults(self):
        """Extra keyword-only parameters with defaults are compatible."""

        def ours(a, *, extra=1):
            return a

        theirs = [{"name": "a", "kind": "POSITIONAL_OR_KEYWORD", "default": None}]
        assert compare_parameters("f", theirs, _signature(ours, drop_first=False)) == {}

    def test_a_known_name_is_checked(self):
        """OptimizerPolicy, implemented here, has no problem at all."""
        assert problems_of("OptimizerPolicy") == {}
