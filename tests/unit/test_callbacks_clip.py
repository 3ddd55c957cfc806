"""Gradient clipping callbacks: once per optimizer step, on the final gradients."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from epochal import Model
from epochal.callbacks.clip import ClipNorm, ClipValue
from epochal.callbacks.utility import LambdaCallback
from epochal.exceptions import ConfigurationError


def _data(n: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g), torch.randn(n, 2, generator=g) * 10


def _grad_norm(parameters) -> float:
    return float(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in parameters])))


class TestClipNorm:
    def test_clips_the_gradient_norm_before_the_step(self):
        """After ClipNorm the gradients the optimizer sees have norm <= max_norm."""
        torch.manual_seed(0)
        network = nn.Linear(3, 2)
        model = Model(network, "sgd", "mse")
        norms: list[float] = []
        clip = ClipNorm(network.parameters(), 0.05)
        probe = LambdaCallback(on_backward_end=lambda b: norms.append(_grad_norm(network.parameters())))
        x, y = _data()
        model.fit(x, y, batch_size=4, epochs=2, callbacks=[clip, probe], verbose=False)
        assert len(norms) == 8
        assert max(norms) <= 0.05 * (1 + 1e-5)
        assert float(clip.last_total_norm) > 0.05  # it did clip

    def test_accumulated_clipping_equals_big_batch_clipping(self):
        """batches_per_step=2 on two half-batches with ClipNorm ends with the same weights as
        one step per full batch with the same ClipNorm: the group's gradient is clipped."""
        x, y = _data(16)
        torch.manual_seed(0)
        base = nn.Linear(3, 2)
        results = []
        for batch_size, per_step in ((8, 1), (4, 2)):
            network = copy.deepcopy(base)
            model = Model(network, torch.optim.SGD(network.parameters(), lr=0.1), "mse")
            loader = [(x[i : i + batch_size], y[i : i + batch_size])
                      for i in range(0, 16, batch_size)]
            clip = ClipNorm(network.parameters(), 0.01)
            model.fit_generator(loader, epochs=3, batches_per_step=per_step,
                                callbacks=[clip], verbose=False)
            assert float(clip.last_total_norm) > 0.01
            results.append({k: v.clone() for k, v in network.state_dict().items()})
        for key in results[0]:
            torch.testing.assert_close(results[0][key], results[1][key], rtol=1e-5, atol=1e-6)

    def test_generator_parameters_are_kept(self):
        """network.parameters() (a generator) keeps working after the first step."""
        network = nn.Linear(3, 2)
        clip = ClipNorm(network.parameters(), 1.0)
        assert len(clip.parameters) == 2

    def test_non_positive_max_norm_is_refused(self):
        """max_norm <= 0 is a ConfigurationError."""
        with pytest.raises(ConfigurationError, match="max_norm"):
            ClipNorm(nn.Linear(1, 1).parameters(), 0)


class TestClipValue:
    def test_clamps_every_gradient_element(self):
        """After ClipValue every gradient element lies in [-clip_value, clip_value]."""
        torch.manual_seed(0)
        network = nn.Linear(3, 2)
        model = Model(network, "sgd", "mse")
        extremes: list[float] = []
        probe = LambdaCallback(on_backward_end=lambda b: extremes.append(
            max(float(p.grad.abs().max()) for p in network.parameters())))
        x, y = _data()
        model.fit(x, y, batch_size=8, epochs=1, verbose=False,
                  callbacks=[ClipValue(network.parameters(), 0.02), probe])
        assert extremes and max(extremes) == pytest.approx(0.02)

    def test_non_positive_clip_value_is_refused(self):
        """clip_value <= 0 is a ConfigurationError."""
        with pytest.raises(ConfigurationError, match="clip_value"):
            ClipValue(nn.Linear(1, 1).parameters(), -1.0)
