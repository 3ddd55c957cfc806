"""Logging callbacks: CSV/TSV files through the storage port, TensorBoard, structlog."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import fsspec
import pytest
import torch
from structlog.testing import capture_logs
from torch import nn

from epochal import Model
from epochal.callbacks.logging import CSVLogger, StructlogLogger, TensorBoardLogger
from epochal.callbacks.utility import LambdaCallback
from epochal.exceptions import ConfigurationError


def _batches(n_batches: int, size: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_batches * size, 3, generator=g)
    y = torch.randint(0, 2, (n_batches * size,), generator=g)
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def _model() -> Model:
    torch.manual_seed(0)
    return Model(nn.Linear(3, 2), "sgd", nn.CrossEntropyLoss(), batch_metrics=["accuracy"])


def _read(path: str | Path, separator: str = ",") -> list[list[str]]:
    with fsspec.open(str(path), "r", encoding="utf-8", newline="") as file:
        return list(csv.reader(file, delimiter=separator))


class TestCSVLogger:
    def test_columns_follow_the_epoch_log_keys(self, tmp_path):
        """The header is Poutyne's column order (epoch, time, lr, loss, metrics, val_*), one row
        per epoch."""
        path = tmp_path / "log.csv"
        model = _model()
        history = model.fit_generator(_batches(2), _batches(1, seed=1), epochs=3,
                                      callbacks=[CSVLogger(path)], verbose=False)
        rows = _read(path)
        assert rows[0] == ["epoch", "time", "lr", "loss", "acc", "val_loss", "val_acc"]
        assert [r[0] for r in rows[1:]] == ["1", "2", "3"]
        assert float(rows[3][3]) == history[2]["loss"]
        assert float(rows[1][5]) == history[0]["val_loss"]

    def test_tsv_after_append_has_one_header_and_rows_in_order(self, tmp_path):
        """A second fit with append=True continues a TSV file under its single header."""
        path = tmp_path / "log.tsv"
        model = _model()
        model.fit_generator(_batches(2), epochs=2, verbose=False,
                            callbacks=[CSVLogger(path, separator="\t")])
        model.fit_generator(_batches(2), epochs=4, initial_epoch=3, verbose=False,
                            callbacks=[CSVLogger(path, separator="\t", append=True)])
        rows = _read(path, "\t")
        assert rows[0] == ["epoch", "time", "lr", "loss", "acc", "val_loss", "val_acc"]
        assert [r[0] for r in rows[1:]] == ["1", "2", "3", "4"]
        assert sum(r == rows[0] for r in rows) == 1
        assert path.read_bytes().decode("utf-8").count("\t") == 5 * 6

    def test_append_to_missing_or_empty_file_writes_the_header(self, tmp_path):
        """append=True on a missing file, or an empty one, writes the header first."""
        for name, make_empty in (("missing.csv", False), ("empty.csv", True)):
            path = tmp_path / name
            if make_empty:
                path.write_text("")
            _model().fit_generator(_batches(1), epochs=2, verbose=False,
                                   callbacks=[CSVLogger(path, append=True)])
            rows = _read(path)
            assert rows[0][0] == "epoch" and len(rows) == 3

    def test_append_with_another_header_fails_before_training(self, tmp_path):
        """Appending to a file whose header differs is a ConfigurationError raised before any
        epoch, and the file is left as it was."""
        path = tmp_path / "log.csv"
        torch.manual_seed(0)
        Model(nn.Linear(3, 1), "sgd", "mse").fit_generator(  # no acc column
            _batches(1), epochs=1, verbose=False, callbacks=[CSVLogger(path)])
        before = path.read_bytes()
        epochs: list[int] = []
        with pytest.raises(ConfigurationError, match="val_acc") as info:
            _model().fit_generator(
                _batches(1), _batches(1), epochs=2, verbose=False,
                callbacks=[CSVLogger(path, append=True),
                           LambdaCallback(on_epoch_begin=lambda e, logs: epochs.append(e))],
            )
        assert "append=False" in str(info.value)
        assert epochs == []
        assert path.read_bytes() == before

    def test_early_stop_mid_epoch_one(self, tmp_path):
        """A stop requested in the middle of epoch 1 still writes that epoch's row, with empty
        validation cells."""
        path = tmp_path / "log.csv"
        model = _model()

        def stop(batch, logs):
            if batch == 2:
                model.stop_training = True

        model.fit_generator(_batches(4), _batches(1), epochs=3, verbose=False,
                            callbacks=[LambdaCallback(on_train_batch_end=stop), CSVLogger(path)])
        rows = _read(path)
        header = rows[0]
        assert len(rows) == 2
        row = dict(zip(header, rows[1]))
        assert row["epoch"] == "1" and row["loss"] != ""
        assert row["val_loss"] == "" and row["val_acc"] == ""

    def test_early_stop_at_epoch_two(self, tmp_path):
        """A stop requested at the end of epoch 2 leaves exactly two complete rows."""
        path = tmp_path / "log.csv"
        model = _model()

        def stop(epoch, logs):
            if epoch == 2:
                model.stop_training = True

        model.fit_generator(_batches(2), _batches(1), epochs=5, verbose=False,
                            callbacks=[CSVLogger(path), LambdaCallback(on_epoch_end=stop)])
        rows = _read(path)
        assert [r[0] for r in rows[1:]] == ["1", "2"]
        assert all(cell != "" for r in rows[1:] for cell in r)

    def test_stop_before_any_epoch_leaves_a_header(self, tmp_path):
        """Stopping at train begin (no epoch ends) leaves the header alone, without error."""
        path = tmp_path / "log.csv"
        model = _model()
        model.fit_generator(
            _batches(2), epochs=3, verbose=False,
            callbacks=[LambdaCallback(on_train_begin=lambda logs: setattr(
                model, "stop_training", True)), CSVLogger(path)],
        )
        assert _read(path) == [["epoch", "time", "lr", "loss", "acc", "val_loss", "val_acc"]]

    def test_missing_values_are_empty_cells(self, tmp_path):
        """A metric some epochs do not log (validation every other epoch) gets empty cells,
        never a made-up value."""
        path = tmp_path / "log.csv"
        model = _model()
        model.epoch_log_keys = ("epoch", "time", "loss", "val_loss", "lr")
        logger = CSVLogger(path)
        logger.set_model(model)
        logger.on_train_begin({})
        logger.on_epoch_end(1, {"epoch": 1, "time": 0.5, "loss": 1.0, "val_loss": 2.0, "lr": 0.1})
        logger.on_epoch_end(2, {"epoch": 2, "time": 0.5, "loss": 0.9, "lr": 0.1})
        logger.on_epoch_end(3, {"epoch": 3, "time": 0.5, "loss": 0.8, "val_loss": 1.5, "lr": 0.1})
        logger.on_train_end({})
        rows = _read(path)
        assert rows[0] == ["epoch", "time", "lr", "loss", "val_loss"]
        assert [r[4] for r in rows[1:]] == ["2.0", "", "1.5"]
        assert rows[2] == ["2", "0.5", "0.01", "0.9", ""]  # lr read from the optimizer

    def test_no_validation_keeps_empty_val_columns(self, tmp_path):
        """Training without validation still has Poutyne's val_loss and val_<metric>
        columns, with empty cells."""
        path = tmp_path / "log.csv"
        _model().fit_generator(_batches(2), epochs=2, verbose=False, callbacks=[CSVLogger(path)])
        rows = _read(path)
        assert rows[0] == ["epoch", "time", "lr", "loss", "acc", "val_loss", "val_acc"]
        assert [r[5:] for r in rows[1:]] == [["", ""], ["", ""]]
        assert all(r[3] != "" for r in rows[1:])

    def test_batch_granularity_rows(self, tmp_path):
        """batch_granularity adds a row per training batch (batch, size, time, loss, metrics;
        its epoch, lr and val cells empty, as in Poutyne) before its epoch's row, whose batch
        and size cells are empty."""
        path = tmp_path / "log.csv"
        _model().fit_generator(_batches(3), _batches(1), epochs=2, verbose=False,
                               callbacks=[CSVLogger(path, batch_granularity=True)])
        rows = _read(path)
        assert rows[0] == ["epoch", "batch", "size", "time", "lr", "loss", "acc", "val_loss",
                           "val_acc"]
        table = [dict(zip(rows[0], r)) for r in rows[1:]]
        assert len(table) == 2 * (3 + 1)
        assert [(r["epoch"], r["batch"]) for r in table[:4]] == [
            ("", "1"), ("", "2"), ("", "3"), ("1", "")]
        assert table[0]["size"] == "4" and table[0]["val_loss"] == "" and table[0]["lr"] == ""
        assert table[0]["loss"] != ""
        assert table[3]["size"] == "" and table[3]["val_loss"] != "" and table[3]["lr"] == "0.01"

    def test_memory_url(self):
        """A memory:// URL is written through fsspec and reads back as CSV."""
        url = f"memory://epochal-csv-{uuid.uuid4().hex}/run/log.csv"
        _model().fit_generator(_batches(1), epochs=2, verbose=False, callbacks=[CSVLogger(url)])
        rows = _read(url)
        assert rows[0][0] == "epoch" and len(rows) == 3

    def test_memory_url_append(self):
        """Appending works on an object store (the text is rewritten whole)."""
        url = f"memory://epochal-csv-{uuid.uuid4().hex}/log.csv"
        model = _model()
        model.fit_generator(_batches(1), epochs=1, verbose=False, callbacks=[CSVLogger(url)])
        model.fit_generator(_batches(1), epochs=2, initial_epoch=2, verbose=False,
                            callbacks=[CSVLogger(url, append=True)])
        assert [r[0] for r in _read(url)] == ["epoch", "1", "2"]

    @pytest.mark.s3
    def test_s3_url_append(self, s3_bucket_url, moto_s3):
        """On S3 (moto) the log is written whole per epoch and appended across fits."""
        url = f"{s3_bucket_url}/logs/log.csv"
        model = _model()
        model.fit_generator(_batches(1), epochs=1, verbose=False,
                            callbacks=[CSVLogger(url, storage_options=moto_s3)])
        model.fit_generator(_batches(1), epochs=2, initial_epoch=2, verbose=False,
                            callbacks=[CSVLogger(url, append=True, storage_options=moto_s3)])
        with fsspec.open(url, "r", encoding="utf-8", newline="", **moto_s3) as file:
            rows = list(csv.reader(file))
        assert [r[0] for r in rows] == ["epoch", "1", "2"]

    def test_file_is_utf8_with_newlines(self, tmp_path):
        """The file is UTF-8 text whose rows end with a newline."""
        path = tmp_path / "log.csv"
        _model().fit_generator(_batches(1), epochs=1, verbose=False, callbacks=[CSVLogger(path)])
        text = path.read_bytes().decode("utf-8")
        assert text.endswith("\n") and text.count("\n") == 2

    def test_state_round_trip_restores_the_rows(self, tmp_path):
        """A state loaded into a new logger before training replaces the file's rows with the
        saved ones, then new rows follow."""
        path = tmp_path / "log.csv"
        model = _model()
        first = CSVLogger(path)
        model.fit_generator(_batches(1), epochs=2, verbose=False, callbacks=[first])
        state = first.state_dict()
        assert state["fieldnames"][0] == "epoch" and len(state["rows"]) == 2
        model.fit_generator(_batches(1), epochs=3, initial_epoch=3, verbose=False,
                            callbacks=[CSVLogger(path, append=True)])  # a row to roll back
        resumed = CSVLogger(path)
        resumed.load_state_dict(state)
        model.fit_generator(_batches(1), epochs=4, initial_epoch=3, verbose=False,
                            callbacks=[resumed])
        rows = _read(path)
        assert [r[0] for r in rows] == ["epoch", "1", "2", "3", "4"]
        assert rows[1:3] == state["rows"]

    def test_batch_hooks_only_with_batch_granularity(self):
        """Without batch_granularity the logger uses no batch hook (no per-batch logs)."""
        assert "on_train_batch_end" not in CSVLogger("log.csv").used_hooks
        assert "on_train_batch_end" in CSVLogger("log.csv", batch_granularity=True).used_hooks

    def test_bad_separator_is_refused(self):
        """A separator that is not one character is a ConfigurationError."""
        with pytest.raises(ConfigurationError, match="separator"):
            CSVLogger("log.csv", separator="::")

    def test_text_matches_csv_writer(self, tmp_path):
        """text() is what the csv module parses back into the header and rows."""
        path = tmp_path / "log.csv"
        logger = CSVLogger(path)
        _model().fit_generator(_batches(1), epochs=2, verbose=False, callbacks=[logger])
        assert list(csv.reader(io.StringIO(logger.text()))) == _read(path)

    def test_a_regular_file_on_the_path_fails_before_the_first_step(self, tmp_path):
        """A log file under an existing regular file is a StorageError at train begin that
        names the callback, the file and what was expected; the file is unchanged."""
        from epochal.exceptions import StorageError

        (tmp_path / "run").write_bytes(b"user data")
        steps: list[int] = []
        counter = LambdaCallback(on_train_batch_end=lambda n, logs: steps.append(n))
        with pytest.raises(StorageError) as info:
            _model().fit_generator(_batches(2), epochs=1, verbose=False,
                                   callbacks=[counter, CSVLogger(tmp_path / "run" / "log.csv")])
        message = str(info.value)
        assert "CSVLogger's filename" in message
        assert f"{tmp_path / 'run'} is an existing regular file" in message
        assert "Expected a directory path" in message
        assert steps == [] and (tmp_path / "run").read_bytes() == b"user data"


