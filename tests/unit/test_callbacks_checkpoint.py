"""Checkpoint callbacks: ModelCheckpoint, OptimizerCheckpoint, LRSchedulerCheckpoint,
RandomStatesCheckpoint, the random-state helpers and BestModelRestore.

Real fits use a tiny ``nn.Linear`` on synthetic data, with a batch metric ``score`` whose
value in epoch ``e`` is ``values[e - 1]`` (so ``val_score`` follows a prescribed sequence while
the weights still change every epoch). Properties drive the hooks directly with a fake model
whose weights are stamped with the epoch number.
"""

from __future__ import annotations

import math
import random
import uuid
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from epochal import Callback, Model
from epochal._io import load_torch
from epochal.callbacks.checkpoint import (
    BestModelRestore,
    LRSchedulerCheckpoint,
    ModelCheckpoint,
    OptimizerCheckpoint,
    RandomStatesCheckpoint,
    get_random_states,
    set_random_states,
)
from epochal.callbacks.stopping import EarlyStopping, TerminateOnNaN
from epochal.exceptions import ConfigurationError, MonitorKeyError
from epochal_adapters.storage import FsspecCheckpointStore

# ---------------------------------------------------------------------- helpers


class _EpochClock(Callback):
    """Tells the scripted metric which epoch runs (must come first in the callback list)."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 1

    def on_epoch_begin(self, epoch_number: int, logs: dict[str, Any]) -> None:
        self.epoch = epoch_number


class _WeightsByEpoch(Callback):
    """Keeps a CPU copy of the weights at each epoch's end, and counts training batches."""

    def __init__(self) -> None:
        super().__init__()
        self.weights: dict[int, dict[str, torch.Tensor]] = {}
        self.batches = 0

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        self.batches += 1

    def on_epoch_end(self, epoch_number: int, logs: dict[str, Any]) -> None:
        self.weights[epoch_number] = self.model.get_weight_copies()


