"""DESIGN.md's import rule: the core loads none of the outer rings' dependencies."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

OUTER = ("fsspec", "structlog", "tqdm", "torchvision", "epochal_adapters", "s3fs", "matplotlib")

_PROBE = """
import json, sys
import torch, attrs  # what the core may import; torch itself may load tqdm
before = set(sys.modules)
import {modules}
new = sorted(set(sys.modules) - before)
print(json.dumps(new))
"""


def _new_modules(*modules: str) -> list[str]:
    code = _PROBE.format(modules=", ".join(modules))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


class TestImportRule:
    @pytest.mark.parametrize(
        "module",
        ["epochal.core", "epochal.core.loop", "epochal.core.metrics", "epochal.core.monitor",
         "epochal.core.records", "epochal.core.logs", "epochal.bus", "epochal.ports",
         "epochal"],
    )
    def test_inner_rings_load_no_outer_dependency(self, module: str) -> None:
        """Importing the core, the bus, the ports or the lazy top package loads no adapter
        dependency (beyond what torch itself loads)."""
        loaded = _new_modules(module)
        offending = [m for m in loaded if m.split(".")[0] in OUTER]
        assert offending == [], f"{module} loaded {offending}"

    def test_core_imports_only_torch_attrs_stdlib_and_epochal(self) -> None:
        """Every module the core loads is torch's, attrs', numpy's (via torch), the standard
        library's or epochal's own inner modules."""
        loaded = _new_modules("epochal.core.loop", "epochal.core.monitor")
        roots = {m.split(".")[0] for m in loaded}
        allowed_epochal = {"epochal"}
        stdlib = set(sys.stdlib_module_names)
        extra = sorted(r for r in roots if r not in stdlib and r not in allowed_epochal
                       and not r.startswith("_"))
        assert extra == [], extra
        assert not any(m.startswith(("epochal.model", "epochal.callbacks")) for m in loaded)

    def test_adapters_never_import_the_shell(self) -> None:
        """Importing every adapter module loads none of the shell (model, callbacks, bundle)."""
        loaded = _new_modules(
            "epochal_adapters.storage", "epochal_adapters.progress",
            "epochal_adapters.structlog_sink", "epochal_adapters.tsv", "epochal_adapters.data",
        )
        shell = [m for m in loaded if m.startswith(("epochal.model", "epochal.callbacks",
                                                    "epochal.bundle", "epochal._driver"))]
        assert shell == []
