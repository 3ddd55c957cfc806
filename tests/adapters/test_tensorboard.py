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
    from epochal_adapters.tensorboard import same_thread_summary_writer

    before = threading.active_count()
    threaded = summary_writer(tmp_path / "threaded")
    _write_epochs(threaded, [1, 2, 3])
    assert threading.active_count() == before + 3
    threaded.close()

    writer = same_thread_summary_writer(tmp_path / "same")
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
    in the main folder and in each per-tag folder."""
    pytest.importorskip("tensorboard")
    from epochal_adapters.tensorboard import same_thread_summary_writer

    first = same_thread_summary_writer(tmp_path)
    _write_epochs(first, [1, 2, 3])
    first.close()
    resumed = same_thread_summary_writer(tmp_path, purge_step=3)
    resumed.add_scalars("loss", {"loss": 9.0, "val_loss": 9.0}, 3)
    resumed.add_scalar("lr", 9.0, 3)
    resumed.close()
    assert _scalars(tmp_path / "loss_loss", "loss") == [(1, 1.0), (2, 0.5), (3, 9.0)]
    assert [v for _, v in _scalars(tmp_path, "lr")] == pytest.approx([0.1, 0.2, 9.0])
