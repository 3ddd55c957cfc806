"""When the first non-finite training loss deserves a warning."""

from __future__ import annotations

from epochal.core.records import EpochRecord

__all__ = ["stopped_at_first_nonfinite"]


def stopped_at_first_nonfinite(train_record: EpochRecord, stop_training: bool) -> bool:
    """True when training stopped with the step whose loss was first non-finite.

    That is what ``TerminateOnNaN`` does: no later step trained on the non-finite
    gradients, so warning that they did (and suggesting ``TerminateOnNaN``) would be wrong.

    Args:
        train_record: The epoch's training-pass record.
        stop_training: Whether a stop was requested (the context's flag after the pass).

    Returns:
        True if a stop was requested and the pass's last step is its first non-finite one.
    """
    return stop_training and train_record.first_nonfinite_step == train_record.steps
