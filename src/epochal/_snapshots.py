"""A bundle's snapshots on a :class:`~epochal.ports.CheckpointStore`: commit, read back, derive,
prune, and open a working directory safely.

A commit writes the best checkpoint, the state file, then the manifest (the commit point),
then the derived files and the clean-up. Each file is serialized by ``torch.save`` straight
into the store where the store can stream (``open_write``: local files are streamed to disk,
hashed on the way), so no whole file is held in memory; other stores receive each file's
bytes whole, one file at a time.

A synchronous commit (:meth:`SnapshotStore.commit`) serializes the live state. A background
commit (:mod:`epochal._commit_writer`) either *stages* it where the store can
(:meth:`SnapshotStore.stage`: the files are serialized now into the store's temporary files,
and :meth:`StagedCommit.publish` later makes them durable and visible, in the synchronous
commit's order), or *captures* it (one copy of the snapshot's tensors and containers, on the
host, that training cannot change) and commits the copy from a writer thread; both write the
same bytes as a synchronous commit.

Which manifest to trust, where to start and what to delete are decided by the pure
:mod:`epochal.core.resume`; this module does the I/O.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import torch

from epochal._io import save_torch_into, save_torch_to_store, torch_from_bytes
from epochal._staged_commit import StagedCommit
from epochal.core import resume
from epochal.exceptions import CheckpointError, ResumeError, StorageError
from epochal.ports import CheckpointStore

__all__ = ["Latest", "Manifest", "Snapshot", "SnapshotStore", "StagedCommit", "log_columns"]


def _is_lr_key(key: str) -> bool:
    return key == "lr" or key.startswith("lr_group_")


def log_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The columns of ``log.tsv`` in Poutyne's CSVLogger order: ``epoch, time``, the learning
    rates (``lr`` or ``lr_group_i``), then the other keys as first seen (``loss``, metrics,
    ``val_loss``, ``val_<metric>``)."""
    from epochal_adapters.tsv import columns_of

    columns = columns_of(rows)
    lrs = [c for c in columns if _is_lr_key(c)]
    rest = [c for c in columns if not _is_lr_key(c)]
    head = [c for c in ("epoch", "time") if c in rest]
    return [*head, *lrs, *(c for c in rest if c not in head)]