class _RecordingWriter:
    """A SummaryWriter stand-in recording its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def add_scalar(self, tag, value, step):
        self.calls.append(("add_scalar", tag, value, step))

    def add_scalars(self, main_tag, values, step):
        self.calls.append(("add_scalars", main_tag, dict(values), step))

    def flush(self):
        self.calls.append(("flush",))

    def close(self):
        self.calls.append(("close",))


class TestTensorBoardLogger:
    def test_train_and_valid_share_a_graph_by_default(self):
        """Without split_train_val each metric and its val_ value go to one add_scalars
        call, the learning rate to add_scalars('lr', ...), and the writer is closed at the
        end."""
        writer = _RecordingWriter()
        history = _model().fit_generator(_batches(2), _batches(1), epochs=2, verbose=False,
                                         callbacks=[TensorBoardLogger(writer)])
        at_2 = {c[1]: c[2] for c in writer.calls if c[0] == "add_scalars" and c[3] == 2}
        assert at_2["loss"] == {"loss": history[1]["loss"], "val_loss": history[1]["val_loss"]}
        assert set(at_2["acc"]) == {"acc", "val_acc"}
        assert at_2["lr"] == {"lr": 0.01}
        assert writer.calls[-1] == ("close",)

    def test_split_train_val_writes_event_files_per_key(self, tmp_path):
        """With split_train_val, each key (lr included) is its own scalar in the event file,
        one point per epoch; a log directory is accepted in place of a writer."""
        pytest.importorskip("tensorboard", reason="TensorBoardLogger needs the tensorboard extra")
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        history = _model().fit_generator(
            _batches(2), _batches(1), epochs=3, verbose=False,
            callbacks=[TensorBoardLogger(str(tmp_path), split_train_val=True)])
        events = EventAccumulator(str(tmp_path))
        events.Reload()
        tags = set(events.Tags()["scalars"])
        assert {"loss", "val_loss", "acc", "val_acc", "lr"} <= tags
        losses = events.Scalars("val_loss")
        assert [e.step for e in losses] == [1, 2, 3]
        assert losses[2].value == pytest.approx(history[2]["val_loss"], rel=1e-6)


class TestStructlogLogger:
    def test_one_event_per_epoch_with_the_logs(self):
        """Each epoch logs one 'epoch_end' event carrying the epoch's logs."""
        with capture_logs() as events:
            history = _model().fit_generator(_batches(2), _batches(1), epochs=2,
                                             verbose=False, callbacks=[StructlogLogger()])
        assert [e["event"] for e in events] == ["epoch_end", "epoch_end"]
        assert events[1]["epoch"] == 2 and events[1]["val_loss"] == history[1]["val_loss"]
        assert events[0]["log_level"] == "info" and events[0]["complete"] is True

    def test_injected_logger_and_event_name(self):
        """An injected logger receives the events under the chosen name."""

        class ListLogger:
            def __init__(self):
                self.events = []

            def info(self, event, /, **key_values):
                self.events.append((event, key_values))

        logger = ListLogger()
        _model().fit_generator(_batches(1), epochs=1, verbose=False,
                               callbacks=[StructlogLogger(logger, event="epoch")])
        assert logger.events[0][0] == "epoch" and logger.events[0][1]["epoch"] == 1
