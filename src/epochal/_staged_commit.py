"""A background commit's second half: the files :meth:`epochal._snapshots.SnapshotStore.stage`
serialized into staging files, published later by the writer thread
(:mod:`epochal._commit_writer`) in the synchronous commit's order.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

import attrs

from epochal.core import resume
from epochal.ports import CheckpointStore

__all__ = ["StagedCommit"]


@attrs.define(kw_only=True)
class StagedCommit:
    """A commit whose files are serialized
    (:meth:`epochal._snapshots.SnapshotStore.stage`) and not yet published.

    :meth:`publish` completes it in the order of
    :meth:`epochal._snapshots.SnapshotStore.commit`: the best checkpoint, the state file, the
    manifest (the commit point), ``log.tsv``, ``checkpoint.ckpt``, then the clean-up. Each
    staged file is made durable and visible by its ``publish`` (``fsync`` and rename, or one
    upload). Before the manifest is written the previous commit is the trusted one, so a crash
    at any point resumes exactly from one of the two.

    Attributes:
        store: The store the commit belongs to.
        epoch: The committed epoch.
        best, state, last: The staged files (``best`` is None when no best checkpoint is
            written), each with ``publish`` and ``discard``.
        manifest: The manifest's bytes (it names the state file's size and SHA-256).
        log: ``log.tsv``'s bytes.
        prune: Deletes what the commit supersedes (the snapshot store's ``prune`` with
            this commit's arguments).
    """

    store: CheckpointStore
    epoch: int
    best: Any
    state: Any
    last: Any
    manifest: builtins.bytes
    log: builtins.bytes
    prune: Callable[[], Any]

    def publish(self) -> None:
        """Make the commit durable and visible (any thread; once).

        Raises:
            OSError: A file could not be published; the files not yet published are
                removed, and the store's trusted commit is the previous one unless the
                manifest was already written.
        """
        try:
            if self.best is not None:
                self.best.publish()
            self.state.publish()
            self.store.write(resume.manifest_name(self.epoch), self.manifest)
            self.store.write(resume.LOG, self.log)
            self.last.publish()
        except BaseException:
            self.discard()
            raise
        self.prune()

    def discard(self) -> None:
        """Remove the staged files not yet published (no-op for published ones)."""
        for staged in (self.best, self.state, self.last):
            if staged is not None:
                staged.discard()
