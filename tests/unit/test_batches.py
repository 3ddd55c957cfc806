"""Pure batch helpers (epochal.core.batches)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from epochal.core.batches import (
    cycle_batches,
    forward,
    infer_batch_size,
    split_batch,
    to_device,
    to_tensor,
)
from epochal.exceptions import EmptyLoaderError


class TestSplitAndSize:
    def test_split_pair_and_inputs_alone(self):
        """A 2-sequence splits into (x, y); without ground truth the batch is x."""
        assert split_batch((1, 2)) == (1, 2)
        assert split_batch([1, 2, 3], has_ground_truth=False) == ([1, 2, 3], None)

    def test_split_rejects_a_triple_with_a_message(self):
        """A 3-tuple is a ValueError naming its length and what to yield."""
        with pytest.raises(ValueError, match=r"tuple of length 3.*\(inputs, targets\)"):
            split_batch((1, 2, 3))

    def test_batch_size_from_first_array_found(self):
        """The size is the first dimension of the first tensor or array, depth-first."""
        assert infer_batch_size((torch.zeros(5, 2), torch.zeros(7)), None) == 5
        assert infer_batch_size({"a": np.zeros((3, 1))}, None) == 3
        assert infer_batch_size(torch.tensor(1.0), torch.zeros(4)) == 4

    def test_batch_size_unknown_warns_and_counts_one(self):
        """Without any array the batch counts as one example, with a warning."""
        with pytest.warns(UserWarning, match="could not infer the batch size"):
            assert infer_batch_size("text", None) == 1


class TestConversion:
    def test_numpy_nested_becomes_tensors(self):
        """NumPy arrays nested in tuples and dicts become tensors; other values stay."""
        out = to_tensor((np.ones(2), {"k": np.zeros(1)}, "s"))
        assert isinstance(out[0], torch.Tensor) and isinstance(out[1]["k"], torch.Tensor)
        assert out[2] == "s"

    def test_to_device_none_converts_without_moving(self):
        """device=None converts NumPy arrays and returns tensors as they are."""
        t = torch.ones(2)
        assert to_device(t, None) is t
        assert isinstance(to_device([np.ones(1)], None)[0], torch.Tensor)

    def test_forward_spreads_sequences(self):
        """A tuple x is spread as positional arguments; a tensor passed as one."""
        add = lambda a, b=0: a + b  # noqa: E731
        net = torch.nn.Module()
        net.forward = add  # type: ignore[method-assign]
        assert forward(net, (1, 2)) == 3 and forward(net, 5) == 5


class TestCycleBatches:
    def test_steps_cycle_a_reiterable_loader(self):
        """More steps than batches starts new passes."""
        assert list(cycle_batches([1, 2], 5, what="training")) == [1, 2, 1, 2, 1]

    def test_no_steps_is_one_pass(self):
        """steps=None yields one pass, also of a one-shot generator."""
        assert list(cycle_batches(iter([1, 2, 3]), None, what="training")) == [1, 2, 3]

    def test_empty_loader_is_an_error(self):
        """An empty loader raises EmptyLoaderError naming the loader and what to check."""
        with pytest.raises(EmptyLoaderError, match="validation loader yielded no batch"):
            list(cycle_batches([], None, what="validation"))

    def test_exhausted_one_shot_iterator_is_explained(self):
        """Cycling a one-shot iterator past its end says it can be read only once."""
        with pytest.raises(EmptyLoaderError, match="one-shot iterator"):
            list(cycle_batches(iter([1]), 3, what="training"))
