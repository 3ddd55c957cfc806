"""epochal: "nox -s demo" runs the tutorial, "nox -s tests" the tests; the list is below.

Sessions install with pip (nox's default virtualenv backend) so that pip's local wheel files
for torch are used; torch and torchvision are pinned as a pair that works together. A session
whose environment is already current (same pyproject.toml, torch pair and extras) skips the
install, so ``nox -s demo -- --help`` skips pip the second time (README: "How long it takes").
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

PYTHON = ["3.11", "3.12", "3.10"]
TORCH = ("torch==2.14.1", "torchvision==0.29.1")


_STAMP = "epochal-install.stamp"


def _install_key(*parts: str) -> str:
    """A hash of what decides a session's environment: pyproject.toml, the torch pair and the
    session's own requirements."""
    digest = hashlib.sha256(Path("pyproject.toml").read_bytes())
    for part in (*TORCH, *parts):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()


def _install_once(session: nox.Session, *requirements: str, editable: str | None = None) -> None:
    """Install ``requirements`` (and ``-e .[editable]``) unless the session's environment holds
    a stamp of the same install; write the stamp after a successful install.

    Set ``EPOCHAL_NOX_REINSTALL=1`` to force the install, or pass
    ``--no-reuse-existing-virtualenvs`` to recreate the environment.
    """
    key = _install_key(*requirements, f"editable={editable}")
    stamp = Path(session.virtualenv.location) / _STAMP if session.virtualenv.location else None
    if (
        stamp is not None
        and not os.environ.get("EPOCHAL_NOX_REINSTALL")
        and stamp.is_file()
        and stamp.read_text() == key
    ):
        session.log("environment is current (pyproject.toml and pins unchanged): skipping install")
        return
    if requirements:
        session.install(*requirements)
    if editable is not None:
        session.install("-e", f".[{editable}]")
    if stamp is not None:
        stamp.write_text(key)


def _install(session: nox.Session, extras: str = "test", *more: str) -> None:
    _install_once(session, *TORCH, *more, editable=extras)


def _python() -> str | None:
    # Use the interpreter nox runs on unless one is asked for: the local torch files are for it.
    return os.environ.get("EPOCHAL_NOX_PYTHON")


@nox.session(python=_python())
def tests(session: nox.Session) -> None:
    """Fast test suite: unit, contract (memory, local, S3 on moto), adapters, integration
    (not the ``ddp``-marked tests: ``nox -s ddp`` runs those)."""
    # poutyne (pure Python; adds torchmetrics, keeps the pinned torch) for the side-by-side
    # scripts of tests/integration/test_poutyne_scripts.py.
    _install(session, "test", "poutyne==1.19")
    session.run(
        "pytest", "-q", "-p", "no:cacheprovider", "--timeout=900", "-m", "not ddp",
        *session.posargs,
        env={"HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci")},
    )


@nox.session(python=_python())
def ddp(session: nox.Session) -> None:
    """Data-parallel tests: 2 gloo ranks on the CPU (forked ranks, a few torchrun launches);
    kept out of ``tests``, which deselects the ``ddp`` marker. The ``slow`` ones (more random
    kill points) run with ``nox -s ddp -- -m "ddp and slow"`` (the last ``-m`` wins)."""
    _install(session)
    session.run(
        "pytest", "-q", "-p", "no:cacheprovider", "--timeout=900", "-m", "ddp and not slow",
        "tests/ddp",
        *session.posargs,
        env={"OMP_NUM_THREADS": "1"},
    )


@nox.session(python=_python())
def props(session: nox.Session) -> None:
    """Hypothesis properties with the thorough profile (many more examples)."""
    _install(session)
    session.run(
        "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", "-k", "property or law",
        *session.posargs, env={"HYPOTHESIS_PROFILE": "thorough"},
    )


@nox.session(python=_python())
def s3(session: nox.Session) -> None:
    """Tests that talk HTTP to a moto S3 server on 127.0.0.1 through s3fs."""
    _install(session)
    session.run("pytest", "-q", "-p", "no:cacheprovider", "-m", "s3", *session.posargs)


@nox.session(python=_python())
def lint(session: nox.Session) -> None:
    """ruff over the sources, tests, docs and this file; the static import contract."""
    _install_once(session, "ruff>=0.5", "pytest>=7.4")
    session.run("ruff", "check", "src", "adapters", "tests", "docs", "noxfile.py")
    contract = "tests/unit/test_import_contract.py"
    if os.path.exists(contract):
        # An AST check of the import rule: it needs neither torch nor the package installed.
        session.run("pytest", "-q", "--noconftest", "-p", "no:cacheprovider", contract)


@nox.session(python=_python())
def typecheck(session: nox.Session) -> None:
    """mypy, strict on src and adapters."""
    _install(session, "test", "mypy>=1.8")
    session.run("mypy")


@nox.session(python=_python())
def docs(session: nox.Session) -> None:
    """Build the HTML docs (warnings are errors) and run the code in them and the tutorial."""
    _install(session, "docs", "pytest>=7.4")
    # The docs extension's own tests (the API reference stays complete), then the site.
    session.run("pytest", "-q", "--noconftest", "-p", "no:cacheprovider", "tests/docs")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
    # Every {testcode}/{doctest} block of the pages (the S3 how-to talks to a moto server on
    # 127.0.0.1), then the tutorial the getting-started page shows, at small scale.
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "doctest", "docs", "docs/_build/doctest",
        env={"OMP_NUM_THREADS": "1"},
    )
    session.run(
        "python", "docs/examples/introduction.py", "--epochs", "1", "--limit", "800",
        "--output", "docs/_build/tutorial", env={"OMP_NUM_THREADS": "1"},
    )


@nox.session(python=_python())
def demo(session: nox.Session) -> None:
    """The main job: the seed tutorial on real MNIST digits (docs/examples/introduction.py)."""
    _install(session, "examples")
    session.run("python", "docs/examples/introduction.py", *session.posargs)


@nox.session(python=_python())
def bench(session: nox.Session) -> None:
    """Benchmarks (not tests): epochal side by side with the hand-written loop, Poutyne and
    Lightning in one run (``-- --quick`` for a few minutes); writes bench-results/."""
    _install(session, "examples", "poutyne", "pytorch-lightning", "pyinstrument")
    session.run("python", "tests/benchmarks/bench_side_by_side.py", *session.posargs,
                env={"OMP_NUM_THREADS": "1"})
