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
