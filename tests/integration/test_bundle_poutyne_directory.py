"""A directory written by Poutyne's ModelBundle, given to epochal's: the read-only calls read
Poutyne's own files and give what Poutyne's bundle gives, changing no file there; training
refuses with a message that names Poutyne and says what to do."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from epochal import Model, ModelBundle
from epochal.exceptions import ResumeError

poutyne = pytest.importorskip("poutyne")
pd = pytest.importorskip("pandas")

_OPTIONS = {
    "optimizer": "sgd", "loss_function": "cross_entropy", "batch_metrics": ["accuracy"],
    "monitor_metric": "val_loss", "monitor_mode": "min",
}


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 3, generator=g), torch.randint(0, 2, (16,), generator=g)


@pytest.fixture(scope="module")
def poutyne_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("poutyne") / "run"
    torch.manual_seed(0)
    x, y = _data()
    bundle = poutyne.ModelBundle.from_network(str(directory), nn.Linear(3, 2), **_OPTIONS)
    bundle.train_data(x, y, validation_data=(x, y), epochs=3, batch_size=8, verbose=False)
    return directory


def _digests(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _epochal_bundle(directory: Path) -> ModelBundle:
    return ModelBundle.from_network(str(directory), nn.Linear(3, 2), **_OPTIONS)


def _poutyne_bundle(directory: Path, tmp_path: Path) -> object:
    """Poutyne's bundle on a byte-identical copy (its test writes test_log.tsv there)."""
    copy = tmp_path / "poutyne_copy"
    shutil.copytree(directory, copy)
    return poutyne.ModelBundle.from_network(str(copy), nn.Linear(3, 2), **_OPTIONS)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    theirs = b.state_dict()
    return all(torch.equal(v.cpu(), theirs[k].cpu()) for k, v in a.state_dict().items())


def test_train_refuses_naming_poutyne_and_changes_nothing(poutyne_directory):
    """train() still refuses a Poutyne directory (its random state is a pickle, it has no
    callback states), says what to do, and changes no file."""
    assert (poutyne_directory / "last.epoch").exists()
    before = _digests(poutyne_directory)
    x, y = _data()
    with pytest.raises(ResumeError) as info:
        _epochal_bundle(poutyne_directory).train_data(
            x, y, validation_data=(x, y), epochs=4, batch_size=8, verbose=False)
    message = str(info.value)
    assert "written by Poutyne's ModelBundle" in message
    assert "pickle" in message and "callback states" in message
    assert "new directory" in message and "checkpoint.ckpt" in message
    assert _digests(poutyne_directory) == before


def test_read_only_calls_match_poutyne_and_change_nothing(poutyne_directory, tmp_path):
    """get_stats, the best row, saved epochs, load_checkpoint, test*, infer* and
    is_better_than give what Poutyne's bundle gives, and every file is left as it was, with
    no new file (test_log.tsv is not written; a warning says so once)."""
    before = _digests(poutyne_directory)
    ours = _epochal_bundle(poutyne_directory)
    theirs = _poutyne_bundle(poutyne_directory, tmp_path)

    pd.testing.assert_frame_equal(ours.get_stats(), theirs.get_stats())
    pd.testing.assert_frame_equal(ours.get_best_epoch_stats(), theirs.get_best_epoch_stats())
    assert (list(ours.get_saved_epochs()["epoch"])
            == list(theirs.get_saved_epochs()["epoch"]))
    assert (poutyne_directory / "checkpoint_epoch_2.ckpt").exists()

    for checkpoint in ("best", "last", 2, str(poutyne_directory / "checkpoint_epoch_1.ckpt")):
        ours.model.network.reset_parameters()
        mine = ours.load_checkpoint(checkpoint)
        expected = theirs.load_checkpoint(checkpoint)
        assert _same_weights(ours.model.network, theirs.model.network), checkpoint
        if expected is None:
            assert mine is None
        else:
            pd.testing.assert_frame_equal(mine, expected)
    saved = torch.load(poutyne_directory / "checkpoint.ckpt", weights_only=True,
                       map_location="cpu")
    ours.load_checkpoint("last")
    assert all(torch.equal(saved[k], v) for k, v in ours.model.network.state_dict().items())

    x, y = _data()
    with pytest.warns(UserWarning, match="did not write test_log.tsv"):
        mine = ours.test_data(x, y, batch_size=8, verbose=False)
    expected = theirs.test_data(x, y, batch_size=8, verbose=False)
    assert set(mine) == set(expected)
    for key in expected:
        if key != "time":
            assert mine[key] == pytest.approx(expected[key], abs=1e-6), key

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per bundle
        ours.test(DataLoader(TensorDataset(x, y), batch_size=8), verbose=False,
                  checkpoint="last")
        ours.test_dataset(TensorDataset(x, y), batch_size=8, verbose=False, checkpoint=2)
    np.testing.assert_allclose(ours.infer_data(x, batch_size=8, verbose=False),
                               theirs.infer_data(x, batch_size=8, verbose=False), atol=1e-6)
    ours.infer(DataLoader(TensorDataset(x), batch_size=8), verbose=False)
    ours.infer_dataset(TensorDataset(x), batch_size=8, verbose=False)
    assert ours.is_better_than(_epochal_bundle(poutyne_directory)) is False

    assert _digests(poutyne_directory) == before


def test_mixed_directory_keeps_refusing(poutyne_directory, tmp_path):
    """Poutyne's files beside an epochal identity record are not read as Poutyne's: the
    read-only calls refuse as before, and nothing changes."""
    mixed = tmp_path / "mixed"
    shutil.copytree(poutyne_directory, mixed)
    (mixed / "bundle.json").write_text('{"format": "x", "kind": "epochal.ModelBundle"}')
    before = _digests(mixed)
    with pytest.raises(ResumeError, match="written by Poutyne's ModelBundle"):
        _epochal_bundle(mixed).get_stats()
    assert _digests(mixed) == before


def test_the_advised_weight_load_works(poutyne_directory):
    """What the message advises: Poutyne's checkpoint.ckpt loads into an epochal Model."""
    model = Model(nn.Linear(3, 2), "sgd", "cross_entropy")
    before = _digests(poutyne_directory)
    model.load_weights(str(poutyne_directory / "checkpoint.ckpt"))
    saved = torch.load(poutyne_directory / "checkpoint.ckpt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in model.network.state_dict().items())
    assert _digests(poutyne_directory) == before
