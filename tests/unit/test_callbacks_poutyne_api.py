"""Every public callback of Poutyne 1.19 exists in epochal with Poutyne's parameter names,
kinds and defaults (epochal may add keyword-only parameters after them)."""

from __future__ import annotations

import inspect

import pytest

import epochal

poutyne = pytest.importorskip("poutyne")

#: Poutyne's callback names handled in other modules of the library (LR schedulers,
#: policies) or that are internal helpers, not callbacks.
_ELSEWHERE = {"ColorProgress", "EmptyStringAttrClass", "ProgressBar", "atomic_lambda_save",
              "OptimizerPolicy", "Phase", "cosinespace", "linspace", "one_cycle_phases",
              "sgdr_phases"}


def _poutyne_callbacks() -> list[str]:
    names = []
    for name in dir(poutyne):
        obj = getattr(poutyne, name)
        module = getattr(obj, "__module__", "") or ""
        if (inspect.isclass(obj) and "framework.callbacks" in module
                and "lr_scheduler" not in module and name not in _ELSEWHERE):
            names.append(name)
    return sorted(names)


@pytest.mark.parametrize("name", _poutyne_callbacks())
def test_name_and_signature_match_poutyne(name: str) -> None:
    """The class exists in epochal and takes Poutyne's parameters with Poutyne's defaults."""
    assert name in epochal._EXPORTS, f"epochal lacks {name}"
    ours = inspect.signature(getattr(epochal, name)).parameters
    theirs = inspect.signature(getattr(poutyne, name)).parameters
    for pname, param in theirs.items():
        assert pname in ours, f"{name} lacks parameter {pname!r}"
        mine = ours[pname]
        assert mine.kind == param.kind, (name, pname, mine.kind, param.kind)
        if param.default is not inspect.Parameter.empty:
            assert mine.default == param.default, (name, pname, mine.default, param.default)