class _NanLossAt:
    """MSE whose training call number ``n`` (1-based) and later return NaN."""

    def __init__(self, network: nn.Module, n: int | None) -> None:
        self.network, self.n, self.calls = network, n, 0

    def __call__(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.mse_loss(y_pred, y_true)
        if self.network.training:
            self.calls += 1
            if self.n is not None and self.calls >= self.n:
                return loss * float("nan")
        return loss


def _scripted_fit(
    values: list[float],
    callbacks: list[Callback],
    *,
    epochs: int | None = None,
    nan_at_call: int | None = None,
    validation: bool = True,
    initial_epoch: int = 1,
    seed: int = 0,
    optimizer: str = "sgd",
) -> tuple[Model, list[dict[str, Any]], _WeightsByEpoch]:
    """Fit a tiny regression for ``epochs`` (default ``len(values)``) epochs of 2 batches;
    ``val_score`` of epoch e is ``values[e - 1]``."""
    torch.manual_seed(seed)
    network = nn.Linear(2, 1)
    clock = _EpochClock()
    recorder = _WeightsByEpoch()

    def score(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return torch.tensor(values[clock.epoch - 1], dtype=torch.float64)

    opt: Any = (torch.optim.SGD(network.parameters(), lr=0.05) if optimizer == "sgd"
                else torch.optim.Adam(network.parameters(), lr=0.01))
    model = Model(network, opt, _NanLossAt(network, nan_at_call), batch_metrics=[("score", score)])
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 2, generator=g), torch.randn(8, 1, generator=g)
    train = [(x[:4], y[:4]), (x[4:], y[4:])]
    valid = [(x, y)] if validation else None
    history = model.fit_generator(
        train, valid, epochs=epochs or len(values), initial_epoch=initial_epoch, verbose=False,
        callbacks=[clock, *callbacks, recorder],
    )
    return model, history, recorder


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _memory_url() -> str:
    return f"memory://epochal-tests/{uuid.uuid4().hex}"


class _FakeModel:
    """Just what the callbacks use: a network, the log keys, the completion flag."""

    def __init__(self, keys: tuple[str, ...] = ("epoch", "time", "loss", "val_loss")) -> None:
        self.network = nn.Linear(1, 1, bias=False)
        self.optimizer = None
        self.epoch_log_keys = keys
        self.epoch_complete = True
        self.stop_training = False

    def stamp(self, epoch: int) -> None:
        with torch.no_grad():
            self.network.weight.fill_(float(epoch))

    def get_weight_copies(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}

    def set_weights(self, weights: dict[str, torch.Tensor]) -> None:
        self.network.load_state_dict(weights)


def _drive(callback: Callback, model: _FakeModel, values: list[float], first_epoch: int = 1,
           *, begin: bool = True) -> None:
    """Run ``callback``'s epoch-end hook over ``values`` (epoch ``first_epoch``, ...)."""
    callback.set_model(model)  # type: ignore[arg-type]
    if begin:
        callback.on_train_begin({})
    for i, value in enumerate(values):
        epoch = first_epoch + i
        model.stamp(epoch)
        callback.on_epoch_end(epoch, {"epoch": epoch, "loss": 1.0, "val_loss": value})


def _direct_best_epoch(values: list[float], mode: str) -> int | None:
    """Index (1-based) of the first strict best among the non-NaN values, written out."""
    best_i = None
    for i, v in enumerate(values, start=1):
        if math.isnan(v):
            continue
        if best_i is None or (v < values[best_i - 1] if mode == "min" else v > values[best_i - 1]):
            best_i = i
    return best_i


_metric_values = st.lists(
    st.one_of(
        st.sampled_from([0.0, 1.0, 2.0, 3.0]),  # ties are frequent
        st.floats(-10, 10, allow_nan=False),
        st.just(math.nan),
    ),
    min_size=1,
    max_size=12,
)

SEQUENCE = [3.0, 2.0, 2.5, 1.0, 4.0]  # best (min) at epoch 4


# ---------------------------------------------------------------------- ModelCheckpoint


class TestModelCheckpoint:
    def test_saves_last_epoch_weights_at_a_plain_path(self, tmp_path):
        """A plain filename is rewritten every epoch and holds the last epoch's weights."""
        path = tmp_path / "saves" / "last_epoch.ckpt"
        model, _, rec = _scripted_fit(SEQUENCE, [ModelCheckpoint(str(path))])
        assert _same_weights(load_torch(str(path)), rec.weights[5])
        assert _same_weights(load_torch(str(path)), model.get_weight_copies())

    def test_filename_template_with_format_specs(self, tmp_path):
        """'{epoch:02d}' and '{val_loss:.3f}' in the filename are formatted from each epoch's logs."""
        template = str(tmp_path / "w.{epoch:02d}-{val_loss:.3f}.ckpt")
        _, history, rec = _scripted_fit(SEQUENCE[:3], [ModelCheckpoint(template)])
        expected = {f"w.{h['epoch']:02d}-{h['val_loss']:.3f}.ckpt" for h in history}
        assert {p.name for p in tmp_path.iterdir()} == expected
        first = tmp_path / f"w.01-{history[0]['val_loss']:.3f}.ckpt"
        assert _same_weights(load_torch(str(first)), rec.weights[1])

    def test_period_saves_every_nth_epoch(self, tmp_path):
        """period=2 over 5 epochs writes the files of epochs 2 and 4 only."""
        callback = ModelCheckpoint(str(tmp_path / "e{epoch}.ckpt"), period=2)
        _scripted_fit(SEQUENCE, [callback])
        assert sorted(p.name for p in tmp_path.iterdir()) == ["e2.ckpt", "e4.ckpt"]
        assert callback.saved_files == [str(tmp_path / "e2.ckpt"), str(tmp_path / "e4.ckpt")]

    def test_save_best_only_saves_on_improvement_only(self, tmp_path):
        """save_best_only writes a file exactly at the epochs whose value improves (1, 2, 4)."""
        callback = ModelCheckpoint(str(tmp_path / "best_{epoch}.ckpt"), monitor="val_score",
                                   save_best_only=True)
        _scripted_fit(SEQUENCE, [callback])
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "best_1.ckpt", "best_2.ckpt", "best_4.ckpt"]
        assert callback.best_epoch == 4 and callback.current_best == 1.0

    @pytest.mark.parametrize(("mode", "before"), [("min", math.inf), ("max", -math.inf)])
    def test_current_best_before_the_first_epoch_is_poutynes(self, tmp_path, mode, before):
        """With save_best_only, current_best starts at +-inf as Poutyne's; without it there is
        no best (None)."""
        best = ModelCheckpoint(str(tmp_path / "b.ckpt"), monitor="val_loss", mode=mode,
                               save_best_only=True)
        assert best.current_best == before
        assert ModelCheckpoint(str(tmp_path / "e.ckpt")).current_best is None

    def test_keep_only_last_best_leaves_exactly_one_best_file(self, tmp_path):
        """keep_only_last_best deletes each superseded best: only the best epoch's file remains."""
        callback = ModelCheckpoint(str(tmp_path / "best_{epoch}.ckpt"), monitor="val_score",
                                   save_best_only=True, keep_only_last_best=True)
        _, _, rec = _scripted_fit(SEQUENCE, [callback])
        assert [p.name for p in tmp_path.iterdir()] == ["best_4.ckpt"]
        assert _same_weights(load_torch(str(tmp_path / "best_4.ckpt")), rec.weights[4])
        assert callback.saved_files == [str(tmp_path / "best_4.ckpt")]

    def test_mode_max_keeps_the_largest(self, tmp_path):
        """mode='max' keeps the epoch with the largest value (epoch 5 here)."""
        callback = ModelCheckpoint(str(tmp_path / "best_{epoch}.ckpt"), monitor="val_score",
                                   mode="max", save_best_only=True, keep_only_last_best=True)
        _scripted_fit(SEQUENCE, [callback])
        assert [p.name for p in tmp_path.iterdir()] == ["best_5.ckpt"]

    def test_restore_best_when_training_reaches_max_epochs(self, tmp_path):
        """restore_best loads the best epoch's weights back after the last epoch."""
        callback = ModelCheckpoint(str(tmp_path / "best.ckpt"), monitor="val_score",
                                   save_best_only=True, restore_best=True)
        model, _, rec = _scripted_fit(SEQUENCE, [callback])
        assert not _same_weights(rec.weights[5], rec.weights[4])
        assert _same_weights(model.get_weight_copies(), rec.weights[4])

    def test_restore_best_after_early_stop(self, tmp_path):
        """After EarlyStopping ends training, restore_best puts the best epoch's weights back."""
        values = [3.0, 1.0, 2.0, 2.0, 2.0, 0.5]
        callback = ModelCheckpoint(str(tmp_path / "best.ckpt"), monitor="val_score",
                                   save_best_only=True, restore_best=True)
        model, history, rec = _scripted_fit(
            values, [EarlyStopping(monitor="val_score", patience=2), callback])
        assert len(history) == 4
        assert _same_weights(model.get_weight_copies(), rec.weights[2])

    def test_verbose_messages(self, tmp_path, capsys):
        """verbose prints Poutyne's 'improved from ... saving file' and 'Restoring data' lines."""
        path = str(tmp_path / "best_epoch_{epoch}.ckpt")
        callback = ModelCheckpoint(path, monitor="val_score", mode="max", save_best_only=True,
                                   restore_best=True, verbose=True)
        _scripted_fit([94.12, 95.33, 90.0], [callback])
        out = capsys.readouterr().out
        best = path.format(epoch=2)
        assert "Epoch 1: val_score improved from -inf to 94.12000" in out
        assert f"Epoch 2: val_score improved from 94.12000 to 95.33000, saving file to {best}" in out
        assert f"Restoring data from {best}" in out

    def test_saves_to_memory_urls(self):
        """A memory:// template is written through fsspec; the best file loads back."""
        base = _memory_url()
        callback = ModelCheckpoint(f"{base}/run/best_{{epoch}}.ckpt", monitor="val_score",
                                   save_best_only=True, keep_only_last_best=True,
                                   restore_best=True)
        model, _, rec = _scripted_fit(SEQUENCE, [callback])
        assert FsspecCheckpointStore(base).names() == ["run/best_4.ckpt"]
        assert _same_weights(load_torch(f"{base}/run/best_4.ckpt"), rec.weights[4])
        assert _same_weights(model.get_weight_copies(), rec.weights[4])

    def test_nan_weights_never_overwrite_a_good_checkpoint(self, tmp_path):
        """When the loss turns NaN (weights become NaN), the last good file stays, with a warning."""
        path = str(tmp_path / "last.ckpt")
        # 2 training batches per epoch: call 5 is epoch 3's first batch; training goes on.
        with pytest.warns(RuntimeWarning, match="NaN or inf"):
            model, history, rec = _scripted_fit(SEQUENCE, [ModelCheckpoint(path)], nan_at_call=5)
        assert len(history) == 5 and math.isnan(history[-1]["loss"])
        assert not torch.isfinite(model.network.weight).all()
        saved = load_torch(path)
        assert all(torch.isfinite(t).all() for t in saved.values())
        assert _same_weights(saved, rec.weights[2])

    def test_restore_after_terminate_on_nan(self, tmp_path):
        """TerminateOnNaN then restore_best: the network ends with the best finite weights."""
        values = [3.0, 1.0, 2.0, 2.0, 2.0]
        last = str(tmp_path / "last.ckpt")
        best = ModelCheckpoint(str(tmp_path / "best.ckpt"), monitor="val_score",
                               save_best_only=True, restore_best=True)
        with pytest.warns(RuntimeWarning, match="NaN or inf"):
            model, history, rec = _scripted_fit(
                values, [TerminateOnNaN(), ModelCheckpoint(last), best], nan_at_call=6)
        assert len(history) == 3 and "val_score" not in history[-1]
        assert rec.batches == 6
        assert _same_weights(model.get_weight_copies(), rec.weights[2])
        assert _same_weights(load_torch(last), rec.weights[2])

    def test_cut_short_epoch_is_never_best(self):
        """An epoch a stop request cut short is not considered for best, even if monitored."""
        model = _FakeModel()
        callback = ModelCheckpoint(f"{_memory_url()}/b_{{epoch}}.ckpt", monitor="loss",
                                   save_best_only=True)
        _drive(callback, model, [1.0])
        model.epoch_complete = False
        callback.on_epoch_end(2, {"epoch": 2, "loss": 0.1})
        assert callback.best_epoch == 1

    def test_cut_short_epoch_without_templated_key_warns_and_skips(self):
        """A periodic save whose template needs val_loss is skipped for a cut-short epoch."""
        model = _FakeModel()
        callback = ModelCheckpoint(f"{_memory_url()}/e{{epoch}}-{{val_loss}}.ckpt")
        callback.set_model(model)  # type: ignore[arg-type]
        callback.on_train_begin({})
        model.epoch_complete = False
        with pytest.warns(RuntimeWarning, match="cut the epoch short"):
            callback.on_epoch_end(1, {"epoch": 1, "loss": 0.1})
        assert callback.saved_files == []

    def test_unknown_monitor_fails_before_the_first_batch(self, tmp_path):
        """A monitor never logged is a MonitorKeyError at train begin, before any batch runs."""
        recorder = _WeightsByEpoch()
        callback = ModelCheckpoint(str(tmp_path / "b.ckpt"), monitor="val_scor",
                                   save_best_only=True)
        with pytest.raises(MonitorKeyError) as info:
            _scripted_fit(SEQUENCE, [recorder, callback])
        message = str(info.value)
        assert "ModelCheckpoint monitors 'val_scor', which this training will never log" in message
        assert "Logged keys: epoch, time, loss, score, val_loss, val_score." in message
        assert "Did you mean 'val_score'?" in message
        assert recorder.batches == 0 and not list(tmp_path.iterdir())

    def test_val_monitor_without_validation_says_validation_is_missing(self, tmp_path):
        """Monitoring val_* without validation data names the missing validation data."""
        callback = ModelCheckpoint(str(tmp_path / "b.ckpt"), monitor="val_score",
                                   save_best_only=True)
        with pytest.raises(MonitorKeyError, match=r"no validation data.*'score'"):
            _scripted_fit(SEQUENCE, [callback], validation=False)

    def test_template_key_never_logged_fails_at_train_begin(self, tmp_path):
        """A filename formatting a key that will never be logged fails before the first epoch."""
        callback = ModelCheckpoint(str(tmp_path / "w-{val_acc:.2f}.ckpt"))
        with pytest.raises(MonitorKeyError, match=r"formats 'val_acc'.*Did you mean"):
            _scripted_fit(SEQUENCE, [callback])

    def test_template_spec_that_does_not_fit_fails_at_train_begin(self, tmp_path):
        """An int format spec on a float key is a ConfigurationError before the first epoch."""
        with pytest.raises(ConfigurationError, match="cannot be formatted"):
            _scripted_fit(SEQUENCE, [ModelCheckpoint(str(tmp_path / "w-{val_loss:02d}.ckpt"))])

    def test_monitor_without_save_best_only_is_not_required(self, tmp_path):
        """A plain last-epoch checkpoint trains without validation (its monitor is unused)."""
        _scripted_fit(SEQUENCE[:2], [ModelCheckpoint(str(tmp_path / "l.ckpt"))],
                      validation=False)
        assert (tmp_path / "l.ckpt").exists()

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"mode": "avg"}, "mode must be"),
            ({"period": 0}, "period must be"),
            ({"keep_only_last_best": True}, "keep_only_last_best"),
            ({"restore_best": True}, "restore_best"),
            ({"monitor": "saves/val_loss", "save_best_only": True}, "path separator"),
        ],
    )
    def test_bad_configuration_fails_at_construction(self, kwargs, match):
        """Bad mode, period < 1, best-only options without save_best_only, a path as monitor."""
        with pytest.raises(ConfigurationError, match=match):
            ModelCheckpoint("x.ckpt", **kwargs)

    def test_positional_template_field_is_refused(self):
        """A '{}' field in the filename is a ConfigurationError naming log keys instead."""
        with pytest.raises(ConfigurationError, match="positional"):
            ModelCheckpoint("w{}.ckpt")

    def test_state_dict_round_trip_continues_identically(self, tmp_path):
        """A fresh callback loaded with the state after epoch 3 ends like an uninterrupted one."""
        values = [3.0, 2.0, 2.5, 1.0, 2.0, 0.5, 0.7]
        whole = ModelCheckpoint(str(tmp_path / "a" / "b{epoch}.ckpt"), monitor="val_score",
                                save_best_only=True, keep_only_last_best=True)
        _scripted_fit(values, [whole])
        first = ModelCheckpoint(str(tmp_path / "b" / "b{epoch}.ckpt"), monitor="val_score",
                                save_best_only=True, keep_only_last_best=True)
        _scripted_fit(values, [first], epochs=3)
        state = first.state_dict()
        assert state["monitor_state"] == {"best": 2.0, "best_epoch": 2, "wait": 1}
        second = ModelCheckpoint(str(tmp_path / "b" / "b{epoch}.ckpt"), monitor="val_score",
                                 save_best_only=True, keep_only_last_best=True)
        second.load_state_dict(state)
        _scripted_fit(values, [second], initial_epoch=4, epochs=len(values))
        assert second.state_dict()["monitor_state"] == whole.state_dict()["monitor_state"]
        assert [p.name for p in (tmp_path / "b").iterdir()] == ["b6.ckpt"]
        assert [p.name for p in (tmp_path / "a").iterdir()] == ["b6.ckpt"]

    def test_load_state_of_another_monitor_is_refused(self):
        """Loading a state saved for another monitor is a ConfigurationError."""
        state = ModelCheckpoint("x.ckpt", monitor="val_acc", mode="max").state_dict()
        with pytest.raises(ConfigurationError, match="monitoring 'val_acc'"):
            ModelCheckpoint("x.ckpt").load_state_dict(state)

    @given(values=_metric_values, mode=st.sampled_from(["min", "max"]))
    def test_property_best_only_keeps_the_first_argbest_epoch(self, values, mode):
        """With keep_only_last_best, the one file left is the first arg-min/arg-max epoch's."""
        base = _memory_url()
        callback = ModelCheckpoint(f"{base}/best_{{epoch}}.ckpt", mode=mode,
                                   save_best_only=True, keep_only_last_best=True)
        _drive(callback, _FakeModel(), values)
        expected = _direct_best_epoch(values, mode)
        names = FsspecCheckpointStore(base).names()
        if expected is None:
            assert names == []
        else:
            assert names == [f"best_{expected}.ckpt"]
            assert load_torch(f"{base}/best_{expected}.ckpt")["weight"].item() == expected

    @given(values=_metric_values, data=st.data())
    def test_property_state_round_trip_mid_sequence_gives_identical_decisions(self, values, data):
        """Stopping after any epoch and loading the state into a fresh callback changes nothing."""
        split = data.draw(st.integers(0, len(values)))
        base_a, base_b = _memory_url(), _memory_url()

        def make(base: str) -> ModelCheckpoint:
            return ModelCheckpoint(f"{base}/b{{epoch}}.ckpt", save_best_only=True,
                                   keep_only_last_best=True)

        whole = make(base_a)
        _drive(whole, _FakeModel(), values)
        first = make(base_b)
        _drive(first, _FakeModel(), values[:split])
        second = make(base_b)
        second.load_state_dict(first.state_dict())
        _drive(second, _FakeModel(), values[split:], first_epoch=split + 1)
        assert FsspecCheckpointStore(base_a).names() == FsspecCheckpointStore(base_b).names()
        state_a, state_b = whole.state_dict(), second.state_dict()
        assert state_a["monitor_state"] == state_b["monitor_state"]
        assert (state_a["best_filename"] or "").replace(base_a, "") == (
            state_b["best_filename"] or "").replace(base_b, "")


