"""Poutyne's layers: Lambda."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from epochal.layers import Lambda


class TestLambda:
    def test_in_a_sequential(self):
        """Lambda applies its function inside nn.Sequential, and gradients flow through it."""
        net = nn.Sequential(nn.Linear(4, 6), Lambda(lambda x: x.view(-1, 2, 3)), Lambda(torch.relu))
        out = net(torch.randn(5, 4))
        assert out.shape == (5, 2, 3)
        out.sum().backward()
        assert net[0].weight.grad is not None

    def test_several_inputs(self):
        """Positional inputs are all passed to the function."""
        assert Lambda(torch.add)(torch.ones(1), torch.ones(1)).item() == 2.0

    def test_holds_no_parameters(self):
        """A Lambda has no parameters and an empty state dict."""
        layer = Lambda(torch.relu)
        assert list(layer.parameters()) == [] and layer.state_dict() == {}

    def test_not_callable(self):
        """A non-callable fails at construction."""
        with pytest.raises(TypeError, match="callable"):
            Lambda(3)  # type: ignore[arg-type]
