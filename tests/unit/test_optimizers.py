"""Poutyne's optimizer specs: get_optimizer / resolve_optimizer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from epochal import get_optimizer
from epochal.exceptions import ConfigurationError


def _network() -> nn.Module:
    network = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    network[0].bias.requires_grad_(False)
    return network


def test_name_builds_the_class_with_poutynes_sgd_default():
    """'sgd' builds SGD with lr 0.01 over the trainable parameters only."""
    network = _network()
    optimizer = get_optimizer("SGD", network)
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["lr"] == 0.01
    assert len(optimizer.param_groups[0]["params"]) == 3


def test_dict_passes_its_arguments():
    """{'optim': 'adam', 'lr': ...} builds Adam with that rate."""
    optimizer = get_optimizer({"optim": "adam", "lr": 0.003}, _network())
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["lr"] == 0.003


def test_instance_and_none_are_returned_as_is():
    """An optimizer instance or None comes back unchanged (Poutyne's behaviour)."""
    network = _network()
    optimizer = torch.optim.SGD(network.parameters(), lr=0.5)
    assert get_optimizer(optimizer, network) is optimizer
    assert get_optimizer(None, network) is None


def test_unknown_name_lists_the_valid_ones():
    """An unknown name is a ConfigurationError listing the accepted names."""
    with pytest.raises(ConfigurationError, match="adamw"):
        get_optimizer("adamm", _network())
