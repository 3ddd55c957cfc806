"""Sphinx configuration for the epochal documentation (Markdown sources through MyST).

Build with ``nox -s docs`` or ``sphinx-build -W --keep-going -b html docs docs/_build/html``.
Nothing here reaches the network: no intersphinx, no remote images.
"""

from __future__ import annotations

import os
import sys

# Import the packages from the working tree, whether or not they are installed.
_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
for _path in (
    os.path.join(_ROOT, "docs", "_ext"), os.path.join(_ROOT, "adapters"), os.path.join(_ROOT, "src")
):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import epochal  # noqa: E402

project = "epochal"
author = "epochal developers"
copyright = "epochal developers"
release = epochal.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "epochal_docs",  # docs/_ext: the API list from epochal.__all__, scripts rendered as pages
]

# docs/_ext/epochal_docs.py warns (an error under -W) when a name of this package's __all__
# is missing from the API reference.
public_api_package = "epochal"

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "_screenshots", "examples", "Thumbs.db", ".DS_Store"]

# MyST: ``:::`` fences for admonitions, definition lists, and anchors for ## and ### headings
# (so that ``[text](bundle.md#exact-resume)`` links resolve).
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc + napoleon: the docstrings are Google style.
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True
# Sections epochal's docstrings use besides Google's own ("Shapes:" per STYLE.md; "When it
# acts:", "Writes:" and "State:" in the callbacks; "Contract:" in the ports). Rendered as
# headed blocks like "Notes".
napoleon_custom_sections = ["Shapes", "When it acts", "Writes", "State", "Contract"]

# The code in these pages runs: ``sphinx-build -b doctest`` (part of ``nox -s docs``) executes
# every ``{doctest}`` and ``{testcode}`` block. Each page's blocks run in a temporary folder,
# so the files they write go nowhere near the checkout.
doctest_global_setup = """
import os, tempfile
_epochal_docs_cwd = os.getcwd()
os.chdir(tempfile.mkdtemp(prefix="epochal-docs-"))
import torch
torch.set_num_threads(1)
"""
# Only the {testcode}/{doctest} blocks of the pages run here; the ">>>" examples inside the
# docstrings run in the test suite (tests/unit/test_doctests.py, with each module's globals).
doctest_test_doctest_blocks = ""
doctest_global_cleanup = """
os.chdir(_epochal_docs_cwd)
"""

# furo, as attrs and structlog use: wide code blocks that wrap nothing away behind scrollbars
# at common widths, tables that scroll inside the page, a readable sidebar, visible links.
html_theme = "furo"
html_title = f"epochal {release}"
html_static_path = ["_static"]
html_css_files = ["epochal.css"]
html_theme_options = {
    "sidebar_hide_name": False,
    "navigation_with_keys": True,
}
pygments_style = "friendly"
pygments_dark_style = "monokai"
