"""A bundle snapshot's capture (:func:`epochal._commit_writer.capture`) and its commits:
the state file reads back the same snapshot (old layout included), a capture is a copy that
keeps shared storages shared (whatever the layouts and dtypes), and a commit to a streaming
store never holds a whole file."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from epochal._commit_writer import capture
from epochal._io import torch_from_bytes
from epochal._snapshots import Snapshot, SnapshotStore
from epochal.testing import MemoryCheckpointStore


def _snapshot() -> Snapshot:
    torch.manual_seed(0)
    return Snapshot(epoch=2, global_step=20, network={"w": torch.randn(3, 4), "b": torch.zeros(3)},
                    optimizer={"state": {}, "param_groups": []}, random_states=None,
                    log_rows=[{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}])


class _BytesOnly:
    """A store without ``open_write``: each file arrives whole through ``write``."""

    def __init__(self) -> None:
        self.inner = MemoryCheckpointStore()

    def __getattr__(self, name: str) -> Any:
        if name == "open_write":
            raise AttributeError(name)
        return getattr(self.inner, name)


def _written(commit: Any, store: Any = None) -> dict[str, bytes]:
    store = MemoryCheckpointStore() if store is None else store
    commit(SnapshotStore(store, describe="t"))
    return dict(getattr(store, "inner", store).blobs)


def _sync(snapshot: Snapshot, is_best: bool = True) -> Any:
    return lambda snapshots: snapshots.commit(snapshot, is_best=is_best, monitor=None,
                                              keep_only_last_best=False,
                                              save_every_epoch=False)


def _captured(snapshot: Snapshot, is_best: bool = True) -> Any:
    """A commit of ``capture(snapshot)``, the copy a background commit writes."""
    return _sync(capture(snapshot), is_best=is_best)


class TestPrepareCommit:
    def test_the_checkpoint_files_are_the_weights(self) -> None:
        """The checkpoint files load to the snapshot's weights; the state file holds them as
        tensors."""
        blobs = _written(_captured(_snapshot(), is_best=True))
        payload = torch_from_bytes(blobs["state/epoch_0002.state"])
        assert "network_bytes" not in payload
        assert torch.equal(payload["network"]["w"], _snapshot().network["w"])
        for name in ("checkpoint.ckpt", "checkpoint_epoch_2.ckpt"):
            weights = torch_from_bytes(blobs[name])
            assert set(weights) == {"w", "b"}
            assert torch.equal(weights["w"], _snapshot().network["w"])

    def test_state_file_reads_back_the_snapshot(self) -> None:
        """``Snapshot.from_payload`` of the state file gives the captured weights, step and
        log rows; the manifest names its size and SHA-256."""
        snapshot = _snapshot()
        blobs = _written(lambda snapshots: snapshots.commit(
            capture(snapshot), is_best=False, monitor="val_loss", keep_only_last_best=False,
            save_every_epoch=False))
        state = blobs["state/epoch_0002.state"]
        back = Snapshot.from_payload(torch_from_bytes(state), source="test")
        assert back.epoch == 2 and back.global_step == 20
        assert [dict(r) for r in back.log_rows] == [dict(r) for r in snapshot.log_rows]
        for name, tensor in snapshot.network.items():
            assert torch.equal(back.network[name], tensor)
        manifest = json.loads(blobs["manifests/epoch_0002.json"])
        assert manifest["bytes"] == len(state)
        assert manifest["sha256"] == hashlib.sha256(state).hexdigest()
        assert manifest["monitor"] == "val_loss"

    def test_state_file_is_about_one_copy_of_the_weights(self) -> None:
        """The embedded weights are stored raw: the state file is the checkpoint's size plus a
        few kilobytes, not half as much again."""
        torch.manual_seed(0)
        snapshot = Snapshot(epoch=1, global_step=1, network={"w": torch.randn(256, 256)},
                            random_states=None)
        blobs = _written(_sync(snapshot, is_best=False))
        assert len(blobs["checkpoint.ckpt"]) > 256 * 256 * 4
        assert len(blobs["state/epoch_0001.state"]) < len(blobs["checkpoint.ckpt"]) + 16_384

    def test_capture_is_a_copy(self) -> None:
        """Changing the weights, the optimizer state, the log rows and the callbacks' states
        after the capture changes no file the commit writes."""
        snapshot = attrs.evolve(
            _snapshot(), optimizer={"state": {0: {"momentum_buffer": torch.ones(3)}},
                                    "param_groups": [{"lr": 0.1, "params": [0]}]},
            callbacks={"0:Keep": {"history": [1.0]}})
        expected = _written(_sync(snapshot))
        commit = _captured(snapshot)  # captures now
        snapshot.network["w"].add_(1.0)
        snapshot.optimizer["state"][0]["momentum_buffer"].mul_(3.0)  # type: ignore[index]
        snapshot.log_rows.append({"epoch": 3, "loss": 0.125})  # type: ignore[attr-defined]
        snapshot.callbacks["0:Keep"]["history"].append(2.0)
        assert _written(commit) == expected

    def test_capture_keeps_shared_storages_shared(self) -> None:
        """Tied weights (two names, one storage) stay one storage in the capture: the files
        are byte-identical to a synchronous commit's, and a view stays a view."""
        torch.manual_seed(0)
        shared = torch.randn(4, 3)
        snapshot = Snapshot(epoch=1, global_step=1, random_states=None,
                            network={"encoder.weight": shared, "decoder.weight": shared,
                                     "row": shared[1]})
        captured = capture(snapshot)
        network = captured.network
        assert network["encoder.weight"].untyped_storage().data_ptr() == \
            network["decoder.weight"].untyped_storage().data_ptr() == \
            network["row"].untyped_storage().data_ptr()
        assert network["encoder.weight"].data_ptr() != shared.data_ptr()
        assert _written(_captured(snapshot, is_best=True)) == \
            _written(_sync(snapshot))

    def test_capture_takes_callback_states_with_computed_tensors_and_cycles(self) -> None:
        """A callback's state may hold a tensor with a graph (``deepcopy`` refuses those) and
        a view of it, or hold itself: the capture writes the same bytes as a synchronous
        commit (the view still shares the tensor's storage)."""
        weight = torch.ones(3, requires_grad=True)
        shadow = weight * 2
        state: dict[str, Any] = {"shadow": shadow, "first": shadow[:1]}
        state["itself"] = state
        snapshot = attrs.evolve(_snapshot(), callbacks={"0:Ema": state})
        captured = capture(snapshot).callbacks["0:Ema"]
        assert captured["itself"] is captured
        assert captured["shadow"].grad_fn is None and captured["shadow"].requires_grad
        assert captured["first"].untyped_storage().data_ptr() == \
            captured["shadow"].untyped_storage().data_ptr()
        plain = attrs.evolve(snapshot, callbacks={"0:Ema": {k: state[k] for k in
                                                           ("shadow", "first")}})
        assert _written(_captured(plain)) == _written(_sync(plain))

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    def test_capture_holds_no_device_memory(self) -> None:
        """Tensors on a device are copied to the host once per tensor, and the files load the
        same weights."""
        on_device = torch.randn(3, 4, device="cuda")
        snapshot = Snapshot(epoch=1, global_step=1, random_states=None,
                            network={"w": on_device},
                            optimizer={"state": {0: {"buf": on_device}}, "param_groups": []})
        captured = capture(snapshot)
        assert captured.network["w"].device.type == "cpu"
        assert captured.optimizer["state"][0]["buf"] is captured.network["w"]  # type: ignore[index]
        blobs = _written(_captured(snapshot, is_best=False))
        assert torch.equal(torch_from_bytes(blobs["checkpoint.ckpt"])["w"], on_device.cpu())

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


