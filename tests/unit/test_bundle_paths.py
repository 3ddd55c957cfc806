"""Poutyne's path attributes and get_path/set_paths on ModelBundle."""

from __future__ import annotations

import os

import torch
from torch import nn

from epochal import ModelBundle


def _batches(n: int = 2):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4 * n, 3, generator=g), torch.randn(4 * n, 1, generator=g)
    return [(x[i : i + 4], y[i : i + 4]) for i in range(0, 4 * n, 4)]


def test_get_path_joins_inside_the_directory(tmp_path):
    """get_path joins its components under the bundle's directory, for a local path and a
    URL alike."""
    local = ModelBundle.from_network(str(tmp_path), nn.Linear(3, 1), loss_function="mse")
    assert local.get_path("sub", "a.txt") == os.path.join(str(tmp_path), "sub", "a.txt")
    remote = ModelBundle.from_network("memory://paths-test/run", nn.Linear(3, 1),
                                      loss_function="mse")
    assert remote.get_path("a.txt") == "memory://paths-test/run/a.txt"


def test_path_attributes_name_the_files_train_writes(tmp_path):
    """log_filename, model_checkpoint_filename, best_checkpoint_filename and
    test_log_filename name the files the bundle actually writes; log.tsv has Poutyne's
    columns (with lr)."""
    torch.manual_seed(0)
    bundle = ModelBundle.from_network(str(tmp_path), nn.Linear(3, 1), loss_function="mse")
    bundle.train(_batches(), _batches(1), epochs=2, verbose=False)
    bundle.test(_batches(1), verbose=False)
    assert os.path.isfile(bundle.log_filename)
    with open(bundle.log_filename, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
    # Poutyne's AtomicCSVLogger columns, the learning rate included.
    assert header == ["epoch", "time", "lr", "loss", "val_loss"]
    assert os.path.isfile(bundle.model_checkpoint_filename)
    assert os.path.isfile(bundle.best_checkpoint_filename.format(epoch=1))
    assert os.path.isfile(bundle.test_log_filename.format(name="test"))


def test_set_paths_follows_a_new_directory(tmp_path):
    """After changing directory, set_paths points the attributes at the new one."""
    bundle = ModelBundle.from_network(str(tmp_path / "a"), nn.Linear(3, 1), loss_function="mse")
    bundle.directory = str(tmp_path / "b")
    bundle.set_paths()
    assert bundle.log_filename == os.path.join(str(tmp_path / "b"), "log.tsv")


def test_train_defaults_to_poutynes_1000_epochs(tmp_path):
    """train without epochs trains toward epoch 1000 (Poutyne's default): the callbacks see
    params['epochs'] == 1000; a stop request ends it after epoch 2."""
    from epochal import Callback, StopTraining

    class Probe(Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_train_begin(self, logs):
            self.epochs.append(self.params["epochs"])

        def on_epoch_end(self, epoch_number, logs):
            return StopTraining() if epoch_number == 2 else None

    torch.manual_seed(0)
    bundle = ModelBundle.from_network(str(tmp_path), nn.Linear(3, 1), loss_function="mse")
    probe = Probe()
    history = bundle.train(_batches(1), _batches(1), callbacks=[probe], verbose=False)
    assert probe.epochs == [1000] and len(history) == 2
