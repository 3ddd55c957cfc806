"""Every developer and CI entry point. Run ``nox -l`` to list the sessions.

Sessions install with pip (nox's default virtualenv backend) so that pip's local wheel files
for torch are used; torch and torchvision are pinned as a pair that works together.
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

PYTHON = ["3.11", "3.12", "3.10"]
TORCH = ("torch==2.14.1", "torchvision==0.29.1")


def _install(session: nox.Session, extras: str = "test") -> None:
    session.install(*TORCH)
    session.install("-e", f".[{extras}]")


def _python() -> str | None:
    # Use the interpreter nox runs on unless one is asked for: the local torch files are for it.
    return os.environ.get("EPOCHAL_NOX_PYTHON")


@nox.session(python=_python())
def tests(session: nox.Session) -> None:
    """Fast test suite: unit, contract (memory, local, S3 on moto), adapters, integration."""
    _install(session)
    session.run(
        "pytest", "-q", "-p", "no:cacheprovider", "--timeout=900", *session.posargs,
        env={"HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci")},
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
    """ruff lint over the sources, tests, docs and this file."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "src", "adapters", "tests", "docs", "noxfile.py")


@nox.session(python=_python())
def typecheck(session: nox.Session) -> None:
    """mypy, strict on src and adapters."""
    _install(session)
    session.install("mypy>=1.8")
    session.run("mypy")


@nox.session(python=_python())
def docs(session: nox.Session) -> None:
    """Build the HTML docs with Sphinx (warnings are errors)."""
    _install(session, "docs")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session(python=_python())
def demo(session: nox.Session) -> None:
    """The main job: the seed tutorial on real MNIST digits (docs/examples/introduction.py)."""
    _install(session, "examples")
    session.run("python", "docs/examples/introduction.py", *session.posargs)


@nox.session(python=_python())
def bench(session: nox.Session) -> None:
    """Benchmarks (not tests): ratios against the hand-written loop measured in the same run."""
    _install(session, "examples")
    for script in sorted(os.listdir("tests/benchmarks")):
        if script.startswith("bench_") and script.endswith(".py"):
            session.run("python", f"tests/benchmarks/{script}", *session.posargs)
