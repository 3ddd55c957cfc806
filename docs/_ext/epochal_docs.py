"""Sphinx directives that keep the docs generated from the code, so they cannot fall behind.

- ``public-api``: one autodoc entry for every name in ``epochal.__all__``, grouped by what it
  is (training, callbacks, schedulers, metrics, records, exceptions, ...). A name added to
  ``epochal`` appears in the API reference without editing any page; a name the directive
  cannot document is a build warning (an error under ``sphinx-build -W``).
- ``script-sections``: a runnable example script rendered as a page: each ``# ===`` banner
  section becomes a heading, its leading comments prose, and its code a code block. The page
  shows the script itself, never a copy that could drift from it.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

_LOG = logging.getLogger(__name__)

#: Headings of the API reference, in page order: (heading, prefixes of defining modules).
#: The first group whose prefix matches a name's module takes it; the rest go to "Utilities".
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Training", ("epochal.model", "epochal.bundle", "epochal.experiment", "epochal.seeding",
                  "epochal.rng", "epochal.optimizers", "epochal.driver", "epochal.training")),
    ("Learning-rate schedulers and policies", ("epochal.callbacks.lr_scheduler",
                                               "epochal.callbacks.policies", "epochal.policies",
                                               "epochal.callbacks.schedul")),
    ("Callbacks", ("epochal.callbacks",)),
    ("Metrics", ("epochal.metrics", "epochal.core.metrics")),
    ("Plotting", ("epochal.plot", "epochal_adapters.plots")),
    ("Records, directives and the bus", ("epochal.core", "epochal.bus", "epochal.ports")),
    ("Exceptions", ("epochal.exceptions",)),
)  # fmt: skip
OTHER_GROUP = "Utilities"


def defining_module(value: Any) -> str:
    """The module a public object was defined in ('' when it has none, e.g. a constant)."""
    module = getattr(value, "__module__", None)
    return module if isinstance(module, str) else ""


def group_of(module: str) -> str:
    """The API heading for an object defined in ``module``."""
    for heading, prefixes in GROUPS:
        if any(module == prefix or module.startswith(prefix) for prefix in prefixes):
            return heading
    return OTHER_GROUP


def autodoc_directive(value: Any) -> str:
    """The autodoc directive that documents ``value`` (class, exception, function or data)."""
    if inspect.isclass(value):
        return "autoexception" if issubclass(value, BaseException) else "autoclass"
    if inspect.isfunction(value) or inspect.isbuiltin(value) or callable(value):
        return "autofunction"
    return "autodata"


#: Names a reader looks for first: they open their group, in this order; the rest follow
#: alphabetically (so ``Model`` comes before ``Experiment``, its older alias's relative).
LEADING_NAMES: tuple[str, ...] = ("Model", "ModelBundle", "Callback", "CallbackList")


def _reading_order(name: str) -> tuple[int, str]:
    if name in LEADING_NAMES:
        return LEADING_NAMES.index(name), ""
    return len(LEADING_NAMES), name.lower()


def data_doc(package: str, name: str, value: Any) -> list[str]:
    """The ``#:`` comment that documents the data ``package.NAME`` where it is assigned.

    A constant or a dict has no docstring of its own (autodoc would show its type's, e.g.
    ``dict``'s), so the comment is looked up in the package and in each of its loaded
    submodules that holds the same object under that name. Empty when none has one.
    """
    import sys

    from sphinx.pycode import ModuleAnalyzer

    candidates = [package, *sorted(m for m in sys.modules if m.startswith(f"{package}."))]
    for module_name in candidates:
        module = sys.modules.get(module_name)
        if module is None or module.__dict__.get(name, _MISSING) is not value:
            continue
        try:
            docs = ModuleAnalyzer.for_module(module_name).find_attr_docs()
        except Exception:  # no source to read: try the next module
            continue
        found = docs.get(("", name))
        if found:
            return [line for line in found if line is not None]
    return []


_MISSING = object()


def public_api_rst(package: str) -> list[str]:
    """reStructuredText documenting every name of ``package.__all__``, grouped by heading.

    Raises:
        AttributeError: A name in ``__all__`` does not resolve (a broken export).
    """
    module = importlib.import_module(package)
    groups: dict[str, list[tuple[str, Any]]] = {}
    for name in sorted(module.__all__, key=_reading_order):
        value = getattr(module, name)
        groups.setdefault(group_of(defining_module(value)), []).append((name, value))
    order = [heading for heading, _ in GROUPS] + [OTHER_GROUP]
    lines: list[str] = []
    for heading in order:
        entries = groups.get(heading)
        if not entries:
            continue
        lines += [heading, "-" * len(heading), ""]
        for name, value in entries:
            kind = autodoc_directive(value)
            if kind == "autodata":
                # Documented from its source comment, never from its type's docstring.
                lines.append(f".. py:data:: {package}.{name}")
                lines += ["", *(f"   {line}".rstrip() for line in data_doc(package, name, value))]
                lines.append("")
                continue
            lines.append(f".. {kind}:: {package}.{name}")
            if kind == "autoclass" and group_of(defining_module(value)) in (
                "Training", "Callbacks", "Learning-rate schedulers and policies", "Metrics",
                "Plotting", OTHER_GROUP,
            ):  # fmt: skip
                lines += ["   :members:", "   :no-show-inheritance:"]
                if any(base.__module__.startswith("epochal._") for base in value.__mro__[1:]):
                    # parts of the class kept in private modules (mixins): show their methods
                    lines.append("   :inherited-members:")
            lines.append("")
    return lines


class PublicApiDirective(SphinxDirective):
    """``.. public-api:: epochal``: autodoc entries for every name in the package's __all__."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        package = self.arguments[0]
        self.env.temp_data.setdefault("public_api_packages", []).append(package)
        lines = public_api_rst(package)
        container = nodes.section()
        container.document = self.state.document
        self.state.nested_parse(StringList(lines, source=f"<public-api {package}>"), 0, container,
                                match_titles=True)  # fmt: skip
        return list(container.children)


_BANNER = re.compile(r"^# ={20,}\s*$")


def script_sections(text: str) -> tuple[str, list[tuple[str, str, str]]]:
    """Split an example script into its docstring and its banner sections.

    A section starts with the three lines ``# ===``, ``# <title>``, ``# ===``; the comment lines
    right after it are its prose; the rest, up to the next banner, is its code.

    Returns:
        The module docstring (without quotes) and a list of (title, prose, code).
    """
    lines = text.splitlines()
    banners = [i for i in range(len(lines) - 2)
               if _BANNER.match(lines[i]) and _BANNER.match(lines[i + 2])]  # fmt: skip
    docstring_match = re.match(r'\s*"""(.*?)"""', text, re.DOTALL)
    docstring = docstring_match.group(1) if docstring_match else ""
    sections: list[tuple[str, str, str]] = []
    if banners:
        header_end = docstring_match.end() if docstring_match else 0
        preamble = text[header_end:].splitlines()
        first = len(text[:header_end].splitlines())
        code = "\n".join(preamble[: banners[0] - first + 1]).strip("\n")
        sections.append(("Imports", "", code))
    for index, start in enumerate(banners):
        title = lines[start + 1].lstrip("#").strip()
        end = banners[index + 1] if index + 1 < len(banners) else len(lines)
        body = lines[start + 3 : end]
        prose: list[str] = []
        while body and (body[0].startswith("#") or not body[0].strip()):
            line = body.pop(0)
            prose.append(line[1:].strip() if line.startswith("#") else "")
        sections.append((title, "\n".join(prose).strip(), "\n".join(body).strip("\n")))
    return docstring, sections


class ScriptSectionsDirective(SphinxDirective):
    """``script-sections`` in a MyST page: render a script section by section.

    Each section becomes a heading (``###`` by default, ``:heading-level:`` to change it), its
    leading comments Markdown prose, and its code a ``python`` code block.
    """

    required_arguments = 1
    option_spec: ClassVar[dict[str, Any]] = {"heading-level": directives.positive_int}

    def run(self) -> list[nodes.Node]:
        relative, absolute = self.env.relfn2path(self.arguments[0])
        self.env.note_dependency(relative)
        _, sections = script_sections(Path(absolute).read_text(encoding="utf-8"))
        marks = "#" * self.options.get("heading-level", 3)
        lines: list[str] = []
        for title, prose, code in sections:
            lines += [f"{marks} {title}", ""]
            if prose:
                lines += [*prose.splitlines(), ""]
            if code:
                lines += ["```python", *code.splitlines(), "```", ""]
        container = nodes.section()
        container.document = self.state.document
        self.state.nested_parse(StringList(lines, source=absolute), 0, container,
                                match_titles=True)  # fmt: skip
        return list(container.children)


def documented_public_names(app: Sphinx, package: str) -> set[str]:
    """The names of ``package`` that the build documented (``package.NAME`` objects)."""
    objects: Iterable[tuple[str, ...]] = app.env.get_domain("py").get_objects()
    prefix = f"{package}."
    return {full[len(prefix):] for full, *_ in objects
            if full.startswith(prefix) and "." not in full[len(prefix):]}  # fmt: skip


def check_public_api(app: Sphinx, env: Any) -> None:
    """Warn (an error under -W) for every public name the API reference does not document."""
    package = app.config.public_api_package
    if not package:
        return
    module = importlib.import_module(package)
    missing = sorted(set(module.__all__) - documented_public_names(app, package))
    if missing:
        _LOG.warning(
            "the API reference does not document these names of %s.__all__: %s. Add a "
            "'public-api' directive for %s to a page (docs/api.md has one).",
            package, ", ".join(missing), package,
        )


def skip_public_in_modules(
    app: Sphinx, what: str, name: str, obj: Any, skip: bool, options: Any
) -> bool | None:
    """Leave a re-exported public object out of its defining module's ``automodule``: it is
    documented once, under its public name (``epochal.StepRecord``), so every reference to it
    has one target."""
    package = app.config.public_api_package
    if what != "module" or not package:
        return None
    public = importlib.import_module(package)
    for public_name in public.__all__:
        if getattr(public, public_name, None) is obj and public_name == name.rsplit(".", 1)[-1]:
            return True
    return None


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("public_api_package", "", "env")
    app.add_directive("public-api", PublicApiDirective)
    app.add_directive("script-sections", ScriptSectionsDirective)
    app.connect("env-check-consistency", check_public_api)
    app.connect("autodoc-skip-member", skip_public_in_modules)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