# ---------------------------------------------------------------------- other checkpoints


class TestOptimizerCheckpoint:
    def test_saves_the_optimizer_state(self, tmp_path):
        """The file holds the optimizer's state_dict after the epoch (Adam moments included)."""
        path = str(tmp_path / "optim.ckpt")
        model, _, _ = _scripted_fit(SEQUENCE[:2], [OptimizerCheckpoint(path)], optimizer="adam")
        saved = load_torch(path)
        current = model.optimizer.state_dict()
        assert saved["param_groups"] == current["param_groups"]
        for key, state in current["state"].items():
            assert torch.equal(saved["state"][key]["exp_avg"], state["exp_avg"])
        model.load_optimizer_state(path)

    def test_best_only_follows_the_monitor(self, tmp_path):
        """With save_best_only it writes at improving epochs, like ModelCheckpoint."""
        callback = OptimizerCheckpoint(str(tmp_path / "o{epoch}.ckpt"), monitor="val_score",
                                       save_best_only=True, keep_only_last_best=True)
        _scripted_fit(SEQUENCE, [callback])
        assert [p.name for p in tmp_path.iterdir()] == ["o4.ckpt"]


class TestLRSchedulerCheckpoint:
    def test_drives_the_scheduler_it_wraps_and_saves_its_state(self, tmp_path):
        """Passed alone to fit, it steps the wrapped scheduler each epoch and saves the state
        after that step (Poutyne: the scheduler is not passed to fit)."""
        from epochal.callbacks.lr_scheduler import StepLR

        scheduler = StepLR(step_size=1, gamma=0.5)
        checkpoint = LRSchedulerCheckpoint(scheduler, str(tmp_path / "s{epoch}.ckpt"))
        model, _history, _ = _scripted_fit([1.0, 1.0, 1.0], [checkpoint])
        assert model.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 0.5**3)
        assert [load_torch(str(tmp_path / f"s{e}.ckpt"))["last_epoch"] for e in (1, 2, 3)] == [
            1, 2, 3]

    def test_restore_best_loads_the_best_epochs_scheduler_state(self, tmp_path):
        """With save_best_only and restore_best, the scheduler ends in the best epoch's
        state."""
        from epochal.callbacks.lr_scheduler import StepLR

        scheduler = StepLR(step_size=1, gamma=0.5)
        checkpoint = LRSchedulerCheckpoint(scheduler, str(tmp_path / "s.ckpt"),
                                           monitor="val_score", save_best_only=True,
                                           restore_best=True)
        _scripted_fit([3.0, 1.0, 2.0], [checkpoint])
        assert scheduler.state_dict()["last_epoch"] == 2

    def test_a_raw_torch_scheduler_is_a_clear_error(self, tmp_path):
        """A torch scheduler object (not a scheduler callback) is refused at construction."""
        optimizer = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
        raw = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
        with pytest.raises(ConfigurationError, match="scheduler callback"):
            LRSchedulerCheckpoint(raw, str(tmp_path / "s.ckpt"))


