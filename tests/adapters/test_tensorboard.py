"""The TensorBoard adapter: a SummaryWriter for a log directory, or an ImportError that says
what to install."""

from __future__ import annotations

import sys

import pytest

from epochal_adapters.tensorboard import ScalarWriter, summary_writer


def test_summary_writer_writes_event_files(tmp_path):
    """The writer it returns writes event files under the directory and is a ScalarWriter."""
    pytest.importorskip("tensorboard")
    writer = summary_writer(tmp_path)
    assert isinstance(writer, ScalarWriter)
    writer.add_scalar("x", 1.0, 1)
    writer.close()
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_missing_tensorboard_names_the_package(monkeypatch, tmp_path):
    """Without torch.utils.tensorboard importable, the error names pip install tensorboard."""
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match="pip install tensorboard"):
        summary_writer(tmp_path)


def _scalars(run, tag):
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(str(run))
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def _write_epochs(writer, epochs):
    for epoch in epochs:
        writer.add_scalars("loss", {"loss": 1.0 / epoch, "val_loss": 2.0 / epoch}, epoch)
        writer.add_scalar("lr", 0.1 * epoch, epoch)


def test_same_thread_writer_writes_what_summary_writer_writes_without_a_thread(tmp_path):
    """Same folders, same scalars as torch's SummaryWriter (read back with TensorBoard's
    EventAccumulator), TensorBoard's file names, each event on disk when the call returns,
    and no thread started (SummaryWriter starts one per event file: three here)."""
    import threading

    pytest.importorskip("tensorboard")
    from epochal_adapters.tensorboard import ScalarEventFiles

    before = threading.active_count()
    threaded = summary_writer(tmp_path / "threaded")
    _write_epochs(threaded, [1, 2, 3])
    assert threading.active_count() == before + 3
    threaded.close()

    writer = ScalarEventFiles(tmp_path / "same")
    assert isinstance(writer, ScalarWriter)
    _write_epochs(writer, [1, 2, 3])
    assert threading.active_count() == before
    # Before close: every event is already in its file.
    for folder, tag in (("loss_val_loss", "loss"), ("", "lr")):
        assert _scalars(tmp_path / "same" / folder, tag) == _scalars(
            tmp_path / "threaded" / folder, tag)
    writer.close()
    same = sorted(p.relative_to(tmp_path / "same").parent for p in
                  (tmp_path / "same").rglob("events.out.tfevents.*"))
    assert same == sorted(p.relative_to(tmp_path / "threaded").parent for p in
                          (tmp_path / "threaded").rglob("events.out.tfevents.*"))
    assert len(same) == 3
    import os
    import re
    import socket

    form = re.compile(rf"events\.out\.tfevents\.\d{{10}}\.{re.escape(socket.gethostname())}"
                      rf"\.{os.getpid()}\.\d+")
    for path in (tmp_path / "same").rglob("events.out.tfevents.*"):
        assert form.fullmatch(path.name), path.name


def test_same_thread_writer_purges_from_its_step_in_every_folder(tmp_path):
    """With purge_step, TensorBoard hides what an earlier run wrote at that step and later,
    in the main folder and in each per-tag folder; files the writer opens after close() do
    not hide its own points again."""
    pytest.importorskip("tensorboard")
    from epochal_adapters.tensorboard import ScalarEventFiles

    first = ScalarEventFiles(tmp_path)
    _write_epochs(first, [1, 2, 3])
    first.close()
    resumed = ScalarEventFiles(tmp_path, purge_step=3)
    resumed.add_scalars("loss", {"loss": 9.0, "val_loss": 9.0}, 3)
    resumed.add_scalar("lr", 9.0, 3)
    resumed.close()
    resumed.add_scalars("loss", {"loss": 8.0, "val_loss": 8.0}, 4)
    resumed.add_scalar("lr", 8.0, 4)
    resumed.close()
    expected = [(1, 1.0), (2, 0.5), (3, 9.0), (4, 8.0)]
    assert _scalars(tmp_path / "loss_loss", "loss") == expected
    assert _scalars(tmp_path / "loss_val_loss", "loss") == [(1, 2.0), (2, 1.0), (3, 9.0),
                                                             (4, 8.0)]
    assert [v for _, v in _scalars(tmp_path, "lr")] == pytest.approx([0.1, 0.2, 9.0, 8.0])


def test_file_names_sort_in_the_order_they_were_opened(tmp_path, monkeypatch):
    """TensorBoard reads a folder's event files in name order: the file number is
    zero-padded, so the tenth file of a second sorts after the ninth."""
    import itertools

    pytest.importorskip("tensorboard")
    import epochal_adapters.tensorboard as tensorboard

    monkeypatch.setattr(tensorboard, "_EVENT_FILE_IDS", itertools.count(9))
    writer = tensorboard.ScalarEventFiles(tmp_path)
    writer.add_scalar("lr", 1.0, 1)
    writer.close()
    writer.add_scalar("lr", 2.0, 2)
    writer.close()
    names = sorted(p.name for p in tmp_path.glob("events.out.tfevents.*"))
    assert [name.rsplit(".", 1)[1] for name in names] == ["000009", "000010"]
    assert _scalars(tmp_path, "lr") == [(1, 1.0), (2, 2.0)]


