"""Regenerate the table of docs/migration.md from tests/data/poutyne_api.json.

    PYTHONPATH=src:adapters python tests/tools/migration_table.py

The table lists every documented Poutyne name, its epochal equivalent and its status, taken
from the compatibility test (``tests/unit/test_poutyne_compat.py``): "same" when the name and
its signatures match, "not yet (#10)" for ``NOT_YET`` entries, "differs" for ``DIFFERENCES``
entries. Hand-written remarks live in ``NOTES`` below so that regenerating keeps them. Only the
text between the two marker lines of docs/migration.md is replaced.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.unit.test_poutyne_compat import (  # noqa: E402
    API,
    DIFFERENCES,
    NOT_YET,
    problems_of,
)

BEGIN = "<!-- BEGIN GENERATED TABLE (tests/tools/migration_table.py) -->"
END = "<!-- END GENERATED TABLE -->"

#: Hand-written remarks, one per Poutyne name (kept across regenerations).
NOTES: dict[str, str] = {
    "Experiment": "Poutyne's alias of `ModelBundle.from_network`.",
    "ModelBundle": "Resume is exact (callback states, loader generators); files are written atomically: see [differences](differences.md).",
    "Model": "A stop request acts at the end of the step; `loss`, `epoch`, `time`, `lr` are reserved metric names: see [differences](differences.md).",
    "OptimizerPolicy": "Advances once per optimizer step (once per batch unless `batches_per_step > 1`); `momentum` on Adam-like optimizers sets `betas[0]`; a hyperparameter the optimizer lacks fails at train begin.",
    "Phase": "Adds `steps=` to hold a single float for `steps` steps; spaces of different lengths are an error (Poutyne truncates).",
    "linspace": "`steps=1` gives `[start]` (Poutyne divides by zero); a negative `steps` is an error.",
    "cosinespace": "`steps=1` gives `[start]` (Poutyne divides by zero); a negative `steps` is an error.",
    "one_cycle_phases": "Works when a phase has one step (Poutyne divides by zero).",
    "load_random_states": "Loads with `weights_only=True`: files written by Poutyne (pickled NumPy states) are refused; use files from `save_random_states`.",
    "save_random_states": "Also accepts fsspec URLs; writes only tensors, numbers and strings.",
    "TensorDataset": "Different lengths raise `ShapeMismatchError` (Poutyne: `AssertionError`).",
    "get_batch_size": "Silence its warning with `epochal.warning_settings['batch_size'] = 'ignore'`.",
    "plot_metric": "An epoch without validation values (stopped mid-epoch) is drawn as a gap.",
    "plot_history": "matplotlib is imported on call (the `examples` extra).",
    "ProgressionCallback": "Writes Poutyne's lines (extra `file=`); `Model`'s own display (`verbose=True`) is `epochal_adapters.progress.TqdmProgress`.",
    "ColorProgress": "Writes the ANSI colour codes itself (colorama not needed); extra `file=`.",
    "EpochProgressionCallback": "Writes Poutyne's lines (extra `file=`).",
}


def _equivalent(name: str) -> str:
    import epochal

    module = epochal._EXPORTS.get(name)
    return "—" if module is None else f"`epochal.{name}` ({module})"


def _status(name: str) -> str:
    problems = problems_of(name)
    if not problems:
        return "same"
    keys = set(problems)
    if keys <= set(DIFFERENCES):
        return "differs"
    if name in problems and name in NOT_YET:
        return "not yet (#10)"
    if keys & set(NOT_YET):
        return f"partly ({len(keys & set(NOT_YET))} not yet, #10)"
    return "differs"


def table() -> str:
    rows = ["| Poutyne | Kind | epochal | Status | Notes |", "|---|---|---|---|---|"]
    for name in sorted(API, key=str.lower):
        kind = API[name]["kind"]
        rows.append(
            f"| `poutyne.{name}` | {kind} | {_equivalent(name)} | {_status(name)} | "
            f"{NOTES.get(name, '')} |"
        )
    return "\n".join(rows)


def main() -> None:
    path = ROOT / "docs" / "migration.md"
    text = path.read_text(encoding="utf-8")
    start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
    path.write_text(text[:start] + "\n" + table() + "\n" + text[stop:], encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
