"""Poutyne's utilities: nested conversions, TensorDataset, batch sizes, random states."""

from __future__ import annotations

import collections
import io
import random
import warnings

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

from epochal import utils
from epochal.exceptions import CheckpointError, ShapeMismatchError
from epochal.utils import (
    TensorDataset,
    get_batch_size,
    is_in_jupyter_notebook,
    load_random_states,
    numpy_to_torch,
    save_random_states,
    set_deterministic_debug_mode,
    torch_apply,
    torch_to,
    torch_to_numpy,
)

Pair = collections.namedtuple("Pair", ["a", "b"])


class TestConversions:
    def test_torch_to_numpy_keeps_the_structure(self):
        """Tensors become arrays in lists, tuples and dicts; other values stay by reference."""
        marker = object()
        out = torch_to_numpy({"first": torch.tensor([1, 2]), "second": [torch.tensor([3.0])],
                              "third": (34, marker)})
        assert isinstance(out["first"], np.ndarray) and out["first"].tolist() == [1, 2]
        assert isinstance(out["second"], list) and out["second"][0].tolist() == [3.0]
        assert out["third"] == (34, marker) and out["third"][1] is marker

    def test_torch_to_numpy_copy(self):
        """copy=False shares the CPU tensor's memory; copy=True does not."""
        t = torch.zeros(3)
        shared, copied = torch_to_numpy(t), torch_to_numpy(t, copy=True)
        t[0] = 5.0
        assert shared[0] == 5.0 and copied[0] == 0.0

    def test_torch_to_numpy_detaches(self):
        """A tensor requiring grad converts without error."""
        out = torch_to_numpy([torch.ones(2, requires_grad=True)])
        assert out[0].tolist() == [1.0, 1.0]

    def test_numpy_to_torch(self):
        """Arrays become tensors sharing their memory; other values stay."""
        a = np.arange(3)
        out = numpy_to_torch({"x": a, "n": 3, "l": [a]})
        assert torch.is_tensor(out["x"]) and out["n"] == 3 and torch.is_tensor(out["l"][0])
        a[0] = 7
        assert out["x"][0] == 7

    def test_torch_apply_and_named_tuples(self):
        """torch_apply maps tensors inside named tuples, keeping their type."""
        out = torch_apply(Pair(torch.ones(1), [torch.zeros(1)]), lambda t: t + 1)
        assert isinstance(out, Pair) and out.a.item() == 2.0 and out.b[0].item() == 1.0

    def test_torch_to_casts(self):
        """torch_to passes its arguments to Tensor.to on every tensor."""
        out = torch_to((torch.ones(2), {"k": torch.zeros(1)}), torch.float64)
        assert out[0].dtype == torch.float64 and out[1]["k"].dtype == torch.float64

    def test_packed_sequence_keeps_batch_sizes(self):
        """A PackedSequence's data is converted, its batch_sizes left as they are."""
        packed = pack_sequence([torch.ones(3), torch.ones(2)])
        out = torch_to(packed, torch.float64)
        assert out.data.dtype == torch.float64
        assert out.batch_sizes.dtype == torch.int64
        assert torch.equal(out.batch_sizes, packed.batch_sizes)


class TestTensorDataset:
    def test_indexing_keeps_nesting(self):
        """An example keeps the nesting of the arguments."""
        x1, x2, y = torch.arange(4), torch.arange(4) * 10, np.arange(4) * 100
        ds = TensorDataset((x1, x2), y)
        assert len(ds) == 4
        (a, b), c = ds[2]
        assert (a.item(), b.item(), int(c)) == (2, 20, 200)

    def test_mismatched_lengths(self):
        """Different first dimensions fail at construction with the lengths."""
        with pytest.raises(ShapeMismatchError, match=r"\[3, 4\]"):
            TensorDataset(torch.zeros(3), torch.zeros(4))

    def test_works_with_a_data_loader(self):
        """A DataLoader over it yields nested batches."""
        ds = TensorDataset((torch.arange(6), torch.arange(6)), torch.arange(6))
        (x1, _x2), y = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
        assert x1.shape == (4,) and y.tolist() == [0, 1, 2, 3]


class TestGetBatchSize:
    def test_rules_in_order(self):
        """Each of the four rules, and the first value that succeeds wins."""
        t5, t3 = torch.zeros(5), np.zeros(3)
        assert get_batch_size(t5, t3) == 5
        assert get_batch_size([t3, t5], t5) == 5  # step 1 on the second value first
        assert get_batch_size([t3, t5], [t5]) == 3
        assert get_batch_size({"batch_size": 7, "x": t5}) == 7
        assert get_batch_size({"x": t3, "y": t5}) == 3
        assert get_batch_size({"x": t3, "batch_size": 2.0}) == 3  # not integral: step 4

    def test_equals_poutynes_rule(self):
        """On a sample of batch shapes the result equals Poutyne's get_batch_size."""
        poutyne = pytest.importorskip("poutyne")
        t5, t3 = torch.zeros(5), np.zeros(3)
        cases = [(t5, t3), ([t3, t5], t5), ([t3], [t5]), ({"batch_size": 7, "x": t5},),
                 ({"x": t3},), ({"x": t3, "batch_size": 2.0},), ((t5,), {"batch_size": 4})]
        for case in cases:
            assert get_batch_size(*case) == poutyne.get_batch_size(*case)

    def test_warns_and_returns_one(self):
        """A batch with no tensor warns (naming the rule) and counts as one example."""
        with pytest.warns(UserWarning, match="batch size"):
            assert get_batch_size("text", [1, 2]) == 1

    def test_warning_can_be_silenced(self, monkeypatch):
        """warning_settings['batch_size'] = 'ignore' silences the warning."""
        monkeypatch.setitem(utils.warning_settings, "batch_size", "ignore")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert get_batch_size(3) == 1


class TestRandomStates:
    def _draw(self):
        return (random.random(), float(np.random.rand()), float(torch.rand(1)))

    def test_round_trip_through_a_file_object(self):
        """Loading the saved states replays the same draws from every generator."""
        buffer = io.BytesIO()
        save_random_states(buffer)
        first = self._draw()
        buffer.seek(0)
        load_random_states(buffer)
        assert self._draw() == first

    def test_round_trip_through_a_path(self, tmp_path):
        """A path (str or PathLike) works too."""
        path = tmp_path / "rng.pt"
        save_random_states(path)
        first = self._draw()
        load_random_states(str(path))
        assert self._draw() == first

    def test_other_file_is_refused(self):
        """A torch file that is not a random-state file fails with CheckpointError."""
        buffer = io.BytesIO()
        torch.save({"weights": torch.zeros(1)}, buffer)
        buffer.seek(0)
        with pytest.raises(CheckpointError, match="random-state"):
            load_random_states(buffer)


class TestMisc:
    def test_not_in_jupyter(self):
        """Under pytest the code is not in a notebook."""
        assert is_in_jupyter_notebook() is False

    def test_deterministic_debug_mode_is_restored(self):
        """The mode holds inside the block and is restored after, even on an error."""
        before = torch.get_deterministic_debug_mode()
        with pytest.raises(RuntimeError, match="boom"), set_deterministic_debug_mode("warn"):
            assert torch.get_deterministic_debug_mode() == 1
            raise RuntimeError("boom")
        assert torch.get_deterministic_debug_mode() == before
        with set_deterministic_debug_mode(None):
            assert torch.get_deterministic_debug_mode() == before

    def test_set_seeds_is_epochals(self):
        """epochal.utils.set_seeds is epochal.set_seeds."""
        import epochal

        assert utils.set_seeds is epochal.set_seeds