@attrs.frozen(kw_only=True)
class Snapshot:
    """The full training state at a commit point.

    Attributes:
        epoch: The epoch this state ends (or is inside of, with ``partial_step``).
        global_step: Optimizer steps done so far.
        network: The network's ``state_dict``.
        optimizer: The optimizer's ``state_dict``, or None.
        optimizer_class: The optimizer's class name, or None.
        callbacks: ``state_dict`` of each stateful callback, keyed ``"{index}:{class}"``.
        random_states: Python, NumPy and torch RNG states.
        loader_generators: States of the training loader's torch generators.
        log_rows: One dict per finished epoch, oldest first.
        best: The monitor's state (:meth:`MonitorState.to_dict`).
        stopped: A callback stopped training at this epoch.
        partial_step: None at an epoch's end; steps done in ``epoch`` for a mid-epoch commit.
        precision: The loss scaler's state (``MixedPrecision.state_dict()``), or None
            (``'32'``, ``'bf16-mixed'``, and snapshots written before it existed).
        world_size: Ranks of the training that wrote it (1 for one process).
        data_seed: The distributed data seed (order of the shards), or None in one process.
        partial: For a mid-epoch commit, what finishing the epoch needs (see
            :mod:`epochal._preemption`): the RNG and loader generator states at the epoch's
            start and each rank's pass values; else None.
    """

    epoch: int
    global_step: int
    network: Mapping[str, torch.Tensor]
    optimizer: Mapping[str, Any] | None = None
    optimizer_class: str | None = None
    callbacks: Mapping[str, Any] = attrs.field(factory=dict)
    random_states: Any = None
    loader_generators: Sequence[torch.Tensor] = ()
    log_rows: Sequence[Mapping[str, Any]] = ()
    best: Mapping[str, Any] = attrs.field(factory=dict)
    stopped: bool = False
    partial_step: int | None = None
    precision: Mapping[str, Any] | None = None
    world_size: int = 1
    data_seed: int | None = None
    partial: Mapping[str, Any] | None = None

    def to_payload(self) -> dict[str, Any]:
        """Plain containers for ``torch.save`` (loadable with ``weights_only=True``)."""
        return {
            "format": resume.FORMAT,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "network": dict(self.network),
            "optimizer": self.optimizer,
            "optimizer_class": self.optimizer_class,
            "callbacks": dict(self.callbacks),
            "random_states": self.random_states,
            "loader_generators": list(self.loader_generators),
            "log_rows": [dict(r) for r in self.log_rows],
            "best": dict(self.best),
            "stopped": self.stopped,
            "partial_step": self.partial_step,
            "precision": None if self.precision is None else dict(self.precision),
            "world_size": self.world_size,
            "data_seed": self.data_seed,
            "partial": None if self.partial is None else dict(self.partial),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], *, source: str) -> Snapshot:
        """Inverse of :meth:`to_payload`.

        Reads the weights from ``network``, or from ``network_bytes`` (the checkpoint files'
        bytes, embedded) in state files written by earlier versions of epochal.

        Raises:
            CheckpointError: A field is missing; the message names ``source``.
        """
        try:
            if "network_bytes" in payload:
                embedded = payload["network_bytes"]
                network = torch_from_bytes(embedded.numpy().tobytes(), source=source)
            else:
                network = payload["network"]
            return cls(
                epoch=int(payload["epoch"]),
                global_step=int(payload["global_step"]),
                network=network,
                optimizer=payload.get("optimizer"),
                optimizer_class=payload.get("optimizer_class"),
                callbacks=payload.get("callbacks", {}),
                random_states=payload["random_states"],
                loader_generators=list(payload.get("loader_generators", [])),
                log_rows=[dict(r) for r in payload["log_rows"]],
                best=dict(payload["best"]),
                stopped=bool(payload.get("stopped", False)),
                partial_step=payload.get("partial_step"),
                precision=payload.get("precision"),
                world_size=int(payload.get("world_size", 1)),
                data_seed=payload.get("data_seed"),
                partial=payload.get("partial"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{source} is not a bundle state file (missing or bad field: {exc}). Expected "
                f"a file written by ModelBundle ({resume.FORMAT})."
            ) from exc


@attrs.frozen(kw_only=True)
class Manifest:
    """The commit record of one snapshot: names its state file with size and SHA-256.

    Attributes:
        epoch: The committed epoch.
        state: Name of the state file.
        bytes: Size of the state file.
        sha256: Hex SHA-256 of the state file.
        global_step: Optimizer steps done.
        best_epoch: The monitored best epoch so far, or None.
        best_value: Its value, or None.
        monitor: The monitored key, or None.
        stopped: Training was stopped early here.
        partial_step: None for an epoch's end, else the steps done inside ``epoch``.
    """

    epoch: int
    state: str
    bytes: int
    sha256: str
    global_step: int
    best_epoch: int | None = None
    best_value: float | None = None
    monitor: str | None = None
    stopped: bool = False
    partial_step: int | None = None

    def to_json(self) -> builtins.bytes:
        """The manifest file's bytes."""
        content = {"format": resume.FORMAT, **attrs.asdict(self)}
        return json.dumps(content, indent=1, sort_keys=True).encode("utf-8")

    @classmethod
    def from_content(cls, content: Mapping[str, Any]) -> Manifest:
        """From a parsed manifest that :func:`epochal.core.resume.check_manifest` accepted."""
        names = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in content.items() if k in names})


def _log_bytes(rows: Sequence[Mapping[str, Any]]) -> bytes:
    from epochal_adapters.tsv import format_table

    return format_table(log_columns(rows), rows)


def _manifest(
    snapshot: Snapshot, state: str, size: int, sha256: str, monitor: str | None
) -> Manifest:
    """The manifest of ``snapshot`` whose state file ``state`` has ``size`` bytes and SHA-256
    ``sha256``."""
    best = snapshot.best
    return Manifest(
        epoch=snapshot.epoch,
        state=state,
        bytes=size,
        sha256=sha256,
        global_step=snapshot.global_step,
        best_epoch=best.get("best_epoch"),
        best_value=best.get("best"),
        monitor=monitor,
        stopped=snapshot.stopped,
        partial_step=snapshot.partial_step,
    )


@attrs.frozen(kw_only=True)
class Latest:
    """The trusted commit of a directory.

    Attributes:
        manifest: The trusted manifest's record, or None for a fresh directory.
        manifest_name: Its name in the store.
        snapshot: Its snapshot, or None.
    """

    manifest: Manifest | None = None
    manifest_name: str | None = None
    snapshot: Snapshot | None = None


