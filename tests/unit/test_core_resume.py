"""Resume planning (epochal.core.resume): pure decisions over names and parsed manifests."""

from __future__ import annotations

import pytest

from epochal.core import resume


def _manifest(epoch, **extra):
    content = {
        "format": resume.FORMAT,
        "epoch": epoch,
        "state": resume.state_name(epoch),
        "bytes": 10,
        "sha256": "ab" * 32,
    }
    content.update(extra)
    return content


class TestCheckManifest:
    def test_well_formed_manifest_gives_its_fields(self):
        """A complete manifest yields its epoch, state name, size and flags."""
        fields = resume.check_manifest(_manifest(3, stopped=True))
        assert isinstance(fields, resume.ManifestFields)
        assert (fields.epoch, fields.state, fields.bytes, fields.stopped) == (
            3, "state/epoch_0003.state", 10, True)
        assert fields.partial_step is None

    @pytest.mark.parametrize(
        ("content", "says"),
        [
            ([1, 2], "JSON object"),
            ({"format": "other"}, "format"),
            ({"format": resume.FORMAT}, "missing fields"),
            ({**_manifest(1), "bytes": "10"}, "wrong type"),
            ({**_manifest(1), "partial_step": "x"}, "partial_step"),
        ],
    )
    def test_malformed_manifest_is_described(self, content, says):
        """A malformed manifest gives a sentence naming what is wrong."""
        problem = resume.check_manifest(content)
        assert isinstance(problem, str) and says in problem


class TestCandidates:
    def test_newest_first_and_problems_named(self):
        """Candidates come newest first; unreadable or mismatched ones are listed as problems."""
        parsed = [
            (1, "manifests/epoch_0001.json", _manifest(1)),
            (3, "manifests/epoch_0003.json", "ValueError: bad json"),
            (2, "manifests/epoch_0002.json", _manifest(2)),
            (4, "manifests/epoch_0004.json", _manifest(5)),
        ]
        candidates, problems = resume.manifest_candidates(parsed)
        assert [c.fields.epoch for c in candidates] == [2, 1]
        assert any("epoch_0003" in p and "bad json" in p for p in problems)
        assert any("epoch_0004" in p and "names epoch 5" in p for p in problems)

    def test_manifest_epochs_ignores_other_names(self):
        """Only manifests/epoch_N.json names are manifests, sorted by epoch."""
        names = ["manifests/epoch_0010.json", "manifests/epoch_0002.json", "manifests/x.json",
                 "log.tsv"]
        assert resume.manifest_epochs(names) == [
            (2, "manifests/epoch_0002.json"), (10, "manifests/epoch_0010.json")]


class TestStartEpoch:
    @pytest.mark.parametrize(
        ("committed", "stopped", "partial", "epochs", "expected"),
        [
            (None, False, None, 5, 1),
            (3, False, None, 5, 4),
            (5, False, None, 5, None),
            (3, True, None, 5, None),
            (3, False, 7, 5, 3),
            (None, False, None, 0, None),
        ],
    )
    def test_start(self, committed, stopped, partial, epochs, expected):
        """Fresh starts at 1, after epoch k at k+1, inside epoch k at k; done or stopped: None."""
        assert resume.start_epoch(committed=committed, stopped=stopped, partial_step=partial,
                                  epochs=epochs) == expected


class TestClassify:
    NAMES = ("bundle.json", "notes.txt", "state/epoch_0001.state", "checkpoint_epoch_1.ckpt")

    def test_unfinished_first_commit_of_this_bundle_is_uncommitted(self):
        """With the identity record and no commit, the first commit's files are leftovers."""
        state = resume.classify_directory(self.NAMES, has_identity=True, last_epoch=None)
        assert state.foreign == ()
        assert set(state.uncommitted) == {"state/epoch_0001.state", "checkpoint_epoch_1.ckpt"}

    def test_without_identity_training_files_are_foreign(self):
        """Without identity record or commit, training-like files are someone else's."""
        state = resume.classify_directory(list(self.NAMES[1:]), has_identity=False, last_epoch=None)
        assert set(state.foreign) == {"state/epoch_0001.state", "checkpoint_epoch_1.ckpt"}
        assert state.uncommitted == ()

    def test_derived_files_without_commit_are_foreign_even_with_identity(self):
        """log.tsv and checkpoint.ckpt are only written after a manifest: never leftovers."""
        state = resume.classify_directory(["bundle.json", "log.tsv", "checkpoint.ckpt",
                                           "state/epoch_0002.state"],
                                          has_identity=True, last_epoch=None)
        assert set(state.foreign) == {"log.tsv", "checkpoint.ckpt", "state/epoch_0002.state"}

    def test_after_a_commit_only_later_files_are_uncommitted(self):
        """After the commit of epoch 2, files of epoch 3 are leftovers; user files stay."""
        names = ["notes.txt", "state/epoch_0002.state", "state/epoch_0003.state",
                 "checkpoint_epoch_2.ckpt", "checkpoint_epoch_3.ckpt", "log.tsv"]
        state = resume.classify_directory(names, has_identity=False, last_epoch=2)
        assert set(state.uncommitted) == {"state/epoch_0003.state", "checkpoint_epoch_3.ckpt"}


class TestWrittenByPoutyne:
    POUTYNE = ("checkpoint.ckpt", "checkpoint.optim", "checkpoint.randomstate", "last.epoch",
               "log.tsv", "checkpoint_epoch_1.ckpt", "plots/loss.png")

    def test_poutyne_files_alone_are_read_as_poutyne(self):
        """A listing with Poutyne's marker files and no epochal bundle is Poutyne's alone."""
        assert resume.written_by_poutyne_only(self.POUTYNE)

    @pytest.mark.parametrize("extra", [resume.IDENTITY, "manifests/epoch_0001.json"])
    def test_an_epochal_file_makes_it_mixed(self, extra):
        """With the identity record or a manifest it is a mixed directory, not Poutyne's."""
        assert resume.written_by_poutyne((*self.POUTYNE, extra))
        assert not resume.written_by_poutyne_only((*self.POUTYNE, extra))

    def test_no_marker_is_not_poutyne(self):
        """log.tsv and checkpoints alone do not say Poutyne wrote them."""
        assert not resume.written_by_poutyne_only(("log.tsv", "checkpoint.ckpt"))


class TestPrune:
    def test_old_commits_superseded_bests_and_orphans(self):
        """Old manifests before their states; states no kept manifest names; old bests."""
        names = [resume.manifest_name(e) for e in (1, 2, 3)] + [
            resume.state_name(e) for e in (1, 2, 3, 4)] + [
            resume.best_name(e) for e in (1, 3, 4)] + ["notes.txt"]
        out = resume.prune_names(names, last_epoch=3, best_epoch=3, keep_only_last_best=True,
                                 save_every_epoch=False)
        assert out.index("manifests/epoch_0001.json") < out.index("state/epoch_0001.state")
        assert set(out) == {"manifests/epoch_0001.json", "state/epoch_0001.state",
                            "state/epoch_0004.state", "checkpoint_epoch_1.ckpt",
                            "checkpoint_epoch_4.ckpt"}

    def test_save_every_epoch_keeps_every_checkpoint(self):
        """save_every_epoch wins over keep_only_last_best."""
        names = [resume.best_name(e) for e in (1, 2)]
        assert resume.prune_names(names, last_epoch=2, best_epoch=1, keep_only_last_best=True,
                                  save_every_epoch=True) == []
