"""The loss scaler's state in the bundle snapshot (:class:`epochal._snapshots.Snapshot`)."""

from __future__ import annotations

import io

import torch

from epochal._snapshots import Snapshot
from epochal.precision import prepare_precision


def _roundtrip(payload: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_scaler_state_survives_a_weights_only_round_trip() -> None:
    """A snapshot's precision entry (a GradScaler state) is written and read back equal, with
    ``torch.load(weights_only=True)``."""
    precision = prepare_precision("16-mixed", "cpu", init_scale=1024.0, growth_interval=7)
    snapshot = Snapshot(epoch=3, global_step=30, network={"w": torch.ones(2)},
                        random_states=None, precision=precision.state_dict())
    back = Snapshot.from_payload(_roundtrip(snapshot.to_payload()), source="test")
    assert back.precision == precision.state_dict()
    restored = prepare_precision("16-mixed", "cpu")
    assert back.precision is not None
    restored.load_state_dict(back.precision)
    assert restored.loss_scale == 1024.0


def test_payload_without_precision_reads_as_none() -> None:
    """A payload written before the field existed (no 'precision' key) loads with
    ``precision=None``."""
    payload = Snapshot(epoch=1, global_step=5, network={}, random_states=None).to_payload()
    del payload["precision"]
    assert Snapshot.from_payload(payload, source="old").precision is None