class SnapshotStore:
    """The bundle's files on a store.

    Args:
        store: The working directory.
        describe: The directory as the user gave it, for messages.
    """

    def __init__(self, store: CheckpointStore, *, describe: str) -> None:
        self.store = store
        self.describe = describe

    # ------------------------------------------------------------------ opening

    def sweep_temporary(self) -> list[str]:
        """Remove temporary files a killed write left (``.name.XXXX.tmp``), where the store
        can list them. Returns their names."""
        sweep: Callable[[], list[str]] | None = getattr(self.store, "remove_temp_files", None)
        return list(sweep()) if sweep is not None else []

    def probe(self) -> None:
        """Check that the directory exists or can be made, is a directory and is writable.

        Raises:
            StorageError: It cannot be used; the message names the path and the problem.
        """
        probe: Callable[[], None] | None = getattr(self.store, "probe", None)
        if probe is not None:
            probe()
            return
        name = ".epochal-probe"
        try:
            self.store.write(name, b"")
            self.store.delete(name)
        except OSError as exc:
            raise StorageError(
                f"Cannot write in the bundle directory {self.describe}: {exc}. Expected a "
                "writable directory (or a URL whose bucket exists and accepts writes)."
            ) from exc

    def ensure_identity(self) -> None:
        """Write the identity record if it is missing (before any other file of the bundle;
        each write is durable before it returns)."""
        if not self.store.exists(resume.IDENTITY):
            content = {"format": resume.FORMAT, "kind": "epochal.ModelBundle"}
            self.store.write(resume.IDENTITY, json.dumps(content).encode("utf-8"))

    def open_for_training(self) -> Latest:
        """Make the directory ready: sweep temporary files, probe, find the trusted commit,
        refuse foreign files, write the identity record, delete this bundle's uncommitted
        leftovers and rewrite the derived files of the commit.

        Raises:
            StorageError: See :meth:`probe`.
            ResumeError: Foreign training files and no commit.
            CheckpointError: Manifests exist but none is usable.
        """
        self.probe()
        self.sweep_temporary()
        latest = self.read_latest()
        self.ensure_identity()
        names = self.store.names()
        state = resume.classify_directory(
            names,
            has_identity=True,
            last_epoch=latest.manifest.epoch if latest.manifest else None,
        )
        for name in state.uncommitted:
            self.store.delete(name)
        if latest.snapshot is not None:
            self.write_derived(latest.snapshot)
        return latest

    # ------------------------------------------------------------------ reading

    def read_latest(self) -> Latest:
        """The newest commit whose state file matches its manifest.

        Manifests are tried newest first; one that does not parse or whose state file is
        missing or does not match is skipped with a warning.

        Raises:
            ResumeError: No commit, and training files this bundle did not write.
            CheckpointError: Manifests exist but none is usable (each is named).
        """
        names = self.store.names()
        listed = resume.manifest_epochs(names)
        parsed: list[tuple[int, str, Any]] = []
        for epoch, name in listed:
            try:
                parsed.append((epoch, name, json.loads(self.store.read(name).decode("utf-8"))))
            except (ValueError, UnicodeDecodeError, FileNotFoundError) as exc:
                parsed.append((epoch, name, f"{type(exc).__name__}: {exc}"))
        candidates, problems = resume.manifest_candidates(parsed)
        problems = [self._url_problem(p) for p in problems]
        skipped_newer = bool(problems)
        for candidate in candidates:
            fields = candidate.fields
            try:
                data = self.store.read(fields.state)
            except (FileNotFoundError, ValueError) as exc:
                problems.append(f"{self.store.url(candidate.name)}: {exc}")
                skipped_newer = True
                continue
            if len(data) != fields.bytes or hashlib.sha256(data).hexdigest() != fields.sha256:
                problems.append(
                    f"{self.store.url(fields.state)}: {len(data)} bytes with a checksum that "
                    f"does not match {self.store.url(candidate.name)} (expected {fields.bytes} "
                    "bytes)"
                )
                skipped_newer = True
                continue
            if skipped_newer:
                warnings.warn(
                    "Skipped unusable newer bundle state and resumed from epoch "
                    f"{fields.epoch}: " + "; ".join(problems),
                    RuntimeWarning,
                    stacklevel=3,
                )
            source = self.store.url(fields.state)
            payload = torch_from_bytes(data, source=source)
            manifest = Manifest.from_content(
                json.loads(self.store.read(candidate.name).decode("utf-8"))
            )
            return Latest(
                manifest=manifest,
                manifest_name=candidate.name,
                snapshot=Snapshot.from_payload(payload, source=source),
            )
        if problems:
            raise CheckpointError(
                "No usable training state in "
                f"{self.describe}: every manifest failed its check ("
                + "; ".join(problems)
                + "). Expected manifests/epoch_N.json naming a state file with matching size "
                "and SHA-256. Move the directory away to start over."
            )
        state = resume.classify_directory(
            names, has_identity=resume.IDENTITY in names, last_epoch=None
        )
        if state.foreign and resume.written_by_poutyne(names):
            raise ResumeError(
                f"{self.describe} was written by Poutyne's ModelBundle (it holds "
                f"{', '.join(n for n in resume.POUTYNE_MARKERS if n in names)}); epochal "
                "cannot resume it: Poutyne's random-state file is a pickle that epochal's "
                "weights_only loading refuses, and the directory holds no callback states, so "
                "an exact resume is impossible. Use a new directory for the epochal bundle; to "
                "start from Poutyne's weights, load them with "
                f"model.load_weights({self._url_or_name('checkpoint.ckpt')!r}) (or "
                "load_checkpoint with a path). get_stats, load_checkpoint, test and infer read "
                "a directory that holds only Poutyne's files, without changing it. Nothing was "
                "changed."
            )
        if state.foreign:
            shown = ", ".join(state.foreign[:4]) + (", ..." if len(state.foreign) > 4 else "")
            raise ResumeError(
                f"{self.describe} holds training files ({shown}) but no manifests/epoch_N.json "
                "to resume from, and they are not an unfinished first commit of this bundle "
                f"(copied or synced partially?). Expected a bundle directory with its "
                "manifests/, or an empty one. Restore manifests/, or use a new directory; "
                "nothing was changed."
            )
        return Latest()

    def _url_or_name(self, name: str) -> str:
        try:
            return self.store.url(name)
        except ValueError:
            return name

    def _url_problem(self, problem: str) -> str:
        name, _, rest = problem.partition(": ")
        try:
            return f"{self.store.url(name)}: {rest}"
        except ValueError:
            return problem

    def read_weights(self, name: str) -> Any:
        """The weights stored under ``name``.

        Raises:
            CheckpointError: Missing (train first) or not a torch checkpoint.
        """
        try:
            data = self.store.read(name)
        except FileNotFoundError:
            raise CheckpointError(
                f"{self.store.url(name)} does not exist; train the bundle first."
            ) from None
        return torch_from_bytes(data, source=self.store.url(name))

    def saved_epochs(self) -> list[int]:
        """Epochs with a ``checkpoint_epoch_{epoch}.ckpt``, ascending."""
        epochs = (resume.best_epoch_of(n) for n in self.store.names("checkpoint_epoch_"))
        return sorted(e for e in epochs if e is not None)

    # ------------------------------------------------------------------ writing

    def commit(
        self,
        snapshot: Snapshot,
        *,
        is_best: bool,
        monitor: str | None,
        keep_only_last_best: bool,
        save_every_epoch: bool,
    ) -> None:
        """Write ``snapshot`` now: the best checkpoint (when ``is_best`` or
        ``save_every_epoch``), the state file, the manifest (the commit point: a kill after it
        is repaired on resume), ``log.tsv``, ``checkpoint.ckpt``, then the clean-up.

        The tensors are serialized straight into the store (streamed where the store has
        ``open_write``): they must not change until this returns (a background commit
        stages them first, :meth:`stage`, or passes a copy,
        :func:`epochal._commit_writer.capture`).
        """
        epoch = snapshot.epoch
        weights = dict(snapshot.network)
        if is_best or save_every_epoch:
            self.save_torch(resume.best_name(epoch), weights)
        state = resume.state_name(epoch)
        size, sha256 = self.save_torch(state, snapshot.to_payload())
        manifest = _manifest(snapshot, state, size, sha256, monitor)
        self.store.write(resume.manifest_name(epoch), manifest.to_json())
        self.store.write(resume.LOG, _log_bytes(snapshot.log_rows))
        self.save_torch(resume.LAST, weights)
        self.prune(
            last_epoch=epoch,
            best_epoch=snapshot.best.get("best_epoch"),
            keep_only_last_best=keep_only_last_best,
            save_every_epoch=save_every_epoch,
        )

    def stage(
        self,
        snapshot: Snapshot,
        *,
        is_best: bool,
        monitor: str | None,
        keep_only_last_best: bool,
        save_every_epoch: bool,
    ) -> StagedCommit | None:
        """Serialize ``snapshot``'s files now into the store's unpublished temporary files, and
        leave the rest of :meth:`commit` (durability, renames, manifest, derived files,
        clean-up, in :meth:`commit`'s order) to :meth:`StagedCommit.publish`.

        When this returns, the commit no longer reads ``snapshot``'s tensors: training may
        change them. The serialized bytes are in the temporary files (on local disk: the
        page cache), not in this process's memory.

        Args:
            snapshot: The epoch's snapshot.
            is_best: Also stage the epoch's best checkpoint.
            monitor: The monitored key, for the manifest.
            keep_only_last_best: Pruning option (see :meth:`commit`).
            save_every_epoch: Pruning option (see :meth:`commit`).

        Returns:
            The staged commit, or None when the store cannot stage (it has no
            ``open_staged``, or its ``open_staged`` returns None); nothing was
            written then.

        Raises:
            OSError: A temporary file could not be written (what was staged is removed).
        """
        open_staged: Callable[[str], Any] | None = getattr(self.store, "open_staged", None)
        if open_staged is None:
            return None
        epoch = snapshot.epoch
        weights = dict(snapshot.network)
        best_name = resume.best_name(epoch) if is_best or save_every_epoch else None
        state = resume.state_name(epoch)
        files: dict[str, Any] = {}
        try:
            for name, obj in ((best_name, weights), (state, snapshot.to_payload()),
                              (resume.LAST, weights)):
                if name is None:
                    continue
                staged = open_staged(name)
                if staged is None:  # this store cannot stage: commit another way
                    for other in files.values():
                        other.discard()
                    return None
                files[name] = staged
                size, sha256 = save_torch_into(staged, obj, hashed=name == state)
                if name == state:
                    manifest = _manifest(snapshot, state, size, sha256, monitor)
        except BaseException:
            for staged in files.values():
                staged.discard()
            raise
        return StagedCommit(
            store=self.store,
            epoch=epoch,
            best=files.get(best_name) if best_name is not None else None,
            state=files[state],
            last=files[resume.LAST],
            manifest=manifest.to_json(),
            log=_log_bytes(snapshot.log_rows),
            prune=functools.partial(
                self.prune,
                last_epoch=epoch,
                best_epoch=snapshot.best.get("best_epoch"),
                keep_only_last_best=keep_only_last_best,
                save_every_epoch=save_every_epoch,
            ),
        )

    def save_torch(self, name: str, obj: Any) -> tuple[int, str]:
        """``torch.save(obj)`` as ``name``: streamed into the store when it has ``open_write``
        (no whole file in memory), else serialized to bytes and written.

        Returns:
            ``(size, sha256)``: the file's size in bytes and its hex SHA-256.
        """
        return save_torch_to_store(self.store, name, obj, hashed=True)

    def write_derived(self, snapshot: Snapshot) -> None:
        """Rewrite ``log.tsv`` and ``checkpoint.ckpt`` from a committed snapshot."""
        self.store.write(resume.LOG, _log_bytes(snapshot.log_rows))
        self.save_torch(resume.LAST, dict(snapshot.network))

    def prune(
        self,
        *,
        last_epoch: int,
        best_epoch: int | None,
        keep_only_last_best: bool,
        save_every_epoch: bool,
    ) -> None:
        """Delete what the commit of ``last_epoch`` supersedes (see
        :func:`epochal.core.resume.prune_names`)."""
        for name in resume.prune_names(
            self.store.names(),
            last_epoch=last_epoch,
            best_epoch=best_epoch,
            keep_only_last_best=keep_only_last_best,
            save_every_epoch=save_every_epoch,
        ):
            self.store.delete(name)

    def write_table(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write ``rows`` as a TSV table ``name`` (columns as first seen)."""
        from epochal_adapters.tsv import columns_of, format_table

        self.store.write(name, format_table(columns_of(rows), rows))

