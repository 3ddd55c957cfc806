"""The core's epoch loop helpers."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from epochal.core.loop import _PassAccumulator


class TestPassAccumulator:
    @given(
        values=st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=40),
        sizes=st.lists(st.integers(1, 300), min_size=40, max_size=40),
        chunk=st.integers(1, 7),
    )
    def test_property_law_means_equal_python_float_accumulation(self, values, sizes, chunk):
        """The pass mean equals a hand-written loop's ``sum(float(v) * n) / sum(n)`` exactly,
        whatever the chunking of the kept values."""
        accumulator = _PassAccumulator(2, chunk=chunk)
        total = other = 0.0
        count = 0
        for value, size in zip(values, sizes):
            tensor = torch.tensor(value, dtype=torch.float32)
            accumulator.add(tensor, (tensor * 2,), size)
            total += float(tensor) * size
            other += float(tensor * 2) * size
            count += size
        assert accumulator.means() == [total / count, other / count]
        assert accumulator.samples == count
