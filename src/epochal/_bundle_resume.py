"""The bundle's resume checks and messages: is a directory's state this bundle's, what a
resumed or finished ``train`` prints, and which weights it leaves in the network.

``BundleResume`` is a part of :class:`~epochal.ModelBundle` (a mixin): ``train`` calls these
before it trains (``_check_network``, ``_check_optimizer``, ``_check_monitor``), to say where
it resumes or why nothing is left to train (``_report_resume``,
``_report_nothing_to_train``), to print Poutyne's best-epoch lines (``_announcer``) and, at
the end, to leave the best epoch's weights in the network (``_restore_best``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from epochal._snapshots import Latest, Snapshot, SnapshotStore
from epochal.callbacks._monitoring import never_logged_message
from epochal.core import resume
from epochal.core.monitor import Monitor
from epochal.exceptions import CheckpointError, MonitorKeyError
from epochal.model import Model
from epochal.ports import CheckpointStore

__all__ = ["BundleResume"]


class BundleResume:
    """Resume checks, resume and best-epoch messages, and the best-weights restore of
    :class:`~epochal.ModelBundle`."""

    # Set by ModelBundle.__init__ (and BundlePaths.set_paths).
    _snapshots: SnapshotStore
    store: CheckpointStore
    directory: str
    monitor: Monitor | None
    model: Model
    logging: bool
    best_checkpoint_filename: str

    def _announcer(self, save_every_epoch: bool) -> Callable[[int], str | None] | None:
        """What the bundle's callback prints at a new best epoch, as Poutyne's bundle does:
        the best checkpoint's path with logging (its ModelCheckpoint's line), no path with
        ``save_every_epoch`` or without logging (its BestModelRestore's); None without
        monitoring."""
        if self.monitor is None:
            return None
        if self.logging and not save_every_epoch:
            return lambda epoch: self.best_checkpoint_filename.format(epoch=epoch)
        return lambda epoch: None

    def _report_resume(
        self, latest: Latest, first: int, schedulers: int, *, verbose: bool
    ) -> None:
        """Poutyne's resume lines (printed whatever ``verbose`` says, as Poutyne's), naming
        the committed state file each part is loaded from (epochal keeps weights, optimizer,
        random states and scheduler states in one); with ``verbose``, also the commit
        trusted."""
        assert latest.snapshot is not None and latest.manifest is not None
        state = self.store.url(latest.manifest.state)
        print(f"Loading weights from {state} and starting at epoch {first:d}.")
        if latest.snapshot.optimizer is not None:
            print(f"Loading optimizer state from {state} and starting at epoch {first:d}.")
        print(f"Loading random states from {state} and starting at epoch {first:d}.")
        for _ in range(schedulers):
            print(f"Loading LR scheduler state from {state} and starting at epoch {first:d}.")
        if verbose:
            print(
                f"{self.directory}: resuming at epoch {first} from the commit of epoch "
                f"{latest.snapshot.epoch} ({self.store.url(latest.manifest_name or '')})."
            )

    def _report_nothing_to_train(self, snapshot: Snapshot, epochs: int) -> None:
        done = snapshot.epoch
        if snapshot.stopped and done < epochs:
            print(
                f"{self.directory}: training was stopped early at epoch {done} (by a "
                f"callback such as EarlyStopping); not training to epoch {epochs}. To "
                "train further, start a new bundle directory from these weights "
                "(load_checkpoint, then from_network on another directory)."
            )
        else:
            print(
                f"{self.directory}: already trained to epoch {done} (asked for "
                f"{epochs}); nothing to train."
            )

    def _restore_best(
        self,
        best: int | None,
        last: int | None,
        in_memory: Mapping[str, torch.Tensor] | None,
    ) -> None:
        """Leave the best epoch's weights in the network (it holds epoch ``last``'s)."""
        if self.monitor is None or best is None or best == last:
            return
        if in_memory is not None:
            self.model.set_weights(dict(in_memory))
        elif self.logging:
            self.model.set_weights(self._snapshots.read_weights(resume.best_name(best)))

    def _check_monitor(self, logged: Sequence[str]) -> None:
        assert self.monitor is not None
        key = self.monitor.key
        if not logged or key in logged:
            return
        raise MonitorKeyError(
            never_logged_message(
                "ModelBundle monitors",
                key,
                logged,
                no_validation_hint=(
                    "There is no validation data: pass valid_loader to train(), or build the "
                    f"bundle with monitor_metric={key[4:]!r} (a training key) or "
                    "monitoring=False."
                ),
                suggestion="monitor_metric={key!r}",
            )
        )

    def _check_optimizer(self, snapshot: Snapshot) -> None:
        saved = snapshot.optimizer_class
        own = type(self.model.optimizer).__name__ if self.model.optimizer else None
        if saved is not None and own is not None and saved != own:
            raise CheckpointError(
                f"{self.directory} was trained with the optimizer {saved}; this bundle has "
                f"{own}. Resume with {_article(saved)} {saved} optimizer (its state is restored), or use a new "
                "directory."
            )

    def _check_network(self, snapshot: Snapshot) -> None:
        own = self.model.network.state_dict()
        saved = snapshot.network
        missing = sorted(set(own) - set(saved))
        unexpected = sorted(set(saved) - set(own))
        mismatched = sorted(
            k for k in set(own) & set(saved) if tuple(own[k].shape) != tuple(saved[k].shape)
        )
        if missing or unexpected or mismatched:
            raise CheckpointError(
                f"{self.directory} holds the training state of a different network: missing "
                f"keys {missing}, unexpected keys {unexpected}, shape mismatches {mismatched}. "
                "Use another directory for this network, or the network that trained there."
            )


def _article(word: str) -> str:
    """``'an'`` before a vowel sound (``an Adam``, ``an SGD``), else ``'a'``."""
    spelled_vowel = word[:1].upper() in "AEIOU"
    initialism_vowel = len(word) > 1 and word.isupper() and word[:1] in "FHLMNRSX"
    return "an" if spelled_vowel or initialism_vowel else "a"
