"""Resolving Poutyne-style optimizer specs: an instance, a name, or a dict."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch

from epochal.exceptions import ConfigurationError

__all__ = ["OPTIMIZER_NAMES", "check_optimizer_parameters", "get_optimizer", "resolve_optimizer"]

_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adadelta": torch.optim.Adadelta,
    "adafactor": getattr(torch.optim, "Adafactor", torch.optim.Adam),
    "adagrad": torch.optim.Adagrad,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adamax": torch.optim.Adamax,
    "asgd": torch.optim.ASGD,
    "lbfgs": torch.optim.LBFGS,
    "nadam": torch.optim.NAdam,
    "radam": torch.optim.RAdam,
    "rmsprop": torch.optim.RMSprop,
    "rprop": torch.optim.Rprop,
    "sgd": torch.optim.SGD,
    "sparseadam": torch.optim.SparseAdam,
}
if not hasattr(torch.optim, "Adafactor"):
    del _OPTIMIZERS["adafactor"]

#: Names accepted for ``optimizer``; each maps to the ``torch.optim`` class of that name.
OPTIMIZER_NAMES = tuple(sorted(_OPTIMIZERS))

#: Poutyne's convention: SGD needs a learning rate, and gets 0.01 when named without one.
_DEFAULT_KWARGS: dict[str, dict[str, Any]] = {"sgd": {"lr": 0.01}}


def resolve_optimizer(
    spec: torch.optim.Optimizer | str | Mapping[str, Any] | None, network: torch.nn.Module
) -> torch.optim.Optimizer | None:
    """An optimizer from Poutyne's forms.

    Args:
        spec: An optimizer instance (returned as is), a name (``'sgd'``, ``'adam'``, ... with
            PyTorch's defaults, except SGD's ``lr=0.01``), a dict ``{'optim': 'adam', 'lr':
            1e-3, ...}``, or None (evaluation and prediction only).
        network: The network whose trainable parameters the optimizer gets.

    Raises:
        ConfigurationError: Unknown name (the message lists the valid names) or a dict
            without ``'optim'``.
        TypeError: Any other type.
    """
    if spec is None or isinstance(spec, torch.optim.Optimizer):
        return spec
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif isinstance(spec, Mapping):
        if "optim" not in spec:
            raise ConfigurationError(
                f"An optimizer dict needs the key 'optim' naming the optimizer, e.g. "
                f"{{'optim': 'adam', 'lr': 1e-3}}; got keys {sorted(spec)}."
            )
        kwargs = {k: v for k, v in spec.items() if k != "optim"}
        name = spec["optim"]
        if not isinstance(name, str):
            raise TypeError(f"optimizer dict's 'optim' must be a name (str); got {name!r}")
    else:
        raise TypeError(
            "optimizer must be a torch.optim.Optimizer, a name such as 'sgd' or 'adam', a dict "
            f"such as {{'optim': 'adam', 'lr': 1e-3}}, or None; got {type(spec).__name__}."
        )
    key = name.lower().replace("_", "")
    if key not in _OPTIMIZERS:
        raise ConfigurationError(
            f"Unknown optimizer name {name!r}. Valid names: {', '.join(OPTIMIZER_NAMES)}."
        )
    merged = {**_DEFAULT_KWARGS.get(key, {}), **kwargs}
    params = [p for p in network.parameters() if p.requires_grad]
    cls = _OPTIMIZERS[key]
    accepted = [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "params")]
    unknown = sorted(k for k in merged if k not in accepted)
    if unknown:
        raise ConfigurationError(
            f"{cls.__name__} takes no argument(s) {unknown}; its arguments are: "
            f"{', '.join(accepted)}."
        )
    return cls(params, **merged)


def check_optimizer_parameters(optimizer: torch.optim.Optimizer, network: torch.nn.Module) -> None:
    """Check that every parameter the optimizer updates belongs to the network.

    Raises:
        ConfigurationError: Some optimizer parameters are not the network's; the message says
            how many and their shapes.
    """
    own = {id(p) for p in network.parameters()}
    foreign = [
        p for group in optimizer.param_groups for p in group["params"] if id(p) not in own
    ]
    if foreign:
        shapes = ", ".join(str(tuple(p.shape)) for p in foreign[:5])
        raise ConfigurationError(
            f"{len(foreign)} parameter(s) of the optimizer do not belong to the network "
            f"(shapes {shapes}{', ...' if len(foreign) > 5 else ''}). Build the optimizer from "
            "this network's parameters: e.g. torch.optim.SGD(network.parameters(), lr=0.1)."
        )


def get_optimizer(
    optimizer: torch.optim.Optimizer | str | Mapping[str, Any] | None, module: torch.nn.Module
) -> torch.optim.Optimizer | None:
    """Poutyne's ``get_optimizer``: an optimizer over ``module``'s trainable parameters.

    The same rules as :func:`resolve_optimizer`: a name (``'adam'``) or a dict
    (``{'optim': 'sgd', 'lr': 0.1, ...}``) builds that ``torch.optim`` class with PyTorch's
    defaults (SGD gets ``lr=0.01`` when none is given, as in Poutyne); an optimizer instance
    or None is returned as is.

    Args:
        optimizer: A name, a dict with ``'optim'``, an optimizer, or None.
        module: The network whose parameters with ``requires_grad`` the optimizer gets.

    Returns:
        The optimizer (or None).

    Raises:
        ConfigurationError: Unknown name (the valid names are listed), a dict without
            ``'optim'``, or an argument the optimizer class does not take.
        TypeError: ``optimizer`` is of another type.
    """
    return resolve_optimizer(optimizer, module)
