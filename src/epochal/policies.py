"""Learning-rate and momentum policies (Poutyne's ``policies`` module).

A training is cut into phases: a :class:`Phase` holds one space of values per optimizer
hyperparameter (``lr``, ``momentum``), one value per optimizer step. :class:`OptimizerPolicy`
chains phases and, before each optimizer step, writes the next values into every parameter
group of the model's optimizer. Spaces are any iterables of floats; :class:`linspace` and
:class:`cosinespace` are lazy ones, and :func:`one_cycle_phases` / :func:`sgdr_phases`
build the two classic policies.

Example::

    policy = OptimizerPolicy(one_cycle_phases(epochs * len(train_loader), lr=(0.01, 0.1)))
    model.fit_generator(train_loader, valid_loader, epochs=epochs, callbacks=[policy])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain, islice
from typing import Any

import torch

from epochal.callbacks.base import Callback
from epochal.exceptions import ConfigurationError
from epochal.precision import scaler_skipped_last_step

__all__ = ["OptimizerPolicy", "Phase", "cosinespace", "linspace", "one_cycle_phases", "sgdr_phases"]


def _check_steps(name: str, steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"{name}: steps must be an int; got {type(steps).__name__}")
    if steps < 0:
        raise ConfigurationError(f"{name}: steps must be >= 0; got {steps}")
    return steps


class linspace:
    """A lazy, re-iterable linear space from ``start`` to ``end`` (both included) in ``steps``
    values: value ``i`` is ``start + i / (steps - 1) * (end - start)``.

    ``list(linspace(0, 1, 3)) == [0.0, 0.5, 1.0]``. With ``steps=1`` the space is
    ``[start]``; with ``steps=0`` it is empty.

    Args:
        start: The first value.
        end: The last value.
        steps: The number of values.

    Raises:
        TypeError: ``steps`` is not an int.
        ConfigurationError: ``steps`` is negative.
    """

    def __init__(self, start: float, end: float, steps: int) -> None:
        self.start = start
        self.end = end
        self.steps = _check_steps("linspace", steps)

    def _progress(self, i: int) -> float:
        return i / (self.steps - 1) if self.steps > 1 else 0.0

    def __iter__(self) -> Iterator[float]:
        return (self.start + self._progress(i) * (self.end - self.start) for i in range(self.steps))

    def __len__(self) -> int:
        return self.steps

    def __repr__(self) -> str:
        return f"linspace({self.start!r}, {self.end!r}, {self.steps!r})"


class cosinespace:
    """A lazy, re-iterable cosine-annealed space from ``start`` to ``end`` in ``steps``
    values: value ``i`` is ``end + (start - end) * (1 + cos(pi * i / (steps - 1))) / 2``.

    This is the annealing of SGDR (Loshchilov & Hutter, 2017, eq. 5, https://arxiv.org/abs/1608.03983).
    ``list(cosinespace(0, 1, 3)) == [0.0, 0.5, 1.0]`` (up to rounding). With ``steps=1``
    the space is ``[start]``; with ``steps=0`` it is empty.

    Args:
        start: The first value.
        end: The last value.
        steps: The number of values.

    Raises:
        TypeError: ``steps`` is not an int.
        ConfigurationError: ``steps`` is negative.
    """

    def __init__(self, start: float, end: float, steps: int) -> None:
        self.start = start
        self.end = end
        self.steps = _check_steps("cosinespace", steps)

    def _progress(self, i: int) -> float:
        return i / (self.steps - 1) if self.steps > 1 else 0.0

    def __iter__(self) -> Iterator[float]:
        return (
            self.end + (self.start - self.end) * (1 + math.cos(self._progress(i) * math.pi)) / 2
            for i in range(self.steps)
        )

    def __len__(self) -> int:
        return self.steps

    def __repr__(self) -> str:
        return f"cosinespace({self.start!r}, {self.end!r}, {self.steps!r})"


def _length(space: Any) -> int | None:
    try:
        return len(space)
    except TypeError:
        return None


class Phase:
    """One part of a policy: a space of values per optimizer hyperparameter, one value per
    optimizer step.

    Iterating a phase yields one dict per step, e.g. ``{'lr': 0.1, 'momentum': 0.9}``.

    Args:
        lr: The learning rates, one per step (an iterable such as :class:`linspace`), or a
            single float held for ``steps`` steps.
        momentum: The momentums, the same way (for ``Adam``-like optimizers, the first
            coefficient of ``betas`` is set).
        steps: The number of steps, needed when a value is a single float; when given, each
            space with a length must have this length. epochal's extension: Poutyne's
            ``Phase`` takes spaces only.

    Raises:
        ConfigurationError: Neither ``lr`` nor ``momentum`` is given; a float is given
            without ``steps``; the spaces' lengths differ (from each other or ``steps``).
    """

    def __init__(
        self,
        *,
        lr: Iterable[float] | float | None = None,
        momentum: Iterable[float] | float | None = None,
        steps: int | None = None,
    ) -> None:
        if lr is None and momentum is None:
            raise ConfigurationError(
                "Phase needs lr=, momentum= or both: e.g. Phase(lr=linspace(0.01, 0.1, 100))."
            )
        if steps is not None:
            _check_steps("Phase", steps)
        self.configuration: dict[str, Iterable[float]] = {}
        for name, space in (("lr", lr), ("momentum", momentum)):
            if space is None:
                continue
            if isinstance(space, (int, float)):
                if steps is None:
                    raise ConfigurationError(
                        f"Phase got a single {name}={space!r} without steps=: pass steps=N to "
                        f"hold it for N steps, or a space such as linspace({space!r}, ..., N)."
                    )
                space = [float(space)] * steps
            self.configuration[name] = space
        lengths = {n: _length(s) for n, s in self.configuration.items()}
        known = {n: length for n, length in lengths.items() if length is not None}
        if steps is not None:
            known["steps"] = steps
        if len(set(known.values())) > 1:
            raise ConfigurationError(
                f"Phase's spaces must give one value per step for the same number of steps; "
                f"got lengths {known}. Build them with the same steps."
            )

    def __iter__(self) -> Iterator[dict[str, float]]:
        names = list(self.configuration)
        for values in zip(*self.configuration.values()):
            yield dict(zip(names, values))

    def __repr__(self) -> str:
        lines = [f"    {name}: {space!r}" for name, space in self.configuration.items()]
        return "\n".join(["Phase:", *lines])

    def plot(self, param_name: str = "lr", ax: Any = None) -> Any:
        """Plot the values of one hyperparameter against the step.

        Args:
            param_name: ``'lr'`` or ``'momentum'``.
            ax: A matplotlib ``Axes`` to draw on. Default: a new figure.

        Returns:
            The ``Axes``.

        Raises:
            KeyError: The phase has no such hyperparameter.
            ImportError: matplotlib is missing (install the ``examples`` extra).
        """
        if param_name not in self.configuration:
            raise KeyError(
                f"This phase sets {', '.join(self.configuration)}, not {param_name!r}."
            )
        return _plot(list(self.configuration[param_name]), param_name, ax)


def _plot(values: Sequence[float], param_name: str, ax: Any) -> Any:
    from epochal.plotting import _pyplot

    plt = _pyplot()
    if ax is None:
        _fig, ax = plt.subplots()
    ax.plot(values)
    ax.set_xlabel("steps")
    ax.set_ylabel(param_name)
    return ax


def one_cycle_phases(
    steps: int,
    lr: tuple[float, float] = (0.1, 1),
    momentum: tuple[float, float] = (0.95, 0.85),
    finetune_lr: float = 0.01,
    finetune_fraction: float = 0.1,
) -> list[Phase]:
    """The one-cycle policy (Smith & Topin, "Super-Convergence", 2017,
    https://arxiv.org/abs/1708.07120): three linear phases.

    With ``a = int(steps * finetune_fraction)``, ``up = (steps - a) // 2`` and
    ``down = steps - a - up``: the learning rate goes ``lr[0] -> lr[1]`` in ``up`` steps
    while the momentum goes ``momentum[0] -> momentum[1]``; both go back in ``down`` steps;
    then the learning rate goes ``lr[0] -> finetune_lr`` in ``a`` steps at momentum
    ``momentum[0]``.

    Args:
        steps: Total number of optimizer steps.
        lr: ``(start, peak)`` learning rates.
        momentum: ``(start, trough)`` momentums.
        finetune_lr: The learning rate reached at the end (below ``min(lr)``).
        finetune_fraction: Share of the steps of the last phase, in [0, 1].

    Returns:
        Three :class:`Phase` objects.

    Raises:
        ConfigurationError: ``steps`` is negative or ``finetune_fraction`` is outside [0, 1].
    """
    _check_steps("one_cycle_phases", steps)
    if not 0 <= finetune_fraction <= 1:
        raise ConfigurationError(
            f"one_cycle_phases: finetune_fraction must be in [0, 1]; got {finetune_fraction}"
        )
    steps_annealing = int(steps * finetune_fraction)
    steps_up = (steps - steps_annealing) // 2
    steps_down = steps - steps_annealing - steps_up
    return [
        Phase(lr=linspace(lr[0], lr[1], steps_up), momentum=linspace(momentum[0], momentum[1], steps_up)),
        Phase(
            lr=linspace(lr[1], lr[0], steps_down),
            momentum=linspace(momentum[1], momentum[0], steps_down),
        ),
        Phase(
            lr=linspace(lr[0], finetune_lr, steps_annealing),
            momentum=linspace(momentum[0], momentum[0], steps_annealing),
        ),
    ]


def sgdr_phases(
    base_cycle_length: int,
    cycles: int,
    lr: tuple[float, float] = (1.0, 0.1),
    cycle_mult: int = 2,
) -> list[Phase]:
    """Stochastic gradient descent with warm restarts (Loshchilov & Hutter, "SGDR", 2017,
    https://arxiv.org/abs/1608.03983): ``cycles`` cosine annealings from ``lr[0]`` to
    ``lr[1]``, cycle ``i`` lasting ``base_cycle_length * cycle_mult ** i`` steps (so
    ``sum(base_cycle_length * cycle_mult ** i for i in range(cycles))`` steps in all).

    Args:
        base_cycle_length: Steps of the first cycle.
        cycles: Number of cycles.
        lr: ``(start, end)`` learning rates of every cycle.
        cycle_mult: Growth factor of the cycle length.

    Returns:
        One :class:`Phase` per cycle.

    Raises:
        ConfigurationError: A negative ``base_cycle_length`` or ``cycles``.
    """
    _check_steps("sgdr_phases", base_cycle_length)
    _check_steps("sgdr_phases (cycles)", cycles)
    return [
        Phase(lr=cosinespace(lr[0], lr[1], int(base_cycle_length * cycle_mult**i)))
        for i in range(cycles)
    ]


class OptimizerPolicy(Callback):
    """Runs phases one after the other: before each optimizer step, sets the next values of
    the policy in every parameter group of ``model.optimizer``.

    A value is set right before ``optimizer.step()`` (at ``on_backward_end``), so with
    ``batches_per_step=N`` the policy advances once per optimizer step, like the per-step
    learning-rate schedules; with ``N = 1`` it advances once per training batch, as in
    Poutyne. After the last step of the last phase the optimizer is left as it is. The
    position survives calling ``fit`` again, and ``state_dict``/``load_state_dict`` save it
    (a :class:`~epochal.ModelBundle` restores it on resume).

    A ``momentum`` value is written to a group's ``momentum`` (SGD, RMSprop) or to the first
    coefficient of its ``betas`` (Adam and its relatives).

    Args:
        phases: The :class:`Phase` objects (or any iterables of per-step dicts) to run.
        initial_step: The step to start at (to restart a policy by hand).

    Raises:
        ConfigurationError: At train begin, when a phase sets a hyperparameter the optimizer
            does not have (e.g. ``momentum`` on an optimizer with neither ``momentum`` nor
            ``betas``): Poutyne would write a key the optimizer never reads.
    """

    def __init__(self, phases: list[Phase], *, initial_step: int = 0) -> None:
        super().__init__()
        self.phases = phases
        self.current_step = _check_steps("OptimizerPolicy (initial_step)", initial_step)
        self.phases_iter = iter(self)
        self._applied = False

    def __iter__(self) -> Iterator[dict[str, float]]:
        for values in islice(chain.from_iterable(self.phases), self.current_step, None):
            self.current_step += 1
            yield values

    def all_steps(self) -> Iterator[dict[str, float]]:
        """Every step's values, from the first step (does not move the current step).

        Returns:
            An iterator of dicts such as ``{'lr': 0.1, 'momentum': 0.9}``.
        """
        return chain.from_iterable(self.phases)

    def __repr__(self) -> str:
        return f"OptimizerPolicy:\n    phases: {len(self.phases)}\n    current_step: {self.current_step}"

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        """Check that the optimizer has every hyperparameter the phases set."""
        optimizer = self._optimizer()
        names = {name for phase in self.phases for name in getattr(phase, "configuration", {})}
        for group_index, group in enumerate(optimizer.param_groups):
            for name in names:
                if name in group or (name == "momentum" and "betas" in group):
                    continue
                raise ConfigurationError(
                    f"OptimizerPolicy sets {name!r}, but parameter group {group_index} of "
                    f"{type(optimizer).__name__} has no such hyperparameter (it "
                    f"has: {', '.join(sorted(k for k in group if k != 'params'))}). Remove "
                    f"{name}= from the phases or use an optimizer that has it."
                )

    def on_backward_end(self, batch_number: int) -> None:
        """Write the next step's values into the optimizer (nothing after the last phase).
        When the loss scaler skipped the previous optimizer step (``'16-mixed'``), its values
        were not used: they stay for this step and the policy does not advance."""
        if self._applied and scaler_skipped_last_step(self.model):
            return
        values = next(self.phases_iter, None)
        if values is not None:
            self._update_optimizer(values)
            self._applied = True

    def _optimizer(self) -> torch.optim.Optimizer:
        optimizer = self.model.optimizer
        if optimizer is None:
            raise ConfigurationError(
                "OptimizerPolicy needs a Model with an optimizer; this model has none. Pass "
                "optimizer= to Model."
            )
        return optimizer

    def _update_optimizer(self, values: Mapping[str, float]) -> None:
        for group in self._optimizer().param_groups:
            for name, value in values.items():
                if name == "momentum" and "momentum" not in group and "betas" in group:
                    group["betas"] = (value, *tuple(group["betas"])[1:])
                else:
                    group[name] = value

    def state_dict(self) -> dict[str, Any]:
        """The policy's position: ``{'current_step': int}``."""
        return {"current_step": self.current_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from the position :meth:`state_dict` saved."""
        self.current_step = _check_steps("OptimizerPolicy state", int(state["current_step"]))
        self.phases_iter = iter(self)
        self._applied = False

    def plot(self, param_name: str = "lr", ax: Any = None) -> Any:
        """Plot one hyperparameter over every step of every phase.

        Args:
            param_name: ``'lr'`` or ``'momentum'``.
            ax: A matplotlib ``Axes`` to draw on. Default: a new figure.

        Returns:
            The ``Axes``.

        Raises:
            KeyError: A step does not set ``param_name``.
            ImportError: matplotlib is missing (install the ``examples`` extra).
        """
        return _plot([step[param_name] for step in self.all_steps()], param_name, ax)
