"""Where a :class:`~epochal.Model` runs: ``device`` as given, ``to``/``cuda``/``cpu``, and
Poutyne's multi-GPU mode (several CUDA devices: each forward pass through
``torch.nn.parallel.data_parallel``).

``ModelDevice`` is a part of :class:`~epochal.Model` (a mixin).
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch
from torch import nn

from epochal._arrays import DeviceArg, devices_of, single_device
from epochal.core.precision import MixedPrecision, PrecisionPlan
from epochal.exceptions import ConfigurationError
from epochal.precision import bind_precision

__all__ = ["ModelDevice"]

_M = TypeVar("_M", bound="ModelDevice")


class ModelDevice:
    """``device``, ``to``, ``cuda``, ``cpu`` of :class:`~epochal.Model`, and the module its
    passes call."""

    # Set by Model.__init__.
    network: nn.Module
    forward_network: nn.Module
    optimizer: torch.optim.Optimizer | None
    mixed_precision: MixedPrecision | None
    _precision_plan: PrecisionPlan
    _device_given: DeviceArg | None
    _device: torch.device | None
    _other_devices: tuple[torch.device, ...]
    _parallel_forward: tuple[Any, nn.Module] | None


    @property
    def device(self) -> DeviceArg | None:
        """The device as last given to the constructor or :meth:`to`, as in Poutyne: ``'cpu'``
        stays the string ``'cpu'``; a list gives its first element (where the network and
        the batches are); a ``torch.device`` after :meth:`cuda`/:meth:`cpu`; None when none
        was given. Assigning it changes where batches go, not where the network is (as in
        Poutyne)."""
        return self._device_given

    @device.setter
    def device(self, value: DeviceArg | list[DeviceArg] | None) -> None:
        if value is None:
            self._device_given, self._device = None, None
        else:
            self._device_given, self._device = single_device(value)

    def to(self: _M, device: DeviceArg | list[DeviceArg]) -> _M:
        """Move the network, the optimizer's state and future batches to ``device``.

        :attr:`device` then holds ``device`` as given (``'cpu'`` stays a string), as in
        Poutyne. As in Poutyne, a list of devices (or ``'all'``: every CUDA device) runs each
        batch's forward pass with ``torch.nn.parallel.data_parallel`` over them: the network
        and the batches live on the first (:attr:`device` is then that one), and each batch
        is split along dimension 0 across all of them. Under torchrun, ``strategy='ddp'``
        with one device per process scales better (see the Scaling out page).

        Returns:
            ``self``.

        Raises:
            ConfigurationError: ``device`` names no device, ``'all'`` on a machine without a
                CUDA device, a device torch does not know, or several devices while the
                model trains with ``strategy='ddp'``; nothing has moved.
        """
        given, target, others = devices_of(device)
        if others and getattr(self, "_parallel", None) is not None:
            raise ConfigurationError(
                f"device={device!r} names several devices (DataParallel) while this model "
                "trains with strategy='ddp'; pass one device per process."
            )
        self.mixed_precision = bind_precision(  # checked before anything moves
            self._precision_plan, self.network, target, self.mixed_precision
        )
        self._device_given, self._device = given, target
        self._other_devices = others
        self.network.to(target)
        if self.optimizer is not None and self.optimizer.state:
            # load_state_dict casts each state tensor to its parameter's device and dtype
            # (keeping step counters where PyTorch wants them).
            self.optimizer.load_state_dict(self.optimizer.state_dict())
        return self

    def cuda(self: _M, device: int | str | torch.device | None = None) -> _M:
        """Move to a CUDA device (the current one when None). Returns ``self``; :attr:`device`
        is then a ``torch.device``, as in Poutyne."""
        if device is None:
            return self.to(torch.device("cuda", torch.cuda.current_device()))
        if isinstance(device, int):
            return self.to(torch.device("cuda", device))
        return self.to(single_device(device)[1])

    def _pass_network(self) -> nn.Module:
        """The module a pass calls: :attr:`forward_network`, or, with several devices, a
        module that runs it through ``torch.nn.parallel.data_parallel`` (Poutyne's
        multi-GPU mode), built once per set of devices."""
        if not self._other_devices:
            return self.forward_network
        assert self._device is not None  # the other devices come with a main one
        devices = (self._device, *self._other_devices)
        cached = self._parallel_forward
        if cached is None or cached[0] != (id(self.forward_network), devices):
            cached = ((id(self.forward_network), devices),
                      _DataParallelForward(self.forward_network, list(devices)))
            self._parallel_forward = cached
        return cached[1]

    def cpu(self: _M) -> _M:
        """Move to the CPU. Returns ``self``; :attr:`device` is then ``torch.device('cpu')``,
        as in Poutyne."""
        return self.to(torch.device("cpu"))


class _DataParallelForward(nn.Module):
    """Calls ``module`` through ``torch.nn.parallel.data_parallel`` over ``device_ids`` (the
    first one holds the module and gathers the outputs), as Poutyne's ``Model`` does when
    given several devices. Without CUDA, ``data_parallel`` calls ``module`` directly."""

    def __init__(self, module: nn.Module, device_ids: list[torch.device]) -> None:
        super().__init__()
        self.module = module
        self.device_ids = device_ids

    def forward(self, *inputs: Any) -> Any:
        return torch.nn.parallel.data_parallel(self.module, inputs, self.device_ids)
