"""docs/_ext/epochal_docs.py: the API reference stays complete, the tutorial page stays whole."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "docs" / "_ext"))

# Sphinx comes with the docs extra; nox -s docs runs this module, nox -s tests skips it.
sphinx_application = pytest.importorskip("sphinx.application")
epochal_docs = importlib.import_module("epochal_docs")


class TestPublicApi:
    def test_every_public_name_gets_an_autodoc_entry(self) -> None:
        """The generated reference has one autodoc directive per name of epochal.__all__."""
        import epochal

        rst = "\n".join(epochal_docs.public_api_rst("epochal"))
        for name in epochal.__all__:
            assert f":: epochal.{name}\n" in rst + "\n", name

    def test_api_page_uses_the_generated_list(self) -> None:
        """docs/api.md documents epochal through the public-api directive, not a hand list."""
        assert ".. public-api:: epochal" in (REPO / "docs" / "api.md").read_text()

    def test_groups_follow_the_defining_module(self) -> None:
        """Schedulers, callbacks, metrics, exceptions and unknown modules get their headings."""
        assert epochal_docs.group_of("epochal.callbacks.lr_scheduler") == (
            "Learning-rate schedulers and policies"
        )
        assert epochal_docs.group_of("epochal.callbacks.stopping") == "Callbacks"
        assert epochal_docs.group_of("epochal.core.metrics.specs") == "Metrics"
        assert epochal_docs.group_of("epochal.exceptions") == "Exceptions"
        assert epochal_docs.group_of("epochal.something_new") == "Utilities"

    def test_exceptions_use_autoexception(self) -> None:
        """Classes, exceptions and functions each get the matching autodoc directive."""
        assert epochal_docs.autodoc_directive(ValueError) == "autoexception"
        assert epochal_docs.autodoc_directive(dict) == "autoclass"
        assert epochal_docs.autodoc_directive(len) == "autofunction"
        assert epochal_docs.autodoc_directive(3) == "autodata"

    def test_model_and_bundle_open_the_training_group(self) -> None:
        """Model then ModelBundle come first under Training, before Experiment and the rest."""
        rst = epochal_docs.public_api_rst("epochal")
        training = rst[rst.index("Training") :]
        entries = [line.split("::")[1].strip() for line in training if line.startswith(".. ")]
        assert entries[:2] == ["epochal.Model", "epochal.ModelBundle"]

    def test_data_is_documented_from_its_source_comment(self) -> None:
        """A public dict (warning_settings) is documented by the ``#:`` comment where it is
        assigned, not by dict's own docstring (whose markup breaks the build)."""
        rst = "\n".join(epochal_docs.public_api_rst("epochal"))
        entry = rst.split(".. py:data:: epochal.warning_settings", 1)[1].split("\n.. ", 1)[0]
        assert "warning_settings['batch_size'] = 'ignore'" in entry
        assert "new empty dictionary" not in entry


def _build(tmp_path: Path, page: str) -> str:
    """Build a one-page Sphinx project over a small package; return the warnings."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "tinypkg.py").write_text(textwrap.dedent('''
        """A tiny package."""
        __all__ = ["Thing", "make"]


        class Thing:
            """A thing."""


        def make() -> Thing:
            """Make a thing."""
            return Thing()
    '''))
    source = tmp_path / "src"
    source.mkdir()
    (source / "conf.py").write_text(textwrap.dedent(f'''
        import sys
        sys.path[:0] = [{str(package)!r}, {str(REPO / "docs" / "_ext")!r}]
        extensions = ["sphinx.ext.autodoc", "epochal_docs"]
        public_api_package = "tinypkg"
    '''))
    (source / "index.rst").write_text(page)
    import io

    warnings = io.StringIO()
    app = sphinx_application.Sphinx(
        str(source), str(source), str(tmp_path / "out"), str(tmp_path / "doctrees"), "html",
        status=None, warning=warnings, freshenv=True,
    )  # fmt: skip
    app.build()
    sys.modules.pop("tinypkg", None)
    return warnings.getvalue()


class TestPublicApiBuild:
    def test_a_page_with_the_directive_documents_every_name(self, tmp_path: Path) -> None:
        """A Sphinx build with the directive documents Thing and make without a warning."""
        warnings = _build(tmp_path, "API\n===\n\n.. public-api:: tinypkg\n")
        assert "does not document" not in warnings, warnings
        html = (tmp_path / "out" / "index.html").read_text()
        assert "tinypkg.Thing" in html or "Thing" in html
        assert "make" in html

    def test_a_missing_public_name_is_a_build_warning(self, tmp_path: Path) -> None:
        """Documenting only some names of __all__ warns, naming the missing ones."""
        page = "API\n===\n\n.. autoclass:: tinypkg.Thing\n"
        warnings = _build(tmp_path, page)
        assert "does not document these names of tinypkg.__all__: make" in warnings


class TestScriptSections:
    def test_tutorial_splits_into_its_numbered_sections(self) -> None:
        """introduction.py renders as its imports then sections 1 to 9 and the closing part."""
        text = (REPO / "docs" / "examples" / "introduction.py").read_text()
        _, sections = epochal_docs.script_sections(text)
        titles = [title for title, _, _ in sections]
        assert titles[0] == "Imports"
        assert [title.split(".")[0] for title in titles[1:10]] == [str(i) for i in range(1, 10)]
        assert titles[-1] == "Putting it together"

    def test_no_line_of_code_is_lost(self) -> None:
        """Every non-comment line after the docstring appears in some section's code."""
        text = (REPO / "docs" / "examples" / "introduction.py").read_text()
        _, sections = epochal_docs.script_sections(text)
        shown = "\n".join(code for _, _, code in sections).splitlines()
        body = text.split('"""', 2)[2].splitlines()
        code_lines = [line for line in body if line.strip() and not line.lstrip().startswith("#")]
        assert [line for line in shown if line.strip() and not line.lstrip().startswith("#")] == (
            code_lines
        )

    def test_leading_comments_become_prose(self) -> None:
        """The comment block right after a banner is the section's prose, without '#'."""
        script = (
            '"""Doc."""\n\nimport os\n\n# ' + "=" * 30 + "\n# 1. First\n# " + "=" * 30
            + "\n# Some words\n# more words.\n\nX = 1\n"
        )
        _, sections = epochal_docs.script_sections(script)
        assert sections == [("Imports", "", "import os"),
                            ("1. First", "Some words\nmore words.", "X = 1")]  # fmt: skip
