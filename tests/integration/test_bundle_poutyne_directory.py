"""A directory written by Poutyne's ModelBundle, given to epochal's: every call refuses with a
message that names Poutyne and says what to do, and changes no file there."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from torch import nn

from epochal import Model, ModelBundle
from epochal.exceptions import ResumeError

poutyne = pytest.importorskip("poutyne")


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 3, generator=g), torch.randint(0, 2, (16,), generator=g)


@pytest.fixture(scope="module")
def poutyne_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("poutyne") / "run"
    torch.manual_seed(0)
    x, y = _data()
    bundle = poutyne.ModelBundle.from_network(
        str(directory), nn.Linear(3, 2), optimizer="sgd", loss_function="cross_entropy",
        batch_metrics=["accuracy"], monitor_metric="val_loss", monitor_mode="min",
    )
    bundle.train_data(x, y, validation_data=(x, y), epochs=2, batch_size=8, verbose=False)
    return directory


def _digests(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _epochal_bundle(directory: Path) -> ModelBundle:
    return ModelBundle.from_network(
        str(directory), nn.Linear(3, 2), optimizer="sgd", loss_function="cross_entropy",
        batch_metrics=["accuracy"], monitor_metric="val_loss", monitor_mode="min",
    )


@pytest.mark.parametrize("call", ["train", "get_stats", "test_data"])
def test_refuses_naming_poutyne_and_changes_nothing(poutyne_directory, call):
    assert (poutyne_directory / "last.epoch").exists()
    before = _digests(poutyne_directory)
    x, y = _data()
    with pytest.raises(ResumeError) as info:
        bundle = _epochal_bundle(poutyne_directory)
        if call == "train":
            bundle.train_data(x, y, validation_data=(x, y), epochs=3, batch_size=8,
                              verbose=False)
        elif call == "get_stats":
            bundle.get_stats()
        else:
            bundle.test_data(x, y, batch_size=8, verbose=False)
    message = str(info.value)
    assert "written by Poutyne's ModelBundle" in message
    assert "pickle" in message and "callback states" in message
    assert "new directory" in message and "checkpoint.ckpt" in message
    assert _digests(poutyne_directory) == before


def test_the_advised_weight_load_works(poutyne_directory):
    """What the message advises: Poutyne's checkpoint.ckpt loads into an epochal Model."""
    model = Model(nn.Linear(3, 2), "sgd", "cross_entropy")
    before = _digests(poutyne_directory)
    model.load_weights(str(poutyne_directory / "checkpoint.ckpt"))
    saved = torch.load(poutyne_directory / "checkpoint.ckpt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in model.network.state_dict().items())
    assert _digests(poutyne_directory) == before