class TestRandomStates:
    def _draws(self) -> tuple[list[float], list[float], list[float]]:
        return ([random.random() for _ in range(3)] + [random.gauss(0, 1)],
                [*np.random.rand(3).tolist(), float(np.random.randn())],
                torch.rand(3).tolist() + torch.randn(1).tolist())

    def test_round_trip_restores_identical_draws(self, tmp_path):
        """States saved by RandomStatesCheckpoint and set back give the same draws everywhere."""
        random.gauss(0, 1)  # leave a cached gaussian in Python's state
        np.random.randn()
        path = str(tmp_path / "rng.ckpt")
        callback = RandomStatesCheckpoint(path)
        _drive(callback, _FakeModel(), [1.0])
        expected = self._draws()
        self._draws()
        loaded = torch.load(path, weights_only=True)
        set_random_states(loaded)
        assert self._draws() == expected

    def test_get_and_set_random_states_round_trip(self):
        """set_random_states(get_random_states()) rewinds random, numpy and torch."""
        states = get_random_states()
        expected = self._draws()
        set_random_states(states)
        assert self._draws() == expected
        assert set(states) >= {"python", "numpy", "torch"}


class TestBestModelRestore:
    @pytest.mark.parametrize(("mode", "values", "expected"), [
        ("min", [3.0, 1.0, 2.0], [3.0, 1.0, 1.0]),
        ("max", [1.0, 3.0, 2.0], [1.0, 3.0, 3.0]),
    ])
    def test_current_best_as_poutyne(self, mode, values, expected):
        """current_best is Poutyne's: +-inf before the first epoch, then the best value."""
        callback = BestModelRestore(mode=mode)
        assert callback.current_best == (math.inf if mode == "min" else -math.inf)
        model = _FakeModel()
        callback.set_model(model)  # type: ignore[arg-type]
        seen = []
        for epoch, value in enumerate(values, start=1):
            model.stamp(epoch)
            callback.on_epoch_end(epoch, {"epoch": epoch, "loss": 1.0, "val_loss": value})
            seen.append(callback.current_best)
        assert seen == expected and callback.best == expected[-1]

    def test_current_best_can_be_set_as_a_threshold(self):
        """Setting current_best (as Poutyne code may) makes later epochs beat that value."""
        callback = BestModelRestore()
        callback.current_best = 1.0
        _drive(callback, _FakeModel(), [2.0, 0.5])
        assert callback.current_best == 0.5 and callback.best_epoch == 2
        callback.current_best = math.inf
        assert callback.best is None

    def test_restores_best_when_training_reaches_max_epochs(self):
        """After the last epoch the network holds the best epoch's weights."""
        model, _, rec = _scripted_fit(SEQUENCE, [BestModelRestore(monitor="val_score")])
        assert _same_weights(model.get_weight_copies(), rec.weights[4])

    def test_restores_best_after_early_stop(self):
        """After an early stop the network holds the best epoch's weights."""
        values = [3.0, 1.0, 2.0, 2.0, 0.0]
        model, history, rec = _scripted_fit(
            values, [EarlyStopping(monitor="val_score", patience=1),
                     BestModelRestore(monitor="val_score", verbose=True)])
        assert len(history) == 3
        assert _same_weights(model.get_weight_copies(), rec.weights[2])

    def test_restores_best_after_terminate_on_nan(self):
        """After TerminateOnNaN the network holds the best (finite) epoch's weights."""
        model, history, rec = _scripted_fit(
            SEQUENCE, [TerminateOnNaN(), BestModelRestore(monitor="val_score")], nan_at_call=3)
        assert len(history) == 2 and rec.batches == 3  # NaN at epoch 2's first batch
        assert _same_weights(model.get_weight_copies(), rec.weights[1])

    def test_unknown_monitor_fails_before_the_first_batch(self):
        """A monitor never logged is a MonitorKeyError before any batch runs."""
        recorder = _WeightsByEpoch()
        with pytest.raises(MonitorKeyError, match="BestModelRestore monitors 'val_acc'"):
            _scripted_fit(SEQUENCE, [recorder, BestModelRestore(monitor="val_acc")])
        assert recorder.batches == 0

    def test_state_round_trip_keeps_the_best(self):
        """A loaded state keeps best value, epoch and wait; without weights it warns at end."""
        first = BestModelRestore()
        _drive(first, _FakeModel(), [2.0, 1.0, 3.0])
        second = BestModelRestore()
        second.load_state_dict(first.state_dict())
        assert (second.best, second.best_epoch) == (1.0, 2)
        model = _FakeModel()
        _drive(second, model, [1.5], first_epoch=4, begin=False)
        with pytest.warns(RuntimeWarning, match="predates a state load"):
            second.on_train_end({})
        _drive(second, model, [0.5], first_epoch=5, begin=False)
        model.stamp(9)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            second.on_train_end({})
        assert model.network.weight.item() == 5.0