_DTYPES = (torch.float32, torch.float64, torch.float16, torch.int64, torch.uint8, torch.bool)


@st.composite
def _networks(draw: Any) -> dict[str, torch.Tensor]:
    """State dicts with the layouts a capture must keep: several dtypes, empty tensors, and
    entries that view an earlier entry's storage (a row, a transpose, an offset slice)."""
    network: dict[str, torch.Tensor] = {}
    for index in range(draw(st.integers(1, 6))):
        earlier = [t for t in network.values() if t.dim() == 2 and t.shape[0] > 1]
        if earlier and draw(st.booleans()):
            base = draw(st.sampled_from(earlier))
            view = draw(st.sampled_from(["row", "transpose", "tail"]))
            network[f"v{index}"] = {"row": base[1], "transpose": base.t(),
                                    "tail": base[1:]}[view]
            continue
        shape = (draw(st.integers(0, 5)), draw(st.integers(1, 7)))
        dtype = draw(st.sampled_from(_DTYPES))
        values = torch.arange(shape[0] * shape[1], dtype=torch.float64).reshape(shape)
        network[f"t{index}"] = (values * draw(st.floats(-3, 3))).to(dtype)
    return network


def _with_optimizer(network: dict[str, torch.Tensor]) -> Snapshot:
    """A snapshot whose optimizer state aliases the first weight and holds a ``Parameter``
    (``deepcopy`` clones those rather than copying their storage)."""
    first = next(iter(network.values()))
    return Snapshot(epoch=1, global_step=3, network=network, random_states=None,
                    optimizer={"state": {0: {"alias": first,
                                             "param": torch.nn.Parameter(torch.ones(2))}},
                               "param_groups": [{"lr": 0.1, "params": [0]}]})


