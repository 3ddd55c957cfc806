"""In-memory array helpers (epochal._arrays)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

import epochal._arrays
from epochal._arrays import ArrayDataset, check_positive, collect, concat, ordered_loader
from epochal.exceptions import ConfigurationError


class TestArrayDataset:
    def test_nested_parts_index_together(self):
        """Example i of a tuple of inputs and a dict target keeps the nesting."""
        data = ArrayDataset((np.arange(6).reshape(3, 2), torch.arange(3)), {"t": torch.ones(3)})
        x, y = data[2]
        assert torch.equal(x[0], torch.tensor([4, 5])) and x[1] == 2 and y["t"] == 1
        assert len(data) == 3

    def test_float_dtype_casts_floats_only(self):
        """float_dtype casts floating parts once and leaves integer targets alone."""
        data = ArrayDataset(np.zeros((4, 2)), np.arange(4), float_dtype=torch.float32)
        x, y = data[0]
        assert x.dtype == torch.float32 and y.dtype == torch.int64

    def test_different_lengths_are_an_error(self):
        """Parts with different numbers of examples raise, naming the lengths."""
        with pytest.raises(ValueError, match=r"\[3, 4\]"):
            ArrayDataset(torch.zeros(3), torch.zeros(4))

    def test_python_list_of_numbers_says_what_to_pass(self):
        """A list of numbers is a TypeError naming the part and suggesting np.asarray."""
        with pytest.raises(TypeError, match=r"y is a Python list of numbers.*np\.asarray\(y"):
            ArrayDataset(torch.zeros(2, 1), [0, 1])


class TestCollect:
    def test_concat_keeps_structure_and_stacks_scalars(self):
        """Tuples/dicts of per-batch tensors concatenate leaf by leaf; 0-dim outputs stack."""
        out = concat([(torch.zeros(2), {"a": torch.tensor(1.0)}),
                      (torch.ones(1), {"a": torch.tensor(2.0)})])
        assert out[0].tolist() == [0.0, 0.0, 1.0] and out[1]["a"].tolist() == [1.0, 2.0]
        assert isinstance(out[0], np.ndarray)

    def test_collect_without_numpy_keeps_tensors(self):
        """convert_to_numpy=False returns tensors, concatenated or per batch."""
        parts = [torch.zeros(2), torch.ones(1)]
        assert isinstance(collect(parts, True, convert_to_numpy=False), torch.Tensor)
        assert collect(parts, False, convert_to_numpy=False) is parts
        assert all(isinstance(p, np.ndarray) for p in collect(parts, False))


class TestLoaders:
    def test_ordered_loader_never_shuffles(self):
        """The user's shuffle=True is dropped; their other keywords win."""
        loader = ordered_loader(torch.arange(10), 4, 0, None, {"shuffle": True, "drop_last": True})
        assert [b.tolist() for b in loader] == [[0, 1, 2, 3], [4, 5, 6, 7]]

    def test_check_positive_names_the_argument(self):
        """A non-positive or non-int value is a ConfigurationError naming the argument."""
        check_positive("steps", None)
        for bad in (0, -1, 1.5, True):
            with pytest.raises(ConfigurationError, match="batch_size must be a positive int"):
                check_positive("batch_size", bad, allow_none=False)

    def test_docstring_examples_run(self):
        """The module's examples give the results they show."""
        assert doctest.testmod(epochal._arrays).failed == 0
