"""Directives: what a bus handler may return to steer training.

A handler steers training only by returning one of these from its ``publish`` call (or by the
Poutyne-compatible ``model.stop_training = True``); the ``Model`` reads them after each
publish. No handler reaches into a global trainer.
"""

from __future__ import annotations

import attrs

__all__ = ["StopTraining"]


@attrs.frozen(kw_only=True)
class StopTraining:
    """Stop training at the end of the current step (or, published at epoch end, before the
    next epoch).

    Attributes:
        reason: Short human-readable reason, shown in logs (e.g. ``"loss is nan"``).
    """

    reason: str = ""
