"""The shared monitoring helpers: the library's one "never logged" message and the
finiteness check."""

from __future__ import annotations

from typing import Any

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


def test_non_finite_tensors_is_exact_where_a_sum_is_not():
    """Finite values whose sum overflows are finite; +inf and -inf (whose sum is NaN) and a
    NaN among large values are not."""
    huge = torch.full((4,), 3e38)  # float32: the sum overflows to inf
    tensors = {"huge": huge, "both": torch.tensor([float("inf"), float("-inf")]),
               "nan": torch.tensor([3e38, float("nan")]), "empty": torch.zeros(0)}
    assert non_finite_tensors(tensors) == ["both", "nan"]


def test_non_finite_tensors_allocates_no_tensor_sized_temporary():
    """Checking a 4 MiB layer allocates a few bytes, where ``torch.isfinite(t).all()``
    allocates a 1 MiB flag tensor (PyTorch's profiler counts the allocations)."""
    from torch.profiler import ProfilerActivity, profile

    layer = torch.randn(1024, 1024)

    def biggest_allocation(check: Any) -> int:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            check()
        return max((event.cpu_memory_usage for event in prof.events()), default=0)

    assert biggest_allocation(lambda: torch.isfinite(layer).all()) >= layer.numel()
    assert biggest_allocation(lambda: non_finite_tensors({"w": layer})) < 1024