class TestCaptureLayouts:
    @given(_networks())
    def test_captured_commit_writes_what_a_synchronous_commit_writes(
            self, network: dict[str, torch.Tensor]) -> None:
        """Whatever the dtypes, empty tensors, views (rows, transposes, offset slices) and
        aliases in the optimizer state, a commit of the capture writes the same files, byte
        for byte, as a synchronous commit of the snapshot."""
        snapshot = _with_optimizer(network)
        assert _written(_captured(snapshot)) == _written(_sync(snapshot))


class TestSynchronousCommit:
    def test_it_writes_what_a_captured_commit_writes(self) -> None:
        """SnapshotStore.commit (the live tensors streamed) leaves the same files, byte for
        byte, as a commit of capture(snapshot) and as a store without ``open_write``."""
        snapshot = _snapshot()
        direct = _written(_sync(snapshot))
        assert direct == _written(_captured(snapshot, is_best=True))
        assert direct == _written(_sync(snapshot), _BytesOnly())
        assert len(direct) == 5  # best checkpoint, state, manifest, log.tsv, checkpoint

    def test_a_streaming_store_never_holds_a_whole_file(self) -> None:
        """With ``open_write`` no serialized file is ever whole in memory: at every write of
        a commit, synchronous or captured, the Python heap (where serialized bytes live;
        tensors do not) holds under a tenth of the biggest file over what it held before
        (0.04 measured). A store without ``open_write`` holds one file at a time (1.0), which
        the same measure shows."""
        torch.manual_seed(0)
        big = Snapshot(epoch=1, global_step=1, network={"w": torch.randn(1024, 1024)},
                       random_states=None)
        file_size = 1024 * 1024 * 4

        def peak_over_file(commit: Any, streaming: bool) -> float:
            held: list[int] = []

            class Forgetting(MemoryCheckpointStore):  # keeps the names, not the bytes
                def write(self, name: str, data: bytes) -> None:
                    held.append(tracemalloc.get_traced_memory()[0])
                    super().write(name, b"")

                @contextlib.contextmanager
                def open_write(self, name: str) -> Iterator[Any]:
                    class Sink:
                        def write(self, data: Any) -> int:
                            held.append(tracemalloc.get_traced_memory()[0])
                            return memoryview(data).nbytes

                        def flush(self) -> None:
                            pass

                    yield Sink()
                    super().write(name, b"")

            store: Any = Forgetting() if streaming else _BytesOnly()
            if not streaming:
                store.inner = Forgetting()
                store.inner.open_write = None
            snapshots = SnapshotStore(store, describe="w")
            commit(snapshots)  # a warm-up: the first commit imports the TSV writer
            held.clear()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                commit(snapshots)
            finally:
                tracemalloc.stop()
            return (max(held) - before) / file_size

        assert peak_over_file(_sync(big), streaming=True) < 0.1
        captured = _captured(big)
        assert peak_over_file(captured, streaming=True) < 0.1
        assert 0.9 < peak_over_file(_sync(big), streaming=False) < 1.5
