"""The shared monitoring helpers: the library's one "never logged" message and the
finiteness check."""

from __future__ import annotations

import torch

from epochal.callbacks._monitoring import never_logged_message, non_finite_tensors


def test_message_lists_keys_and_suggests_the_closest():
    """The message names the key, the logged keys and the closest key."""
    message = never_logged_message("EarlyStopping monitors", "val_los",
                                   ["epoch", "loss", "val_loss"])
    assert message.startswith("EarlyStopping monitors 'val_los', which this training will never")
    assert "Logged keys: epoch, loss, val_loss." in message
    assert message.endswith("Did you mean 'val_loss'?")


def test_no_validation_hint_and_custom_suggestion():
    """Without val_* keys the default hint says to pass validation data; a caller (the
    bundle) may give its own hint and suggestion format."""
    default = never_logged_message("X monitors", "val_acc", ["loss", "acc"])
    assert "pass validation data to fit" in default and "'acc'" in default
    custom = never_logged_message("ModelBundle monitors", "val_acc", ["loss", "acc"],
                                  no_validation_hint="Pass valid_loader to train().",
                                  suggestion="monitor_metric={key!r}")
    assert "Pass valid_loader to train()." in custom
    assert custom.endswith("Did you mean monitor_metric='acc'?")


def test_non_finite_tensors_names_the_bad_ones():
    """Only floating tensors holding NaN/inf are named; integer tensors are ignored."""
    tensors = {"a": torch.ones(2), "b": torch.tensor([1.0, float("nan")]),
               "c": torch.tensor([1, 2]), "d": torch.tensor([float("inf")])}
    assert non_finite_tensors(tensors) == ["b", "d"]
    assert non_finite_tensors({"a": torch.zeros(3)}) == []
