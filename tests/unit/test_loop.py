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


def test_a_training_pass_reuses_each_parameters_gradient_accumulator() -> None:
    """Autograd keeps a parameter's ``AccumulateGrad`` node only while something refers to
    it. The pass holds them, so every step's backward goes through the same node, as in a
    hand-written loop: a hook put on the weight's node before the first step fires at each of
    the three steps (once, then never again, if each step built a new node)."""
    from torch import nn

    from epochal.core.loop import EpochSetup, run_epoch
    from epochal.core.records import PassPhase
    from epochal.testing import FakeClock

    torch.manual_seed(0)
    network = nn.Linear(4, 3)
    setup = EpochSetup(network=network, loss_function=nn.CrossEntropyLoss(),
                       optimizer=torch.optim.SGD(network.parameters(), lr=0.1))
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
    fired: list[int] = []

    class Hooks:
        announces_steps = True
        announces_backward = False

        def step_begins(self, step: int) -> None:
            if step == 1:  # the node is dropped here unless the pass holds it
                weight = network.weight
                weight.view_as(weight).grad_fn.next_functions[0][0].register_hook(
                    lambda grad_inputs, grad_outputs: fired.append(1))

        def stop_requested(self) -> bool:
            return False

    list(run_epoch(setup, batches, phase=PassPhase.TRAIN, epoch=1, clock=FakeClock(),
                   hooks=Hooks(), emit_steps=False))
    assert len(fired) == 3