def test_a_file_name_in_use_is_never_truncated(tmp_path, monkeypatch):
    """Two writers given the same name (same second, same process, same number) keep
    their own files: the second takes the next number instead of truncating the first's."""
    import itertools

    pytest.importorskip("tensorboard")
    import epochal_adapters.tensorboard as tensorboard

    monkeypatch.setattr(tensorboard.time, "time", lambda: 1_700_000_000.0)
    monkeypatch.setattr(tensorboard, "_EVENT_FILE_IDS", itertools.count())
    first = tensorboard.ScalarEventFiles(tmp_path)
    first.add_scalar("a", 1.0, 1)
    monkeypatch.setattr(tensorboard, "_EVENT_FILE_IDS", itertools.count())
    second = tensorboard.ScalarEventFiles(tmp_path)
    second.add_scalar("b", 2.0, 1)
    first.close()
    second.close()
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
    assert _scalars(tmp_path, "a") == [(1, 1.0)]
    assert _scalars(tmp_path, "b") == [(1, 2.0)]


def test_values_are_what_summary_writer_accepts(tmp_path):
    """Numbers, numpy scalars, one-element arrays and tensors (a tensor that requires grad
    too, silently); more than one element is a ValueError naming the shape."""
    import warnings

    import numpy as np
    import torch

    pytest.importorskip("tensorboard")
    from epochal_adapters.tensorboard import ScalarEventFiles

    with ScalarEventFiles(tmp_path) as writer:
        assert writer.get_logdir() == str(tmp_path)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for step, value in enumerate([1, np.float32(2.0), np.array([3.0]),
                                          torch.tensor(4.0), torch.ones(1, requires_grad=True)]):
                writer.add_scalar("v", value, step)
        with pytest.raises(ValueError, match=r"shape \(3,\)"):
            writer.add_scalar("v", np.ones(3), 9)
    assert [v for _, v in _scalars(tmp_path, "v")] == [1.0, 2.0, 3.0, 4.0, 1.0]


def test_masked_crc32c_is_tensorflows():
    """CRC-32C's check value (RFC 3720: 0xE3069283 for b'123456789'), masked as TensorFlow
    masks it, and equal to TensorBoard's own implementation on other inputs."""
    import random

    pytest.importorskip("tensorboard")
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as theirs

    from epochal_adapters.tensorboard import masked_crc32c

    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) % 2**32
    generator = random.Random(0)
    for size in (0, 1, 7, 8, 255, 1000):
        data = bytes(generator.randrange(256) for _ in range(size))
        assert masked_crc32c(data) == theirs(data)


def test_the_writer_reopens_after_close_as_summary_writer_does(tmp_path):
    """A value written after close goes to a new event file; TensorBoard reads both."""
    pytest.importorskip("tensorboard")
    from epochal_adapters.tensorboard import ScalarEventFiles

    writer = ScalarEventFiles(tmp_path)
    writer.add_scalar("lr", 0.5, 1)
    writer.close()
    writer.add_scalar("lr", 0.25, 2)
    writer.close()
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
    assert sorted(_scalars(tmp_path, "lr")) == [(1, 0.5), (2, 0.25)]


def test_a_bundle_training_imports_no_summary_writer(tmp_path):
    """The bundle's TensorBoard logs need TensorBoard's protocol buffers only: a training
    that writes them imports neither torch.utils.tensorboard nor TensorBoard's file layer
    (which imports boto3 when it is installed, 13 MiB resident)."""
    import subprocess
    import sys

    pytest.importorskip("tensorboard")
    script = (
        "import sys, torch\n"
        "from torch.utils.data import DataLoader, TensorDataset\n"
        "from epochal import ModelBundle\n"
        "net = torch.nn.Sequential(torch.nn.Linear(4, 3))\n"
        "data = TensorDataset(torch.randn(16, 4), torch.randint(0, 3, (16,)))\n"
        f"ModelBundle.from_network({str(tmp_path)!r}, net, task='classif', optimizer='sgd', monitoring=False)"
        ".train(DataLoader(data, batch_size=8), epochs=1, verbose=False)\n"
        "print(sorted(m for m in ('torch.utils.tensorboard', 'boto3', "
        "'tensorboard.summary.writer.event_file_writer', 'tensorboard.compat.tensorflow_stub')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, env={**__import__("os").environ, "MPLBACKEND": "Agg"})
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert list((tmp_path / "tensorboard" / "loss_loss").glob("events.out.tfevents.*"))
