"""A bundle snapshot's capture (:func:`epochal._snapshots.prepare_commit`): the weights are
serialized once, and the state file reads back the same snapshot, old layout included."""

from __future__ import annotations

import io

import torch

from epochal._io import torch_from_bytes
from epochal._snapshots import Snapshot, prepare_commit


def _snapshot() -> Snapshot:
    torch.manual_seed(0)
    return Snapshot(epoch=2, global_step=20, network={"w": torch.randn(3, 4), "b": torch.zeros(3)},
                    optimizer={"state": {}, "param_groups": []}, random_states=None,
                    log_rows=[{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}])


class TestPrepareCommit:
    def test_state_file_embeds_the_checkpoint_bytes(self) -> None:
        """The state file carries the checkpoint files' bytes as they are (one serialization
        of the weights), and they load to the snapshot's weights."""
        commit = prepare_commit(_snapshot(), is_best=True, monitor=None)
        payload = torch_from_bytes(commit.state_bytes)
        assert payload["network_bytes"].numpy().tobytes() == commit.weights_bytes
        assert "network" not in payload
        weights = torch_from_bytes(commit.weights_bytes)
        assert set(weights) == {"w", "b"}
        assert torch.equal(weights["w"], _snapshot().network["w"])

    def test_state_file_reads_back_the_snapshot(self) -> None:
        """``Snapshot.from_payload`` of the state file gives the captured weights, step and
        log rows."""
        snapshot = _snapshot()
        commit = prepare_commit(snapshot, is_best=False, monitor="val_loss")
        back = Snapshot.from_payload(torch_from_bytes(commit.state_bytes), source="test")
        assert back.epoch == 2 and back.global_step == 20
        assert [dict(r) for r in back.log_rows] == [dict(r) for r in snapshot.log_rows]
        for name, tensor in snapshot.network.items():
            assert torch.equal(back.network[name], tensor)

    def test_state_file_is_about_one_copy_of_the_weights(self) -> None:
        """The embedded weights are stored raw: the state file is the checkpoint's size plus a
        few kilobytes, not half as much again."""
        torch.manual_seed(0)
        snapshot = Snapshot(epoch=1, global_step=1, network={"w": torch.randn(256, 256)},
                            random_states=None)
        commit = prepare_commit(snapshot, is_best=False, monitor=None)
        assert len(commit.weights_bytes) > 256 * 256 * 4
        assert len(commit.state_bytes) < len(commit.weights_bytes) + 16_384

    def test_capture_is_a_copy(self) -> None:
        """Changing the weights after the capture changes neither file's content."""
        snapshot = _snapshot()
        commit = prepare_commit(snapshot, is_best=False, monitor=None)
        snapshot.network["w"].add_(1.0)
        weights = torch_from_bytes(commit.weights_bytes)
        assert not torch.equal(weights["w"], snapshot.network["w"])

    def test_state_files_of_the_earlier_layout_still_load(self) -> None:
        """A state file that stores the weights under ``network`` (written before they were
        serialized once) loads the same snapshot."""
        snapshot = _snapshot()
        buffer = io.BytesIO()
        torch.save(snapshot.to_payload(), buffer)
        payload = torch_from_bytes(buffer.getvalue())
        assert "network" in payload and "network_bytes" not in payload
        back = Snapshot.from_payload(payload, source="old")
        assert torch.equal(back.network["w"], snapshot.network["w"])
