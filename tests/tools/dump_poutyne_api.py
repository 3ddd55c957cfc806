"""Write Poutyne's documented public API (names, kinds, signatures) to tests/data/poutyne_api.json.

Run with an environment where the Poutyne version to compare against is installed:

    python tests/tools/dump_poutyne_api.py [--output tests/data/poutyne_api.json]

What counts as Poutyne's public API: every name ``import poutyne`` exports (Poutyne's
``__init__`` star-imports its modules, none of which sets ``__all__``) whose object is a class
or a function defined in a ``poutyne`` module. Left out:

* modules, and names re-exported from the standard library, NumPy, PyTorch or matplotlib
  (their ``__module__`` does not start with ``poutyne``);
* objects defined in a private module (a path component starting with ``_``);
* ``INTERNAL`` below: helpers of Poutyne's own machinery that leak through the star imports
  and that Poutyne's documentation does not present to users.

Data objects have no ``__module__``; the documented ones are listed in ``DATA``.

For each function the file records its parameters (name, kind, default ``repr``); for each
class, its constructor's parameters and every public method and property defined in a
Poutyne class of its MRO (methods inherited from ``torch.nn.Module`` or ``object`` are not
Poutyne's API).
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
from pathlib import Path
from typing import Any

#: Leaked implementation helpers (not part of Poutyne's documented API), with the reason.
INTERNAL: dict[str, str] = {
    "EmptyStringAttrClass": "colour-formatting fallback used when colorama is missing",
    "camel_to_snake": "metric-name helper of the metric machinery",
    "clean_metric_class_name": "metric-registry helper",
    "clean_metric_func_name": "metric-registry helper",
    "convert_decomposable_metric_to_object": "metric-resolution helper",
    "do_register_metric_class": "metric-registry helper behind register_metric_class",
    "do_register_metric_func": "metric-registry helper behind register_metric_func",
    "flatten_metric_names": "metric-name helper",
    "get_callables_and_names": "metric-resolution helper of Model",
    "get_names_of_metric": "metric-name helper",
    "rename_doubles": "metric-name helper",
    "rename_doubles_from_list": "metric-name helper",
    "new_init": "helper that generates the LR-scheduler callback classes",
    "EpochIterator": "Model's internal epoch loop object",
    "StepIterator": "Model's internal step loop object",
}

#: Documented module-level data objects (``get_batch_size``'s docstring documents this one).
DATA: tuple[str, ...] = ("warning_settings",)

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _default(value: Any) -> str | None:
    if value is inspect.Parameter.empty:
        return None
    if inspect.isroutine(value) or inspect.isclass(value):
        return f"<{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')}>"
    return _ADDRESS.sub("", repr(value))


def _parameters(obj: Any, *, drop_first: bool = False) -> list[dict[str, Any]] | None:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    params = list(signature.parameters.values())
    if drop_first and params:
        params = params[1:]
    # A parameter whose name starts with "_" is Poutyne's private plumbing, not its API.
    return [
        {"name": p.name, "kind": p.kind.name, "default": _default(p.default)}
        for p in params
        if not p.name.startswith("_")
    ]


def _is_poutyne(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == "poutyne" or module.startswith("poutyne.")


def _class_members(cls: type) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if not _is_poutyne(klass):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            if isinstance(value, property):
                members[name] = {"kind": "property"}
            elif isinstance(value, (staticmethod, classmethod)):
                members[name] = {
                    "kind": type(value).__name__,
                    "parameters": _parameters(getattr(cls, name)),
                }
            elif inspect.isfunction(value):
                members[name] = {"kind": "method", "parameters": _parameters(value, drop_first=True)}
    return dict(sorted(members.items()))


def dump() -> dict[str, Any]:
    import poutyne

    names: dict[str, Any] = {}
    for name in sorted(dir(poutyne)):
        if name.startswith("_") or name in INTERNAL:
            continue
        obj = getattr(poutyne, name)
        if inspect.ismodule(obj):
            continue
        if name in DATA:
            names[name] = {"kind": "data", "type": type(obj).__name__, "repr": repr(obj)}
            continue
        if not (inspect.isclass(obj) or inspect.isroutine(obj)) or not _is_poutyne(obj):
            continue
        module = obj.__module__
        if any(part.startswith("_") for part in module.split(".")):
            continue
        if inspect.isclass(obj):
            names[name] = {
                "kind": "class",
                "module": module,
                "parameters": _parameters(obj),
                "members": _class_members(obj),
            }
        else:
            names[name] = {"kind": "function", "module": module, "parameters": _parameters(obj)}
    return {"poutyne_version": poutyne.__version__, "names": names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[1] / "data" / "poutyne_api.json"
    parser.add_argument("--output", type=Path, default=default)
    args = parser.parse_args()
    api = dump()
    # One name per line: small diffs when Poutyne changes.
    lines = [f"{json.dumps(name)}: {json.dumps(entry)}" for name, entry in api["names"].items()]
    text = (
        "{\n"
        f'"poutyne_version": {json.dumps(api["poutyne_version"])},\n'
        '"names": {\n' + ",\n".join(lines) + "\n}\n}\n"
    )
    json.loads(text)  # the file stays valid JSON
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
