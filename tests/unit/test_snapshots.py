"""A bundle snapshot's capture (:func:`epochal._snapshots.prepare_commit`) and synchronous
commit: the state file reads back the same snapshot (old layout included), and a synchronous
commit holds one serialized copy at a time."""

from __future__ import annotations

import io
import tracemalloc
from typing import Any

import torch

from epochal._io import torch_from_bytes
from epochal._snapshots import Snapshot, SnapshotStore, prepare_commit
from epochal.testing import MemoryCheckpointStore


def _snapshot() -> Snapshot:
    torch.manual_seed(0)
    return Snapshot(epoch=2, global_step=20, network={"w": torch.randn(3, 4), "b": torch.zeros(3)},
                    optimizer={"state": {}, "param_groups": []}, random_states=None,
                    log_rows=[{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}])


class TestPrepareCommit:
    def test_the_checkpoint_bytes_are_the_weights(self) -> None:
        """The checkpoint files' bytes load to the snapshot's weights; the state file holds
        them as tensors."""
        commit = prepare_commit(_snapshot(), is_best=True, monitor=None)
        payload = torch_from_bytes(commit.state_bytes)
        assert "network_bytes" not in payload
        assert torch.equal(payload["network"]["w"], _snapshot().network["w"])
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
        """A state file that embeds the checkpoint's bytes under ``network_bytes`` (written by
        earlier versions) loads the same snapshot."""
        snapshot = _snapshot()
        payload = snapshot.to_payload()
        weights = io.BytesIO()
        torch.save(dict(payload.pop("network")), weights)
        payload["network_bytes"] = torch.frombuffer(bytearray(weights.getvalue()),
                                                    dtype=torch.uint8)
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        back = Snapshot.from_payload(torch_from_bytes(buffer.getvalue()), source="old")
        assert torch.equal(back.network["w"], snapshot.network["w"])


class TestSynchronousCommit:
    def test_it_writes_what_a_captured_commit_writes(self) -> None:
        """SnapshotStore.commit (one serialized copy at a time) leaves the same files, byte
        for byte, as write_commit(prepare_commit(...))."""
        direct, captured = MemoryCheckpointStore(), MemoryCheckpointStore()
        snapshot = _snapshot()
        SnapshotStore(direct, describe="a").commit(
            snapshot, is_best=True, monitor=None, keep_only_last_best=False,
            save_every_epoch=False)
        SnapshotStore(captured, describe="b").write_commit(
            prepare_commit(snapshot, is_best=True, monitor=None), keep_only_last_best=False,
            save_every_epoch=False)
        assert direct.blobs == captured.blobs
        assert len(direct.blobs) == 5  # best checkpoint, state, manifest, log.tsv, checkpoint

    def test_it_holds_one_serialized_copy_at_a_time(self) -> None:
        """At every write of a synchronous commit the Python heap (where serialized files
        live; tensors do not) holds about one file: at most 1.5 times the biggest file over
        what it held before (1.2 measured). A captured commit holds two (weights and state) at its state
        file's write, which the same measure shows."""
        torch.manual_seed(0)
        big = Snapshot(epoch=1, global_step=1, network={"w": torch.randn(256, 256)},
                       random_states=None)

        def peak_over_file(commit: Any) -> float:
            held: list[int] = []

            class Forgetting(MemoryCheckpointStore):  # keeps the names, not the bytes
                def write(self, name: str, data: bytes) -> None:
                    held.append(tracemalloc.get_traced_memory()[0])
                    super().write(name, b"")

            snapshots = SnapshotStore(Forgetting(), describe="w")
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                commit(snapshots)
            finally:
                tracemalloc.stop()
            return (max(held) - before) / (256 * 256 * 4)

        direct = peak_over_file(lambda snapshots: snapshots.commit(
            big, is_best=True, monitor=None, keep_only_last_best=False, save_every_epoch=False))
        captured = peak_over_file(lambda snapshots: snapshots.write_commit(
            prepare_commit(big, is_best=True, monitor=None), keep_only_last_best=False,
            save_every_epoch=False))
        assert direct < 1.5
        assert captured > 1.8
