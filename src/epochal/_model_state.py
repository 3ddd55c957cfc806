"""``Model``'s weights and optimizer-state input/output (a private mixin).

:class:`ModelState` holds Poutyne's ``get_weights`` ... ``load_optimizer_state``;
:class:`epochal.Model` inherits them, so they are documented on ``Model``. Files go through
:mod:`epochal._io` (any fsspec URL, crash-safe writes, ``torch.load(weights_only=True)``);
weights saved from a compiled network load into the eager one, and with ``'16-mixed'`` the
loss scaler's state rides along in the optimizer file (:mod:`epochal.precision`).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO, cast

import torch
from torch import nn

from epochal.core.precision import MixedPrecision
from epochal.exceptions import CheckpointError
from epochal.precision import load_optimizer_file, optimizer_file_state, strip_compile_prefix

__all__ = ["ModelState", "PathOrFile"]

PathOrFile = str | BinaryIO


def _some(keys: Sequence[str], limit: int = 8) -> str:
    """Up to ``limit`` keys, comma-separated, with a count of the rest."""
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


class ModelState:
    """The weights and optimizer-state methods of :class:`~epochal.Model`."""

    # Set by Model.__init__ (and Model.to).
    network: nn.Module
    optimizer: torch.optim.Optimizer | None
    mixed_precision: MixedPrecision | None

    # ------------------------------------------------------------------ weights

    def get_weights(self) -> OrderedDict[str, torch.Tensor]:
        """The network's ``state_dict``: a ``collections.OrderedDict`` of tensors shared with
        the network, not copies (Poutyne's)."""
        # Module.state_dict builds an OrderedDict; torch annotates it as a dict.
        return cast("OrderedDict[str, torch.Tensor]", self.network.state_dict())

    def get_weight_copies(self) -> OrderedDict[str, torch.Tensor]:
        """Copies of the network's weights on the CPU, safe to keep while training goes on: a
        ``collections.OrderedDict`` in the network's key order (the ``state_dict``, with its
        ``_metadata``, its tensors replaced by copies), as Poutyne's."""
        weights = self.get_weights()
        for key, value in weights.items():
            weights[key] = value.detach().cpu().clone()
        return weights

    def set_weights(self, weights: Mapping[str, torch.Tensor], strict: bool = True) -> Any:
        """Load ``weights`` (a ``state_dict``) into the network.

        With ``strict=False``, the keys that did not match are reported in a
        ``UserWarning`` naming the missing and the unexpected keys.

        Returns:
            ``torch.nn.modules.module._IncompatibleKeys`` with ``missing_keys`` and
            ``unexpected_keys`` (both empty when ``strict``).

        Raises:
            RuntimeError: ``strict`` and the keys or shapes differ (PyTorch's message).
            CheckpointError: ``strict=False`` and no key of ``weights`` matches a key of the
                network (the weights belong to another network); nothing is loaded. The
                message names both key sets.
        """
        if not strict:
            own = set(self.network.state_dict())
            given = list(weights)
            if given and own and not own.intersection(given):
                raise CheckpointError(
                    "set_weights(strict=False): none of the weights' keys matches the "
                    f"network's; nothing was loaded. Weights' keys: {_some(given)}. Network's "
                    f"keys: {_some(sorted(own))}. Load weights saved from this network, or "
                    "rename the keys (e.g. strip a 'module.' prefix) first."
                )
        if any("_orig_mod" in key for key in weights):  # saved from a compiled network
            weights = strip_compile_prefix(weights)
        result = self.network.load_state_dict(weights, strict=strict)
        if not strict and (result.missing_keys or result.unexpected_keys):
            warnings.warn(
                f"Weights loaded with strict=False: missing keys (kept as they were): "
                f"{_some(result.missing_keys) or 'none'}; unexpected keys (ignored): "
                f"{_some(result.unexpected_keys) or 'none'}.",
                stacklevel=2,
            )
        return result

    def save_weights(self, f: PathOrFile, *, storage_options: Mapping[str, Any] | None = None) -> None:
        """Save the network's weights with ``torch.save`` to a path, any fsspec URL
        (crash-safe: the old file survives a failed write) or a binary file object."""
        from epochal._io import save_torch

        save_torch(self.network.state_dict(), f, storage_options=storage_options)

    def load_weights(
        self, f: PathOrFile, strict: bool = True, *,
        storage_options: Mapping[str, Any] | None = None,
    ) -> Any:
        """Load weights saved by :meth:`save_weights` (``torch.load(weights_only=True)``,
        mapped to the CPU first, then copied into the network on its device).

        Returns:
            ``missing_keys`` / ``unexpected_keys``, as :meth:`set_weights`.

        Raises:
            FileNotFoundError: No file at ``f``; the message names it.
            CheckpointError: The file is not a weights checkpoint or holds code to run.
        """
        from epochal._io import load_torch

        try:
            weights = load_torch(f, storage_options=storage_options)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"load_weights: no weights file at {f!r}. Pass the path or URL of a file "
                "written by Model.save_weights (or torch.save of a state_dict), e.g. a "
                "ModelCheckpoint's filename with its {epoch} filled in."
            ) from exc
        return self.set_weights(weights, strict=strict)

    def save_optimizer_state(
        self, f: PathOrFile, *, storage_options: Mapping[str, Any] | None = None
    ) -> None:
        """Save the optimizer's ``state_dict`` (see :meth:`save_weights` for ``f``); with
        ``precision='16-mixed'`` the loss scaler's state rides along under the extra key
        ``'epochal_precision'`` (``torch.optim.Optimizer.load_state_dict`` ignores it)."""
        from epochal._io import save_torch

        if self.optimizer is None:
            raise ValueError("This Model has no optimizer whose state could be saved.")
        save_torch(
            optimizer_file_state(self.optimizer, self.mixed_precision), f,
            storage_options=storage_options,
        )

    def load_optimizer_state(
        self, f: PathOrFile, *, storage_options: Mapping[str, Any] | None = None
    ) -> None:
        """Load an optimizer state saved by :meth:`save_optimizer_state`; its tensors move to
        the parameters' device, and a saved loss scaler state is restored (see
        :doc:`/precision`)."""
        from epochal._io import load_torch

        if self.optimizer is None:
            raise ValueError("This Model has no optimizer to load a state into.")
        load_optimizer_file(
            self.optimizer, self.mixed_precision, load_torch(f, storage_options=storage_options)
        )
