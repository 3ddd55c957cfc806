"""Resume planning for a bundle's working directory. Pure: names and parsed manifests in,
decisions out; the shell does every read, write and delete.

A working directory commits an epoch by writing its state file, then a manifest
(``manifests/epoch_NNNN.json``) naming that file with its size and SHA-256. This module decides,
from what the directory lists:

* which manifests are well formed (:func:`check_manifest`), newest first
  (:func:`manifest_candidates`): the shell then reads each candidate's state file in that
  order and trusts the first whose size and checksum match;
* where training starts after the trusted commit (:func:`start_epoch`);
* which files are not named by any commit: an unfinished write of the bundle itself, or
  files someone else put there (:func:`classify_directory`);
* which files a commit supersedes (:func:`prune_names`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "FORMAT",
    "IDENTITY",
    "KEEP_STATES",
    "LAST",
    "LOG",
    "POUTYNE_MARKERS",
    "Candidate",
    "DirectoryState",
    "ManifestFields",
    "best_name",
    "check_manifest",
    "classify_directory",
    "manifest_candidates",
    "manifest_epochs",
    "manifest_name",
    "prune_names",
    "start_epoch",
    "state_name",
    "written_by_poutyne",
    "written_by_poutyne_only",
]

#: The format tag of manifests, state files and the identity record.
FORMAT = "epochal.bundle/1"
#: The identity record: written (durably) before any other file of a bundle.
IDENTITY = "bundle.json"
LOG = "log.tsv"
LAST = "checkpoint.ckpt"
#: Committed states kept (the newest and the one before, in case the newest is damaged).
KEEP_STATES = 2

_MANIFEST_RE = re.compile(r"^manifests/epoch_(\d+)\.json$")
_STATE_RE = re.compile(r"^state/epoch_(\d+)\.state$")
_BEST_RE = re.compile(r"^checkpoint_epoch_(\d+)\.ckpt$")
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "state": str,
    "bytes": int,
    "sha256": str,
    "epoch": int,
}


def manifest_name(epoch: int) -> str:
    """The manifest file of ``epoch``."""
    return f"manifests/epoch_{epoch:04d}.json"


def state_name(epoch: int) -> str:
    """The state file of ``epoch``."""
    return f"state/epoch_{epoch:04d}.state"


def best_name(epoch: int) -> str:
    """The weights file kept for ``epoch`` (best epochs, or every epoch)."""
    return f"checkpoint_epoch_{epoch}.ckpt"


def best_epoch_of(name: str) -> int | None:
    """The epoch of a ``checkpoint_epoch_{epoch}.ckpt`` name, else None."""
    match = _BEST_RE.match(name)
    return int(match.group(1)) if match else None


def manifest_epochs(names: Iterable[str]) -> list[tuple[int, str]]:
    """``(epoch, name)`` of every manifest among ``names``, oldest first."""
    found = []
    for name in names:
        match = _MANIFEST_RE.match(name)
        if match:
            found.append((int(match.group(1)), name))
    return sorted(found)


@attrs.frozen(kw_only=True)
class ManifestFields:
    """The fields of a well-formed manifest that resume planning uses.

    Attributes:
        epoch: The committed epoch.
        state: Name of the state file.
        bytes: Size of the state file.
        sha256: Hex SHA-256 of the state file.
        stopped: Training was stopped early at this commit (a callback asked).
        partial_step: None for a commit at an epoch's end; the number of steps done in
            ``epoch`` for a commit inside it.
    """

    epoch: int
    state: str
    bytes: int
    sha256: str
    stopped: bool = False
    partial_step: int | None = None


def check_manifest(content: Any, *, name: str = "manifest") -> ManifestFields | str:
    """Validate a parsed manifest.

    Args:
        content: The JSON value read from a manifest file.
        name: The manifest's name, for the problem text.

    Returns:
        Its fields, or a sentence saying what is wrong (format, missing or mistyped fields).
    """
    if not isinstance(content, Mapping):
        return f"expected a JSON object, found {type(content).__name__}"
    if content.get("format") != FORMAT:
        return f"format {content.get('format')!r}, expected {FORMAT!r}"
    missing = [k for k in _REQUIRED if k not in content]
    if missing:
        return f"missing fields {missing}"
    wrong = [
        k for k, t in _REQUIRED.items()
        if not isinstance(content[k], t) or isinstance(content[k], bool)
    ]
    if wrong:
        return f"fields of the wrong type {wrong}"
    partial = content.get("partial_step")
    if partial is not None and (not isinstance(partial, int) or isinstance(partial, bool)):
        return f"partial_step {partial!r}, expected an integer or null"
    return ManifestFields(
        epoch=int(content["epoch"]),
        state=str(content["state"]),
        bytes=int(content["bytes"]),
        sha256=str(content["sha256"]),
        stopped=bool(content.get("stopped", False)),
        partial_step=partial,
    )


@attrs.frozen(kw_only=True)
class Candidate:
    """A manifest worth verifying: its name and fields."""

    name: str
    fields: ManifestFields


def manifest_candidates(
    parsed: Sequence[tuple[int, str, Any]],
) -> tuple[list[Candidate], list[str]]:
    """Order manifests for trust: newest first, well-formed only.

    Args:
        parsed: ``(epoch, name, content)`` of each manifest; ``content`` is the parsed JSON
            or an exception/str saying why it could not be read or parsed.

    Returns:
        ``(candidates, problems)``: the well-formed manifests newest first (the shell trusts
        the first whose state file matches), and one sentence per malformed manifest.
    """
    candidates: list[Candidate] = []
    problems: list[str] = []
    for epoch, name, content in sorted(parsed, key=lambda t: t[0], reverse=True):
        if isinstance(content, (BaseException, str)):
            problems.append(f"{name}: {content}")
            continue
        fields = check_manifest(content, name=name)
        if isinstance(fields, str):
            problems.append(f"{name}: {fields}")
        elif fields.epoch != epoch:
            problems.append(f"{name}: names epoch {fields.epoch}, expected {epoch}")
        else:
            candidates.append(Candidate(name=name, fields=fields))
    return candidates, problems


def start_epoch(
    *, committed: int | None, stopped: bool, partial_step: int | None, epochs: int
) -> int | None:
    """The first epoch to run, or None when there is nothing to train.

    Args:
        committed: The trusted commit's epoch, or None for a fresh directory.
        stopped: Training was stopped early at that commit.
        partial_step: None for a commit at an epoch's end, else steps done inside it.
        epochs: The last epoch to reach.

    Returns:
        1 for a fresh directory; ``k + 1`` after a commit at the end of epoch ``k``; ``k``
        after a commit inside epoch ``k``; None when ``epochs`` is reached or training was
        stopped early.
    """
    if committed is None:
        return 1 if epochs >= 1 else None
    if stopped:
        return None
    first = committed if partial_step is not None else committed + 1
    return first if first <= epochs else None


#: Files only Poutyne's ModelBundle writes (epochal keeps these states in its state files).
POUTYNE_MARKERS = ("last.epoch", "checkpoint.optim", "checkpoint.randomstate")


def written_by_poutyne(names: Iterable[str]) -> bool:
    """Whether a directory listing holds a file only Poutyne's ModelBundle writes
    (:data:`POUTYNE_MARKERS`)."""
    return any(name in POUTYNE_MARKERS for name in names)


def written_by_poutyne_only(names: Iterable[str]) -> bool:
    """Whether a directory listing is Poutyne's ModelBundle's alone: a file only Poutyne writes
    (:data:`POUTYNE_MARKERS`), and neither a manifest nor the identity record of an epochal
    bundle (with either, it is a mixed directory, read as an epochal bundle's)."""
    listed = list(names)
    return (
        written_by_poutyne(listed) and IDENTITY not in listed and not manifest_epochs(listed)
    )


def _training_like(name: str) -> bool:
    return (
        name.startswith(("state/", "manifests/"))
        or name in (LOG, LAST)
        or _BEST_RE.match(name) is not None
    )


@attrs.frozen(kw_only=True)
class DirectoryState:
    """What a working directory holds, as far as resuming is concerned.

    Attributes:
        foreign: Training-like files with neither an identity record nor a manifest:
            someone else's files (or a partial copy); resuming there must be refused.
        uncommitted: Files of the bundle's own layout that no committed manifest accounts
            for (an unfinished write of this bundle); safe to delete.
    """

    foreign: tuple[str, ...] = ()
    uncommitted: tuple[str, ...] = ()


def classify_directory(
    names: Iterable[str], *, has_identity: bool, last_epoch: int | None
) -> DirectoryState:
    """Tell the bundle's uncommitted files from foreign ones.

    The bundle writes its identity record before anything else, and ``log.tsv`` and
    ``checkpoint.ckpt`` only after a manifest. So:

    * with a commit of epoch ``k``: state files and best checkpoints of epochs after ``k`` are
      uncommitted leftovers (a kill between a commit's first write and its manifest);
    * with the identity record and no commit: ``state/epoch_0001.state`` and
      ``checkpoint_epoch_1.ckpt`` are leftovers of the first commit; any other training-like
      file (``log.tsv``, ``checkpoint.ckpt``, later epochs) was not written by this bundle and
      is foreign;
    * with neither: every training-like file is foreign.

    Args:
        names: Everything the directory lists.
        has_identity: The identity record (:data:`IDENTITY`) is there.
        last_epoch: The trusted commit's epoch, or None when nothing is committed.

    Returns:
        The foreign and uncommitted files. Files outside the bundle's layout are in neither.
    """
    foreign: list[str] = []
    uncommitted: list[str] = []
    for name in names:
        state = _STATE_RE.match(name)
        epoch = int(state.group(1)) if state is not None else best_epoch_of(name)
        if last_epoch is not None:
            if epoch is not None and epoch > last_epoch:
                uncommitted.append(name)
        elif has_identity and epoch == 1:
            uncommitted.append(name)
        elif _training_like(name):
            foreign.append(name)
    return DirectoryState(foreign=tuple(foreign), uncommitted=tuple(uncommitted))


def prune_names(
    names: Iterable[str],
    *,
    last_epoch: int,
    best_epoch: int | None,
    keep_only_last_best: bool,
    save_every_epoch: bool,
    keep_states: int = KEEP_STATES,
) -> list[str]:
    """Files superseded once the commit of ``last_epoch`` is durable, in a safe delete order.

    Args:
        names: Everything the directory lists.
        last_epoch: The newest committed epoch.
        best_epoch: Its best epoch (None without monitoring).
        keep_only_last_best: Keep only the best epoch's ``checkpoint_epoch_*.ckpt``.
        save_every_epoch: Every epoch's checkpoint is kept (wins over ``keep_only_last_best``).
        keep_states: Commits (manifest and state) to keep, newest first.

    Returns:
        Manifests older than the kept ones first (a newer manifest, one that failed its
        check, is left for the next commit of its epoch to replace) (each before its state file, so a kill
        between the two leaves a state file no manifest names, never a manifest without its
        state), then state files no kept manifest names, then best checkpoints of epochs
        after ``last_epoch`` or superseded by a newer best.
    """
    names = list(names)
    manifests = [(e, n) for e, n in manifest_epochs(names) if e <= last_epoch]
    kept = {e for e, _ in manifests[-keep_states:]}
    out: list[str] = [name for _, name in manifests[:-keep_states]]
    for name in names:
        state = _STATE_RE.match(name)
        if state is not None and int(state.group(1)) not in kept:
            out.append(name)
    for name in names:
        epoch = best_epoch_of(name)
        if epoch is None:
            continue
        superseded = keep_only_last_best and not save_every_epoch and epoch != best_epoch
        if epoch > last_epoch or superseded:
            out.append(name)
    return out
