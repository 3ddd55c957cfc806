"""Background commits: a bundle's snapshot is taken on the training thread and written by
another thread while the next epoch trains.

:class:`BackgroundCommits` stands in for a :class:`epochal._snapshots.SnapshotStore` during one
``ModelBundle.train`` call. Its ``commit`` first waits for the previous commit's write (so at
most one commit is in flight, and commits reach the store in epoch order), then takes the
snapshot in one of two ways (the training may change the weights right after):

* *staged*, where the store can stage (``open_staged`` in
  :class:`epochal.ports.CheckpointStore`; ``epochal_adapters``' store: a local directory's
  temporary files, or local spool files for a remote store such as ``s3://``): the files are
  serialized on the training thread into them
  (:meth:`epochal._snapshots.SnapshotStore.stage`), so the process holds no copy of the
  snapshot; the writer thread makes them durable and visible (``fsync`` and rename, or one
  upload each) and writes the manifest (:meth:`epochal._staged_commit.StagedCommit.publish`);
* *captured*, for a store without ``open_staged`` (such as :mod:`epochal.testing`'s
  in-memory fake): :func:`capture` makes one copy of the snapshot's tensors and containers,
  on the host, and the writer thread commits the copy with
  :meth:`epochal._snapshots.SnapshotStore.commit`.

Either way the files and the order in which they become visible (best checkpoint, state,
manifest, derived files, pruning) are the synchronous commit's; a staged commit's bytes are
too, and a captured one's differ only where :func:`capture` says. If staging fails with an
``OSError`` (no room for the staging files), the commit is captured instead, with a warning.
:meth:`BackgroundCommits.close` waits for the last write at the end of training.

An exception raised by a background write is re-raised on the training thread, by the next
``commit`` or by ``close``, with a note that says whether the epoch was committed: a write that
failed before the manifest leaves the previous commit as the one a resume starts after, as
after a crash; one that failed after it (a derived file, the pruning) leaves the epoch
committed. The write protocol (state, then manifest last) is unchanged, so a process killed
during a background write resumes exactly from the previous commit or from that epoch.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import torch

from epochal._snapshots import Snapshot, SnapshotStore
from epochal.core import resume
from epochal.exceptions import ConfigurationError
from epochal.ports import CheckpointStore

__all__ = [
    "BackgroundCommits", "capture", "committing", "open_commits", "wants_background_commits",
]

_IN_PROCESS_SCHEMES = frozenset({"file", "local", "memory", "fake-memory"})


def wants_background_commits(store: CheckpointStore, requested: bool | None) -> bool:
    """Whether a bundle on ``store`` commits in the background.

    Args:
        store: The bundle's store.
        requested: The user's choice; None picks background commits for stores whose URL is
            not a local path nor an in-memory store (``s3://``, ``gs://``, ...: each write is
            a network round trip), synchronous ones otherwise.

    Returns:
        True to write commits in the background.

    Raises:
        ConfigurationError: ``requested`` is not True, False or None.
    """
    if requested is not None and not isinstance(requested, bool):
        raise ConfigurationError(
            f"background_commits must be True, False or None (None: on for remote stores); "
            f"got {requested!r} of type {type(requested).__name__}."
        )
    if requested is not None:
        return requested
    url = getattr(store, "base_url", None)
    if not isinstance(url, str):
        try:
            url = str(store.url("bundle.json"))
        except Exception:  # a store that cannot name its files: stay synchronous
            return False
    scheme = url.split("://", 1)[0].lower() if "://" in url else "file"
    return scheme not in _IN_PROCESS_SCHEMES


def _prepare_memo(value: Any, memo: dict[int, Any], seen: set[int]) -> None:
    """Put into ``memo`` (for ``copy.deepcopy``) the copies ``deepcopy`` would get wrong:
    a host copy of each tensor on a device (the capture then holds no device memory), and a
    copy of each tensor computed by an operation (``deepcopy`` refuses those; a callback's
    state may hold one): its values, detached, through the same memo (so a view of it stays
    a view), with its ``requires_grad``. ``seen`` guards against containers holding
    themselves."""
    if isinstance(value, torch.Tensor):
        if id(value) in memo:
            return
        if value.device.type != "cpu":
            memo[id(value)] = value.detach().to("cpu", copy=True)
        elif value.grad_fn is not None:
            copied = copy.deepcopy(value.detach(), memo)
            memo[id(value)] = copied.requires_grad_(value.requires_grad)
    elif isinstance(value, (Mapping, list, tuple)):
        if id(value) in seen:
            return
        seen.add(id(value))
        for item in value.values() if isinstance(value, Mapping) else value:
            _prepare_memo(item, memo, seen)


def capture(snapshot: Snapshot) -> Snapshot:
    """One copy of ``snapshot`` that training cannot change: ``copy.deepcopy`` of every field
    (tensors that share a storage still share one; device tensors are copied to the host,
    where ``torch.load(map_location='cpu')`` puts them back anyway, each on its own: tied
    weights on a GPU are stored twice in a background commit's files). Committed, the copy
    gives the same files, byte for byte, as the snapshot would on the CPU (a complex tensor's
    lazy conjugation is resolved: same values, other bytes). Memory: one snapshot.
    """
    memo: dict[int, Any] = {}
    fields = {f.name: getattr(snapshot, f.name) for f in attrs.fields(Snapshot)}
    fields["network"] = dict(fields["network"])
    _prepare_memo(list(fields.values()), memo, set())
    return Snapshot(**copy.deepcopy(fields, memo))


class BackgroundCommits(SnapshotStore):
    """A :class:`SnapshotStore` whose ``commit`` writes in a background thread.

    Every other attribute and method is the wrapped store's (it is a view of it, not a copy).

    Args:
        snapshots: The bundle's snapshot store.

    Attributes:
        writes: Commits handed to the writer thread so far.
        staged: How many of them were staged (serialized on the training thread into the
            store's temporary files) rather than captured.
    """

    def __init__(self, snapshots: SnapshotStore) -> None:  # no super().__init__: a view
        self._snapshots = snapshots
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.writes = 0
        self.staged = 0
        self._epoch: int | None = None
        self._warned = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._snapshots, name)

    def commit(
        self,
        snapshot: Snapshot,
        *,
        is_best: bool,
        monitor: str | None,
        keep_only_last_best: bool,
        save_every_epoch: bool,
    ) -> None:
        """Wait for the previous write, stage or capture ``snapshot``, start publishing it.

        Where the store can stage (``open_staged``: a local directory, or a remote store's
        local spool files), the snapshot's files are serialized into the staging files here
        (:meth:`SnapshotStore.stage`: no copy in this process's memory), and the writer
        thread publishes them. For a store without ``open_staged`` the snapshot is captured
        (:func:`capture`: one copy of its tensors) and the writer thread commits the copy.

        Args:
            snapshot: The epoch's snapshot (serialized or copied before this returns).
            is_best: Also write the epoch's best checkpoint.
            monitor: The monitored key, for the manifest.
            keep_only_last_best: Pruning option (see ``SnapshotStore.commit``).
            save_every_epoch: Pruning option (see ``SnapshotStore.commit``).

        Raises:
            BaseException: Whatever the previous background write raised (its note says
                whether that epoch was committed).

        Warns:
            RuntimeWarning: Staging failed with an ``OSError`` (no room for the staging
                files): this commit, and any later one that cannot be staged, is captured
                instead (once per training).
        """
        self.wait()
        options = {"is_best": is_best, "monitor": monitor,
                   "keep_only_last_best": keep_only_last_best,
                   "save_every_epoch": save_every_epoch}
        try:
            staged = self._snapshots.stage(snapshot, **options)  # type: ignore[arg-type]
        except OSError as exc:  # e.g. no room for a remote store's spool files
            staged = None
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"Could not stage the commit of epoch {snapshot.epoch} to "
                    f"{self._snapshots.describe} ({exc}); committing a copy of the snapshot "
                    "held in memory instead (one snapshot's tensors), for this commit and any "
                    "later one that cannot be staged. For a remote store, the staging files "
                    f"go to the local temporary directory {tempfile.gettempdir()} (set "
                    "TMPDIR to move them).",
                    RuntimeWarning,
                    stacklevel=3,
                )
        if staged is not None:
            self.staged += 1
            publish = staged.publish
            discard = staged.discard
        else:
            captured = capture(snapshot)

            def publish() -> None:
                self._snapshots.commit(captured, **options)  # type: ignore[arg-type]

            def discard() -> None:
                pass

        def write() -> None:
            try:
                publish()
            except BaseException as exc:  # re-raised on the training thread
                self._error = exc

        thread = threading.Thread(
            target=write, name=f"epochal-commit-{snapshot.epoch}", daemon=False
        )
        try:
            thread.start()
        except BaseException:  # no thread: nothing will publish the staged files
            discard()
            raise
        self._thread = thread
        self._epoch = snapshot.epoch
        self.writes += 1

    @property
    def pending(self) -> bool:
        """Whether a write is still running."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        """Block until the write in flight (if any) is done.

        Raises:
            BaseException: What that write raised, once (a note names the failed commit).
        """
        thread = self._thread
        if thread is not None:
            thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            where = (f"Raised by the background write of a commit to "
                     f"{self._snapshots.describe} ({thread.name if thread else 'commit'})")
            if self._manifest_written():
                note = (f"{where}, after its manifest was written: epoch {self._epoch} is "
                        "committed and a resume starts after it; what failed is a derived "
                        "file (log.tsv, checkpoint.ckpt), which a resume rewrites, or the "
                        "removal of superseded files, which the next commit retries.")
            else:
                note = (f"{where}; that epoch is not committed and a resume starts after the "
                        "previous commit.")
            if hasattr(error, "add_note"):
                error.add_note(note)
            raise error

    def _manifest_written(self) -> bool:
        """Whether the failed write's epoch has its manifest (its commit point) in the store;
        False when the store cannot tell."""
        if self._epoch is None:
            return False
        try:
            return bool(self._snapshots.store.exists(resume.manifest_name(self._epoch)))
        except Exception:  # the store is failing: say what is sure
            return False

    def close(self, *, raise_error: bool = True) -> None:
        """Wait for the last write (end of training).

        Args:
            raise_error: Re-raise the write's exception; False when the training is already
                ending with an exception of its own (that one propagates instead).
        """
        try:
            self.wait()
        except BaseException:
            if raise_error:
                raise


def open_commits(snapshots: SnapshotStore, *, background: bool) -> SnapshotStore:
    """The store a training commits to: ``snapshots`` itself, or a :class:`BackgroundCommits`
    view of it."""
    return BackgroundCommits(snapshots) if background else snapshots


@contextlib.contextmanager
def committing(snapshots: SnapshotStore) -> Iterator[None]:
    """Around a training: on exit, wait for the background write in flight (none for a
    synchronous store); its exception is raised unless the training raised one."""
    if not isinstance(snapshots, BackgroundCommits):
        yield
        return
    try:
        yield
    except BaseException:
        snapshots.close(raise_error=False)
        raise
    snapshots.close()
