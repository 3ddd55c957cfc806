"""Realistic Poutyne 1.19 user scripts run twice, once with ``poutyne`` and once with ``epochal``.

Each script is written the way Poutyne's documentation shows it and takes the package as a
parameter, so the only difference between the two runs is the import line. A script returns
what a user observes: the history, the logs its callbacks saw (keys, values, types), the files
it wrote (CSV header and rows) and what evaluate/predict returned. The test compares the two
observations: same keys, same types (int stays int, float stays float), same numbers within
1e-5, except wall-clock times, which are only checked to exist.

The module is skipped when poutyne is not importable.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

poutyne = pytest.importorskip("poutyne", reason="poutyne is not installed: nothing to compare to")
import epochal  # noqa: E402

TOLERANCE = 1e-5
# Keys whose values are wall-clock measurements: they must exist, their values differ per run.
TIME_KEYS = {"time"}


# --------------------------------------------------------------------------------------------
# Data and networks
# --------------------------------------------------------------------------------------------


def _classification(n: int = 64, features: int = 6, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def _regression(n: int = 48, features: int = 5, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = x @ torch.randn(features, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def _classifier(features: int = 6, classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Linear(features, 8), nn.ReLU(), nn.Linear(8, classes))


class _TwoInputs(nn.Module):
    """A network fed a tuple of two tensors, as in Poutyne's multi-input examples."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Linear(4, 6)
        self.right = nn.Linear(3, 6)
        self.head = nn.Linear(12, 2)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([torch.relu(self.left(left)), torch.relu(self.right(right))], 1))


def _recorder(pkg: types.ModuleType, seen: list) -> Any:
    """A user's Callback subclass that writes down every log dict and self.params it sees."""

    class Recorder(pkg.Callback):
        def on_train_begin(self, logs):
            seen.append(("train_begin", _describe(logs), _describe(dict(self.params))))

        def on_epoch_begin(self, epoch_number, logs):
            seen.append(("epoch_begin", epoch_number, _describe(logs)))

        def on_train_batch_end(self, batch_number, logs):
            seen.append(("train_batch_end", batch_number, _describe(logs)))

        def on_epoch_end(self, epoch_number, logs):
            seen.append(("epoch_end", epoch_number, _describe(logs)))

        def on_train_end(self, logs):
            seen.append(("train_end", _describe(logs)))

    return Recorder()


def _is_lr_key(key: Any) -> bool:
    """``lr`` / ``lr_group_<i>``: epochal adds them to every epoch log on purpose
    (docs/differences.md, "Learning rate in the logs"); Poutyne logs them in no dict."""
    return isinstance(key, str) and (key == "lr" or key.startswith("lr_group_"))


def _type_name(value: Any) -> str:
    """The value's type, with numpy floats (a float subclass; Poutyne's batch metric values
    and their epoch means are numpy.float64) reported as float."""
    return "float" if isinstance(value, np.floating) else type(value).__name__


def _describe(logs: dict) -> dict:
    """Keys, value types and values of a log dict (copied: callbacks may mutate later)."""
    return {key: (_type_name(value), _plain(value)) for key, value in logs.items()
            if not _is_lr_key(key)}


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.detach().double().numpy().copy())
    if isinstance(value, np.ndarray):
        return ("ndarray", value.shape, str(value.dtype), value.astype(np.float64).copy())
    if isinstance(value, np.floating):
        # Poutyne's history holds numpy floats (a float subclass) where epochal holds floats.
        return float(value)
    if isinstance(value, np.generic):
        return ("np." + type(value).__name__, value.item())
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_plain(v) for v in value])
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not _is_lr_key(k)}
    return value


def _read_csv(path: Path, delimiter: str = ",") -> list[list[str]]:
    with open(path, newline="") as handle:
        return [row for row in csv.reader(handle, delimiter=delimiter)]


# --------------------------------------------------------------------------------------------
# The scripts
# --------------------------------------------------------------------------------------------


def script_fit_strings(pkg: types.ModuleType, workdir: Path) -> dict:
    """Model('sgd', 'cross_entropy', accuracy + f1) .fit on tensors with validation data."""
    pkg.set_seeds(42)
    x, y = _classification()
    seen: list = []
    model = pkg.Model(_classifier(), "sgd", "cross_entropy",
                      batch_metrics=["accuracy"], epoch_metrics=["f1"])
    history = model.fit(x[:48], y[:48], validation_data=(x[48:], y[48:]), epochs=3,
                        batch_size=16, callbacks=[_recorder(pkg, seen)], verbose=False)
    return {"history": _plain(history), "seen": seen}


def script_fit_generator_adam(pkg: types.ModuleType, workdir: Path) -> dict:
    """An optimizer object and DataLoaders through fit_generator, then evaluate_generator."""
    pkg.set_seeds(7)
    x, y = _classification(seed=3)
    network = _classifier()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    train = DataLoader(TensorDataset(x[:48], y[:48]), batch_size=16, shuffle=True)
    valid = DataLoader(TensorDataset(x[48:], y[48:]), batch_size=8)
    model = pkg.Model(network, optimizer, nn.CrossEntropyLoss(), batch_metrics=["acc"])
    history = model.fit_generator(train, valid, epochs=3, verbose=False)
    loss_and_metrics = model.evaluate_generator(valid, verbose=False)
    return {"history": _plain(history), "evaluate": _plain(loss_and_metrics)}


def script_fit_dataset(pkg: types.ModuleType, workdir: Path) -> dict:
    """fit_dataset and evaluate_dataset on TensorDatasets, with steps_per_epoch."""
    pkg.set_seeds(11)
    x, y = _classification(n=80)
    model = pkg.Model(_classifier(), "adam", "cross_entropy", batch_metrics=["accuracy"],
                      epoch_metrics=["f1"])
    history = model.fit_dataset(TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:]),
                                epochs=2, batch_size=16, steps_per_epoch=3, verbose=False)
    result = model.evaluate_dataset(TensorDataset(x[64:], y[64:]), batch_size=8, verbose=False)
    return {"history": _plain(history), "evaluate": _plain(result)}


def script_evaluate_returns(pkg: types.ModuleType, workdir: Path) -> dict:
    """evaluate with return_pred, return_ground_truth, return_dict_format in combinations."""
    pkg.set_seeds(5)
    x, y = _classification()
    model = pkg.Model(_classifier(), "sgd", "cross_entropy", batch_metrics=["accuracy"],
                      epoch_metrics=["f1"])
    out: dict = {}
    out["plain"] = _plain(model.evaluate(x, y, batch_size=20, verbose=False))
    out["pred"] = _plain(model.evaluate(x, y, batch_size=20, return_pred=True, verbose=False))
    out["tensors"] = _plain(model.evaluate(x, y, batch_size=20, return_pred=True,
                                           convert_to_numpy=False, verbose=False))
    out["dict"] = _plain(model.evaluate(x, y, batch_size=20, return_dict_format=True,
                                        verbose=False))
    out["dict_pred"] = _plain(model.evaluate(x, y, batch_size=20, return_dict_format=True,
                                             return_pred=True, verbose=False))
    loader = DataLoader(TensorDataset(x, y), batch_size=20)
    out["generator"] = _plain(model.evaluate_generator(loader, return_pred=True,
                                                       return_ground_truth=True,
                                                       concatenate_returns=False,
                                                       verbose=False))
    out["on_batch"] = _plain(model.evaluate_on_batch(x[:10], y[:10], return_pred=True))
    return out


def script_predict(pkg: types.ModuleType, workdir: Path) -> dict:
    """predict, predict_generator (concatenated or not), predict_dataset, predict_on_batch."""
    pkg.set_seeds(3)
    x, _ = _classification(n=30)
    model = pkg.Model(_classifier(), "sgd", "cross_entropy")
    out: dict = {}
    out["predict"] = _plain(model.predict(x, batch_size=8, verbose=False))
    out["predict_tensor"] = _plain(model.predict(x, batch_size=8, convert_to_numpy=False,
                                                 verbose=False))
    loader = DataLoader(TensorDataset(x), batch_size=8)
    out["generator"] = _plain(model.predict_generator(loader, verbose=False))
    out["generator_list"] = _plain(model.predict_generator(loader, concatenate_returns=False,
                                                           verbose=False))
    out["dataset"] = _plain(model.predict_dataset(TensorDataset(x), batch_size=16,
                                                  verbose=False))
    out["on_batch"] = _plain(model.predict_on_batch(x[:4]))
    return out


def script_checkpoint_csv(pkg: types.ModuleType, workdir: Path) -> dict:
    """ModelCheckpoint(save_best_only) and CSVLogger: files written, CSV header and rows."""
    pkg.set_seeds(13)
    x, y = _classification()
    model = pkg.Model(_classifier(), "sgd", "cross_entropy", batch_metrics=["accuracy"])
    callbacks = [
        pkg.ModelCheckpoint(str(workdir / "best_epoch_{epoch}.ckpt"), monitor="val_loss",
                            mode="min", save_best_only=True, keep_only_last_best=True,
                            verbose=False),
        pkg.ModelCheckpoint(str(workdir / "last.ckpt")),
        pkg.CSVLogger(str(workdir / "log.csv")),
        pkg.CSVLogger(str(workdir / "log.tsv"), separator="\t"),
    ]
    history = model.fit(x[:48], y[:48], validation_data=(x[48:], y[48:]), epochs=4,
                        batch_size=16, callbacks=callbacks, verbose=False)
    files = sorted(path.name for path in workdir.iterdir())
    state = torch.load(workdir / "last.ckpt", weights_only=True)
    return {
        "history": _plain(history),
        "files": files,
        "checkpoint_keys": sorted(state),
        "log.csv": _read_csv(workdir / "log.csv"),
        "log.tsv": _read_csv(workdir / "log.tsv", delimiter="\t"),
    }


def script_csv_batch_granularity(pkg: types.ModuleType, workdir: Path) -> dict:
    """CSVLogger(batch_granularity=True): one row per training batch before each epoch row."""
    pkg.set_seeds(13)
    x, y = _classification()
    model = pkg.Model(_classifier(), "sgd", "cross_entropy", batch_metrics=["accuracy"])
    model.fit(x[:48], y[:48], validation_data=(x[48:], y[48:]), epochs=2, batch_size=16,
              callbacks=[pkg.CSVLogger(str(workdir / "batches.csv"), batch_granularity=True)],
              verbose=False)
    return {"batches.csv": _read_csv(workdir / "batches.csv")}


def script_verbose_callbacks(pkg: types.ModuleType, workdir: Path) -> dict:
    """What verbose ModelCheckpoint, EarlyStopping, BestModelRestore and a periodic
    ModelCheckpoint print (fit itself silent)."""
    pkg.set_seeds(1)
    x, y = _classification(n=40, seed=0)
    network = _classifier()
    model = pkg.Model(network, torch.optim.SGD(network.parameters(), lr=0.5), "cross_entropy",
                      batch_metrics=["accuracy"])
    callbacks = [
        pkg.ModelCheckpoint(str(workdir / "best_{epoch}.ckpt"), monitor="val_loss",
                            save_best_only=True, restore_best=True, verbose=True,
                            keep_only_last_best=True),
        pkg.ModelCheckpoint(str(workdir / "every_{epoch}.ckpt"), period=2, verbose=True),
        pkg.EarlyStopping(monitor="val_acc", mode="max", patience=1, verbose=True),
        pkg.BestModelRestore(monitor="val_loss", verbose=True),
    ]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        model.fit(x[:24], y[:24], validation_data=(x[24:], y[24:]), epochs=6, batch_size=8,
                  callbacks=callbacks, verbose=False)
    return {"printed": printed.getvalue().replace(str(workdir), "<dir>").splitlines()}


def script_early_stopping_plateau(pkg: types.ModuleType, workdir: Path) -> dict:
    """EarlyStopping and ReduceLROnPlateau on a problem that stops improving quickly."""
    pkg.set_seeds(17)
    x, y = _classification(n=40)
    seen: list = []
    network = _classifier()
    model = pkg.Model(network, torch.optim.SGD(network.parameters(), lr=0.5), "cross_entropy",
                      batch_metrics=["accuracy"])
    callbacks = [
        pkg.ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5),
        pkg.EarlyStopping(monitor="val_acc", mode="max", patience=2, min_delta=1e-3,
                          verbose=False),
        _recorder(pkg, seen),
    ]
    history = model.fit(x[:24], y[:24], validation_data=(x[24:], y[24:]), epochs=20,
                        batch_size=8, callbacks=callbacks, verbose=False)
    lrs = [group["lr"] for group in model.optimizer.param_groups]
    return {"history": _plain(history), "lrs": lrs, "epochs_run": len(history),
            "seen_epoch_end": [s for s in seen if s[0] in ("epoch_end", "train_end")]}


def script_steplr_best_restore(pkg: types.ModuleType, workdir: Path) -> dict:
    """StepLR scheduling and BestModelRestore bringing back the best epoch's weights."""
    pkg.set_seeds(19)
    x, y = _classification()
    network = _classifier()
    model = pkg.Model(network, torch.optim.SGD(network.parameters(), lr=0.3, momentum=0.9),
                      "cross_entropy", batch_metrics=["accuracy"])
    callbacks = [pkg.StepLR(step_size=2, gamma=0.1),
                 pkg.BestModelRestore(monitor="val_loss", verbose=False)]
    history = model.fit(x[:48], y[:48], validation_data=(x[48:], y[48:]), epochs=5,
                        batch_size=16, callbacks=callbacks, verbose=False)
    restored = model.evaluate(x[48:], y[48:], verbose=False)
    return {"history": _plain(history), "lr": model.optimizer.param_groups[0]["lr"],
            "restored": _plain(restored)}


def script_lambda_terminate_nan(pkg: types.ModuleType, workdir: Path) -> dict:
    """LambdaCallback hooks and TerminateOnNaN stopping on a loss that turns into NaN."""
    pkg.set_seeds(23)
    x, y = _regression()
    events: list = []

    def loss_becoming_nan(pred, target):
        loss = nn.functional.mse_loss(pred, target)
        # The last (6th) batch of epoch 1 goes bad: both libraries stop at the end of that
        # epoch (a stop mid-epoch takes effect at different times: docs/differences.md).
        if len(events) >= 6:
            return loss * float("nan")
        return loss

    lambdas = pkg.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: events.append(("epoch_begin", epoch)),
        on_train_batch_end=lambda batch, logs: events.append(
            ("batch_end", batch, _describe(logs))),
        on_train_end=lambda logs: events.append(("train_end", _describe(logs))),
    )
    model = pkg.Model(nn.Linear(5, 1), "sgd", loss_becoming_nan)
    history = model.fit(x, y, epochs=4, batch_size=8,
                        callbacks=[lambdas, pkg.TerminateOnNaN()], verbose=False)
    return {"history": _plain(history), "events": events}


def script_custom_callback_params(pkg: types.ModuleType, workdir: Path) -> dict:
    """A Callback subclass reading self.params and self.model in each hook."""
    pkg.set_seeds(29)
    x, y = _classification()
    seen: list = []

    class ParamsReader(pkg.Callback):
        def on_train_begin(self, logs):
            seen.append(("params", dict(self.params)))
            seen.append(("has_model", self.model is not None))

        def on_valid_batch_end(self, batch_number, logs):
            seen.append(("valid_batch_end", batch_number, _describe(logs)))

        def on_valid_end(self, logs):
            seen.append(("valid_end", _describe(logs)))

    model = pkg.Model(_classifier(), "adam", "cross_entropy", batch_metrics=["accuracy"])
    model.fit(x[:48], y[:48], validation_data=(x[48:], y[48:]), epochs=2, batch_size=16,
              callbacks=[ParamsReader(), _recorder(pkg, seen)], verbose=False)
    return {"seen": seen}


def script_model_bundle(pkg: types.ModuleType, workdir: Path) -> dict:
    """ModelBundle.from_network on a working directory: train, test, files and log.tsv."""
    pkg.set_seeds(31)
    x, y = _classification(n=72)
    train = DataLoader(TensorDataset(x[:48], y[:48]), batch_size=16)
    valid = DataLoader(TensorDataset(x[48:64], y[48:64]), batch_size=8)
    test = DataLoader(TensorDataset(x[64:], y[64:]), batch_size=8)
    bundle = pkg.ModelBundle.from_network(str(workdir / "bundle"), _classifier(),
                                          optimizer="sgd", task="classif")
    history = bundle.train(train, valid, epochs=3, verbose=False)
    result = bundle.test(test, verbose=False)
    # The files a user opens; the state files differ by design (epochal's snapshot store).
    user_files = ("log.tsv", "test_log.tsv", "checkpoint.ckpt", "checkpoint_epoch_", "plots")
    files = sorted(path.name for path in (workdir / "bundle").iterdir()
                   if path.name.startswith(user_files))
    # The keys test() returns are compared by script_model_bundle_extras.
    result = {key: value for key, value in result.items() if key != "epoch"}
    return {"history": _plain(history), "test": _plain(result), "files": files,
            "log.tsv": _read_csv(workdir / "bundle" / "log.tsv", delimiter="\t"),
            "test_log.tsv": _read_csv(workdir / "bundle" / "test_log.tsv", delimiter="\t")}


def script_model_bundle_extras(pkg: types.ModuleType, workdir: Path) -> dict:
    """ModelBundle.test's returned keys, and the tensorboard/ directory Poutyne's bundle fills
    when tensorboard is installed."""
    pkg.set_seeds(31)
    x, y = _classification(n=40)
    train = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=16)
    test = DataLoader(TensorDataset(x[32:], y[32:]), batch_size=8)
    bundle = pkg.ModelBundle.from_network(str(workdir / "bundle"), _classifier(),
                                          optimizer="sgd", task="classif")
    bundle.train(train, test, epochs=1, verbose=False)
    result = bundle.test(test, verbose=False)
    return {"test_keys": list(result),
            "tensorboard": (workdir / "bundle" / "tensorboard").is_dir()}


def _tensorboard_scalars(directory: Path) -> dict:
    """Every scalar under a TensorBoard log directory: run folder -> tag -> [(step, value)]
    (wall-clock values replaced by their type)."""
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    out: dict = {}
    for run in sorted({path.parent for path in directory.rglob("events.out.tfevents.*")}):
        accumulator = event_accumulator.EventAccumulator(str(run))
        accumulator.Reload()
        name = str(run.relative_to(directory))
        out[name] = {
            tag: [(event.step, "<time>" if "time" in name else round(event.value, 5))
                  for event in accumulator.Scalars(tag)]
            for tag in sorted(accumulator.Tags()["scalars"])
        }
    return out


def script_bundle_tensorboard(pkg: types.ModuleType, workdir: Path) -> dict:
    """The TensorBoard scalars a bundle writes in tensorboard/: 2 epochs, then resumed to 3
    (and nothing with disable_tensorboard=True)."""
    pytest.importorskip("torch.utils.tensorboard")
    pkg.set_seeds(33)
    x, y = _classification(n=48)
    train = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=16)
    valid = DataLoader(TensorDataset(x[32:], y[32:]), batch_size=8)
    bundle = pkg.ModelBundle.from_network(str(workdir / "bundle"), _classifier(),
                                          optimizer="sgd", task="classif")
    bundle.train(train, valid, epochs=2, verbose=False)
    bundle.train(train, valid, epochs=3, verbose=False)
    quiet = pkg.ModelBundle.from_network(str(workdir / "quiet"), _classifier(),
                                         optimizer="sgd", task="classif")
    quiet.train(train, valid, epochs=1, verbose=False, disable_tensorboard=True)
    return {"scalars": _tensorboard_scalars(workdir / "bundle" / "tensorboard"),
            "attribute": Path(bundle.tensorboard_directory).name,
            "quiet": (workdir / "quiet" / "tensorboard").exists()}


def _frame(table: Any) -> Any:
    """A pandas DataFrame as its type, index and columns (wall-clock times dropped)."""
    if not hasattr(table, "to_dict"):
        return ("not a DataFrame", _plain(table))
    columns = {k: [_plain(v) for v in values] for k, values in table.to_dict("list").items()
               if k != "time"}
    return {"type": type(table).__name__, "index": list(table.index), "columns": columns}


def _classif_bundle(pkg: types.ModuleType, directory: Path, **kwargs: Any) -> Any:
    return pkg.ModelBundle.from_network(str(directory), _classifier(), optimizer="sgd",
                                        task="classif", **kwargs)


def script_bundle_checkpoints_and_stats(pkg: types.ModuleType, workdir: Path) -> dict:
    """get_stats, get_best_epoch_stats, get_saved_epochs and load_checkpoint('best' | 'last'
    | epoch) on a bundle trained 5 epochs, with the files it keeps."""
    pkg.set_seeds(35)
    x, y = _classification(n=64)
    train = DataLoader(TensorDataset(x[:40], y[:40]), batch_size=8)
    valid = DataLoader(TensorDataset(x[40:], y[40:]), batch_size=8)
    bundle = _classif_bundle(pkg, workdir / "b")
    bundle.train(train, valid, epochs=5, verbose=False)
    out: dict = {"stats": _frame(bundle.get_stats()),
                 "best": _frame(bundle.get_best_epoch_stats()),
                 "saved": _frame(bundle.get_saved_epochs())}
    out["files"] = sorted(p.name for p in (workdir / "b").iterdir()
                          if p.name.startswith("checkpoint_epoch_"))
    for checkpoint in ("best", "last", out["files"] and int(
            out["files"][0][len("checkpoint_epoch_"):-len(".ckpt")])):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            returned = bundle.load_checkpoint(checkpoint, verbose=True)
        out[f"load_{checkpoint}"] = _frame(returned)
        out[f"printed_{checkpoint}"] = printed.getvalue().replace(str(workdir), "<dir>")
        out[f"predict_{checkpoint}"] = _plain(bundle.model.predict(x[:4], verbose=False))
    return out


def script_bundle_keep_only_last_best(pkg: types.ModuleType, workdir: Path) -> dict:
    """train(keep_only_last_best=True) and train(save_every_epoch=True): the checkpoint
    files kept, the best epoch and the weights left in the network. (get_saved_epochs differs
    here on purpose: it lists the files that exist, docs/differences.md.)"""
    pkg.set_seeds(39)
    x, y = _classification(n=64)
    train = DataLoader(TensorDataset(x[:40], y[:40]), batch_size=8)
    valid = DataLoader(TensorDataset(x[40:], y[40:]), batch_size=8)
    out: dict = {}
    for name, options in (("last_best", {"keep_only_last_best": True}),
                          ("every", {"save_every_epoch": True})):
        bundle = _classif_bundle(pkg, workdir / name, monitor_metric="val_loss",
                                 monitor_mode="min")
        bundle.train(train, valid, epochs=4, verbose=False, **options)
        out[name] = {
            "files": sorted(p.name for p in (workdir / name).iterdir()
                            if p.name.startswith("checkpoint_epoch_")),
            "best": _frame(bundle.get_best_epoch_stats()),
            "weights": _plain(bundle.model.predict(x[:4], verbose=False)),
        }
    return out


def script_bundle_task_defaults(pkg: types.ModuleType, workdir: Path) -> dict:
    """from_network's defaults: the task's monitor (and mode) with and without an explicit
    monitor_metric, empty metric lists, and a network carrying its own loss_function."""
    out: dict = {}
    cases = {
        "classif": {"task": "classif"},
        "classif_val_loss": {"task": "classif", "monitor_metric": "val_loss"},
        "classif_empty_metrics": {"task": "classif", "batch_metrics": [], "epoch_metrics": []},
        "reg": {"task": "regression"},
        "none": {"loss_function": "mse"},
        "none_val_acc": {"loss_function": "cross_entropy", "monitor_metric": "val_acc"},
        "unmonitored": {"task": "classif", "monitoring": False},
    }
    for name, options in cases.items():
        bundle = pkg.ModelBundle.from_network(str(workdir / name), _classifier(), **options)
        out[name] = {"monitoring": bundle.monitoring, "metric": bundle.monitor_metric,
                     "mode": bundle.monitor_mode,
                     "metrics_names": list(bundle.model.metrics_names)}

    class WithLoss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = _classifier()
            self.loss_function = nn.CrossEntropyLoss()
            self.batch_metrics = ["accuracy"]

        def forward(self, x):
            return self.body(x)

    pkg.set_seeds(41)
    x, y = _classification(n=32)
    bundle = pkg.ModelBundle.from_network(str(workdir / "own"), WithLoss())
    history = bundle.train_data(x[:24], y[:24], validation_data=(x[24:], y[24:]), epochs=1,
                                batch_size=8, verbose=False)
    out["own"] = {"history": _plain(history), "metrics_names": list(bundle.model.metrics_names)}
    return out


def script_bundle_test_variants(pkg: types.ModuleType, workdir: Path) -> dict:
    """test(name=...), test with return_pred, test_dataset/test_data with loader options,
    infer/infer_dataset/infer_data with checkpoint and predict options."""
    pkg.set_seeds(43)
    x, y = _classification(n=64)
    train = DataLoader(TensorDataset(x[:40], y[:40]), batch_size=8)
    valid = DataLoader(TensorDataset(x[40:52], y[40:52]), batch_size=8)
    test = DataLoader(TensorDataset(x[52:], y[52:]), batch_size=4)
    bundle = _classif_bundle(pkg, workdir / "b")
    bundle.train(train, valid, epochs=3, verbose=False)
    out: dict = {}
    out["named"] = _plain(bundle.test(valid, name="valid", verbose=False))
    out["named_file"] = _read_csv(workdir / "b" / "valid_log.tsv", delimiter="\t")
    out["with_pred"] = _plain(bundle.test(test, return_pred=True, verbose=False))
    out["last"] = _plain(bundle.test(test, checkpoint="last", verbose=False))
    out["last_file"] = _read_csv(workdir / "b" / "test_log.tsv", delimiter="\t")
    out["path"] = _plain(bundle.test(test, checkpoint=str(workdir / "b" / "checkpoint.ckpt"),
                                     name="path", verbose=False))
    out["path_file"] = _read_csv(workdir / "b" / "path_log.tsv", delimiter="\t")
    out["dataset"] = _plain(bundle.test_dataset(TensorDataset(x[52:], y[52:]), batch_size=5,
                                                num_workers=0, verbose=False))
    out["data"] = _plain(bundle.test_data(x[52:], y[52:], batch_size=6, verbose=False,
                                          return_pred=True))
    out["infer"] = _plain(bundle.infer(DataLoader(TensorDataset(x[:6]), batch_size=4),
                                       checkpoint="last", verbose=False))
    out["infer_list"] = _plain(bundle.infer(DataLoader(TensorDataset(x[:6]), batch_size=4),
                                            concatenate_returns=False, verbose=False))
    out["infer_dataset"] = _plain(bundle.infer_dataset(TensorDataset(x[:6], y[:6]),
                                                       batch_size=4, has_ground_truth=True,
                                                       return_ground_truth=True,
                                                       verbose=False))
    out["infer_data"] = _plain(bundle.infer_data(x[:6], batch_size=4, checkpoint=1,
                                                 convert_to_numpy=False, verbose=False))
    return out


def script_bundle_unmonitored(pkg: types.ModuleType, workdir: Path) -> dict:
    """A bundle with monitoring=False: train, test (the last epoch's weights), its files."""
    pkg.set_seeds(45)
    x, y = _classification(n=48)
    train = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=8)
    valid = DataLoader(TensorDataset(x[32:], y[32:]), batch_size=8)
    bundle = _classif_bundle(pkg, workdir / "b", monitoring=False)
    history = bundle.train(train, valid, epochs=2, verbose=False)
    result = bundle.test(valid, verbose=False)
    return {"history": _plain(history), "test": _plain(result),
            "files": sorted(p.name for p in (workdir / "b").iterdir()
                            if p.name.startswith(("checkpoint_epoch_", "log.tsv", "test_log"))
                            or p.name == "checkpoint.ckpt"),
            "test_log.tsv": _read_csv(workdir / "b" / "test_log.tsv", delimiter="\t")}


def script_bundle_prints(pkg: types.ModuleType, workdir: Path) -> dict:
    """What a bundle trained with verbose=False prints: its best-epoch lines and the restore
    line, with files, with save_every_epoch, and without logging."""
    pkg.set_seeds(47)
    x, y = _classification(n=48)
    train = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=8)
    valid = DataLoader(TensorDataset(x[32:], y[32:]), batch_size=8)
    out: dict = {}
    for name, build, options in (("files", {}, {}), ("every", {}, {"save_every_epoch": True}),
                                 ("memory", {"logging": False}, {})):
        bundle = _classif_bundle(pkg, workdir / name, monitor_metric="val_loss", **build)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            bundle.train(train, valid, epochs=3, verbose=False, **options)
        out[name] = printed.getvalue().replace(str(workdir), "<dir>").splitlines()
    return out


def script_bundle_resume_prints(pkg: types.ModuleType, workdir: Path) -> dict:
    """What a resumed bundle prints with verbose=False: Poutyne's "Loading ... and starting at
    epoch N." lines (weights, optimizer, random states, one per LR scheduler), in order. The
    file each names differs (epochal keeps them in one state file): it is masked."""
    pkg.set_seeds(53)
    x, y = _classification(n=48)
    train = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=8)
    valid = DataLoader(TensorDataset(x[32:], y[32:]), batch_size=8)
    out: dict = {}
    for epochs in (2, 3):
        bundle = _classif_bundle(pkg, workdir / "b", monitor_metric="val_loss")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            bundle.train(train, valid, epochs=epochs, verbose=False,
                         lr_schedulers=[pkg.StepLR(step_size=1, gamma=0.5),
                                        pkg.ExponentialLR(gamma=0.9)])
        out[f"to_{epochs}"] = [
            re.sub(r" from \S+ and starting", " from <file> and starting", line)
            for line in printed.getvalue().splitlines() if line.startswith("Loading")
        ]
    assert out["to_3"], "a resumed train prints Poutyne's lines"
    return out


def script_bundle_lr_schedulers(pkg: types.ModuleType, workdir: Path) -> dict:
    """A bundle with lr_schedulers=[StepLR] trained 4 epochs: log.tsv's lr column holds the
    rate each epoch trained with. (A resumed call differs on purpose: Poutyne's resumed
    optimizer keeps the rate of the epoch before the schedulers stepped, docs/differences.md.)"""
    pkg.set_seeds(49)
    x, y = _classification(n=48)
    train = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=8, shuffle=True)
    valid = DataLoader(TensorDataset(x[32:], y[32:]), batch_size=8)
    network = _classifier()
    bundle = pkg.ModelBundle.from_network(
        str(workdir / "b"), network, optimizer=torch.optim.SGD(network.parameters(), lr=0.2),
        task="classif")
    history = bundle.train(train, valid, epochs=4, verbose=False,
                           lr_schedulers=[pkg.StepLR(step_size=1, gamma=0.5)])
    return {"history": _plain(history),
            "log.tsv": _read_csv(workdir / "b" / "log.tsv", delimiter="\t"),
            "stats": _frame(bundle.get_stats()),
            "lr": bundle.model.optimizer.param_groups[0]["lr"]}


def script_bundle_stats_errors(pkg: types.ModuleType, workdir: Path) -> dict:
    """get_stats before any training, get_best_epoch_stats and get_saved_epochs without
    monitoring: the exception types a user catches (ValueError)."""
    pkg.set_seeds(51)
    x, y = _classification(n=32)
    out: dict = {}
    fresh = _classif_bundle(pkg, workdir / "fresh")
    unmonitored = _classif_bundle(pkg, workdir / "off", monitoring=False)
    unmonitored.train_data(x[:24], y[:24], validation_data=(x[24:], y[24:]), epochs=1,
                           batch_size=8, verbose=False)
    for name, call in (("stats_fresh", fresh.get_stats),
                       ("best_off", unmonitored.get_best_epoch_stats),
                       ("saved_off", unmonitored.get_saved_epochs)):
        try:
            call()
            out[name] = "returned"
        except ValueError:
            out[name] = "ValueError"
    out["stats_off"] = len(unmonitored.get_stats())
    return out


def script_experiment_resume(pkg: types.ModuleType, workdir: Path) -> dict:
    """Experiment (Poutyne's older name) trained 2 epochs, then resumed to 4 epochs."""
    pkg.set_seeds(37)
    x, y = _classification()
    train = DataLoader(TensorDataset(x[:48], y[:48]), batch_size=16)
    valid = DataLoader(TensorDataset(x[48:], y[48:]), batch_size=16)
    network = _classifier()
    experiment = pkg.Experiment(str(workdir / "exp"), network, optimizer="adam",
                                loss_function="cross_entropy", batch_metrics=["accuracy"],
                                monitor_metric="val_loss", monitor_mode="min")
    first = experiment.train(train, valid, epochs=2, verbose=False)
    second = experiment.train(train, valid, epochs=4, verbose=False)
    # Epochs 3 and 4 are the last two rows whichever history the second call returns (the
    # length is compared by script_experiment_resume_history).
    return {"first": _plain(first), "resumed_epochs": _plain(second[-2:]),
            "log.tsv": _read_csv(workdir / "exp" / "log.tsv", delimiter="\t")}


def script_experiment_resume_history(pkg: types.ModuleType, workdir: Path) -> dict:
    """What a resumed ModelBundle.train returns: the epochs of that call."""
    pkg.set_seeds(37)
    x, y = _classification()
    train = DataLoader(TensorDataset(x[:48], y[:48]), batch_size=16)
    bundle = pkg.ModelBundle.from_network(str(workdir / "exp"), _classifier(),
                                          optimizer="sgd", task="classif")
    valid = DataLoader(TensorDataset(x[48:], y[48:]), batch_size=16)
    bundle.train(train, valid, epochs=2, verbose=False)
    second = bundle.train(train, valid, epochs=3, verbose=False)
    return {"epochs_returned": [row["epoch"] for row in second]}


def script_custom_metric(pkg: types.ModuleType, workdir: Path) -> dict:
    """A Metric subclass (forward/update/compute/reset) and a function batch metric."""
    pkg.set_seeds(41)
    x, y = _classification()

    class MeanMaxProb(pkg.Metric):
        def __init__(self) -> None:
            super().__init__()
            self.reset()

        def forward(self, y_pred, y_true):
            self.update(y_pred, y_true)
            return y_pred.softmax(1).max(1).values.mean()

        def update(self, y_pred, y_true):
            probs = y_pred.softmax(1).max(1).values
            self.total += float(probs.sum())
            self.count += len(probs)

        def compute(self):
            return self.total / self.count

        def reset(self) -> None:
            self.total = 0.0
            self.count = 0

    def top_logit(y_pred, y_true):
        return y_pred.max(1).values.mean()

    model = pkg.Model(_classifier(), "sgd", "cross_entropy",
                      batch_metrics=[("mmp_batch", MeanMaxProb()), top_logit],
                      epoch_metrics=[("mmp", MeanMaxProb())])
    history = model.fit(x[:48], y[:48], validation_data=(x[48:], y[48:]), epochs=2,
                        batch_size=16, verbose=False)
    result = model.evaluate(x[48:], y[48:], return_dict_format=True, verbose=False)
    return {"history": _plain(history), "evaluate": _plain(result)}


def script_multi_input(pkg: types.ModuleType, workdir: Path) -> dict:
    """A network taking a tuple of inputs: fit, evaluate and predict with tuple x."""
    pkg.set_seeds(43)
    g = torch.Generator().manual_seed(9)
    left, right = torch.randn(40, 4, generator=g), torch.randn(40, 3, generator=g)
    y = torch.randint(0, 2, (40,), generator=g)
    model = pkg.Model(_TwoInputs(), "adam", "cross_entropy", batch_metrics=["accuracy"])
    history = model.fit((left[:32], right[:32]), y[:32],
                        validation_data=((left[32:], right[32:]), y[32:]),
                        epochs=2, batch_size=8, verbose=False)
    evaluated = model.evaluate((left[32:], right[32:]), y[32:], batch_size=4, verbose=False)
    predicted = model.predict((left, right), batch_size=16, verbose=False)
    return {"history": _plain(history), "evaluate": _plain(evaluated),
            "predict": _plain(predicted)}


def script_regression_mse(pkg: types.ModuleType, workdir: Path) -> dict:
    """Regression with 'mse', batch_metrics=['l1'], fit_generator with an infinite-style loop."""
    pkg.set_seeds(47)
    x, y = _regression()
    train = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=8, shuffle=True)
    valid = DataLoader(TensorDataset(x[32:], y[32:]), batch_size=8)
    model = pkg.Model(nn.Linear(5, 1), "sgd", "mse", batch_metrics=["l1"])
    history = model.fit_generator(train, valid, epochs=3, steps_per_epoch=3,
                                  validation_steps=1, verbose=False)
    return {"history": _plain(history),
            "evaluate": _plain(model.evaluate_generator(valid, return_pred=True,
                                                        verbose=False))}


def script_metric_names(pkg: types.ModuleType, workdir: Path) -> dict:
    """Predefined metric names and objects: top-k, precision/recall strings, F1 objects."""
    pkg.set_seeds(53)
    x, y = _classification(n=60, classes=4)
    model = pkg.Model(_classifier(classes=4), "adam", "cross_entropy",
                      batch_metrics=["accuracy", "top2", pkg.TopKAccuracy(3)],
                      epoch_metrics=["precision", "recall", pkg.F1(average="micro"),
                                     pkg.FBeta(metric="fscore", beta=2.0, names="f2")])
    history = model.fit(x[:40], y[:40], validation_data=(x[40:], y[40:]), epochs=2,
                        batch_size=10, verbose=False)
    return {"history": _plain(history),
            "evaluate": _plain(model.evaluate(x[40:], y[40:], return_dict_format=True,
                                              verbose=False))}


def script_binary(pkg: types.ModuleType, workdir: Path) -> dict:
    """Binary classification with 'bce_with_logits', 'binary_accuracy' and 'binary_f1'."""
    pkg.set_seeds(59)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(48, 5, generator=g)
    y = (x[:, :1] + 0.3 * torch.randn(48, 1, generator=g) > 0).float()
    model = pkg.Model(nn.Linear(5, 1), "sgd", "bce_with_logits",
                      batch_metrics=["binary_accuracy"], epoch_metrics=["binary_f1"])
    history = model.fit(x[:32], y[:32], validation_data=(x[32:], y[32:]), epochs=3,
                        batch_size=8, verbose=False)
    return {"history": _plain(history)}


def script_weights_io(pkg: types.ModuleType, workdir: Path) -> dict:
    """save_weights/load_weights, save_optimizer_state/load_optimizer_state, get_weights,
    get_weight_copies and set_weights round trips."""
    pkg.set_seeds(61)
    x, y = _classification()
    network = _classifier()
    model = pkg.Model(network, torch.optim.Adam(network.parameters(), lr=1e-2), "cross_entropy")
    model.fit(x, y, epochs=1, batch_size=16, verbose=False)
    model.save_weights(str(workdir / "weights.pt"))
    model.save_optimizer_state(str(workdir / "optim.pt"))
    weights = model.get_weights()
    copies = model.get_weight_copies()
    other_network = _classifier()
    other = pkg.Model(other_network, torch.optim.Adam(other_network.parameters(), lr=1e-2),
                      "cross_entropy")
    other.load_weights(str(workdir / "weights.pt"))
    other.load_optimizer_state(str(workdir / "optim.pt"))
    same_after_load = other.predict(x, verbose=False)
    other.fit(x, y, epochs=1, batch_size=16, verbose=False)
    model.fit(x, y, epochs=1, batch_size=16, verbose=False)
    model.set_weights(copies)
    return {"weights": _plain(weights), "copies": _plain(copies),
            "after_load": _plain(same_after_load),
            "trained_on_same": _plain(other.predict(x, verbose=False)),
            "original_trained": _plain(model.predict(x, verbose=False) * 0)}


def script_schedulers(pkg: types.ModuleType, workdir: Path) -> dict:
    """ExponentialLR and MultiStepLR callbacks: the learning rate a callback sees per epoch."""
    pkg.set_seeds(67)
    x, y = _regression()
    out: dict = {}
    for name, scheduler in (("exponential", pkg.ExponentialLR(gamma=0.5)),
                            ("multistep", pkg.MultiStepLR(milestones=[1, 3], gamma=0.1))):
        rates: list = []
        network = nn.Linear(5, 1)
        optimizer = torch.optim.SGD(network.parameters(), lr=0.05)
        reader = pkg.LambdaCallback(
            on_epoch_end=lambda epoch, logs, rates=rates, optimizer=optimizer: rates.append(
                optimizer.param_groups[0]["lr"]))
        model = pkg.Model(network, optimizer, "mse")
        history = model.fit(x, y, epochs=4, batch_size=16, callbacks=[scheduler, reader],
                            verbose=False)
        out[name] = {"history": _plain(history), "rates": rates}
    return out


def script_cyclic_schedulers(pkg: types.ModuleType, workdir: Path) -> dict:
    """OneCycleLR, CyclicLR and a SequentialLR of both: stepped once per epoch (Poutyne's
    wrappers step every scheduler at on_epoch_end), so OneCycleLR(total_steps=4) fits 4
    epochs of 3 batches; the learning rate and momentum each epoch trains with, and the
    history. Then an optimizer passed first, StepLR(optimizer, 1): the error a user catches."""
    pkg.set_seeds(69)
    x, y = _regression()
    out: dict = {}
    for name, make in (
        ("one_cycle", lambda: pkg.OneCycleLR(max_lr=0.1, total_steps=4)),
        ("one_cycle_epochs", lambda: pkg.OneCycleLR(max_lr=0.1, epochs=4, steps_per_epoch=1)),
        ("cyclic", lambda: pkg.CyclicLR(base_lr=0.01, max_lr=0.1, step_size_up=2)),
        ("cyclic_triangular2", lambda: pkg.CyclicLR(base_lr=0.01, max_lr=0.1, step_size_up=1,
                                                    mode="triangular2")),
    ):
        rates: list = []
        network = nn.Linear(5, 1)
        optimizer = torch.optim.SGD(network.parameters(), lr=0.05, momentum=0.9)
        reader = pkg.LambdaCallback(
            on_epoch_begin=lambda epoch, logs, rates=rates, optimizer=optimizer: rates.append(
                (optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["momentum"])),
            on_epoch_end=lambda epoch, logs, rates=rates, optimizer=optimizer: rates.append(
                optimizer.param_groups[0]["lr"]))
        model = pkg.Model(network, optimizer, "mse")
        history = model.fit(x, y, epochs=4, batch_size=16, callbacks=[make(), reader],
                            verbose=False)
        out[name] = {"history": _plain(history), "rates": rates}
    network = nn.Linear(5, 1)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.05)
    try:
        pkg.StepLR(optimizer, 1)
        out["optimizer_first"] = "accepted"
    except ValueError as error:
        out["optimizer_first"] = ("ValueError", str(error).partition("arguments.")[0])
    return out


def script_checkpoint_templates(pkg: types.ModuleType, workdir: Path) -> dict:
    """ModelCheckpoint filename templates with {epoch} and a formatted metric, period and
    restore_best; OptimizerCheckpoint next to it."""
    pkg.set_seeds(71)
    x, y = _classification()
    network = _classifier()
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    model = pkg.Model(network, optimizer, "cross_entropy", batch_metrics=["accuracy"])
    callbacks = [
        pkg.ModelCheckpoint(str(workdir / "e{epoch:02d}-{val_loss:.2f}.ckpt"), period=2),
        pkg.ModelCheckpoint(str(workdir / "best.ckpt"), monitor="val_acc", mode="max",
                            save_best_only=True, restore_best=True),
        pkg.OptimizerCheckpoint(str(workdir / "optim_{epoch}.optim")),
    ]
    history = model.fit(x[:48], y[:48], validation_data=(x[48:], y[48:]), epochs=4,
                        batch_size=16, callbacks=callbacks, verbose=False)
    files = sorted(path.name for path in workdir.iterdir())
    return {"history": _plain(history), "files": files,
            "restored": _plain(model.evaluate(x[48:], y[48:], verbose=False))}


def script_batches_per_step(pkg: types.ModuleType, workdir: Path) -> dict:
    """Gradient accumulation with batches_per_step=2 and the batch logs it produces."""
    pkg.set_seeds(73)
    x, y = _classification()
    seen: list = []
    model = pkg.Model(_classifier(), "sgd", "cross_entropy", batch_metrics=["accuracy"])
    history = model.fit(x[:48], y[:48], validation_data=(x[48:], y[48:]), epochs=2,
                        batch_size=8, batches_per_step=2, callbacks=[_recorder(pkg, seen)],
                        verbose=False)
    return {"history": _plain(history), "seen": seen}


def script_python_generator(pkg: types.ModuleType, workdir: Path) -> dict:
    """An endless Python generator with steps_per_epoch and validation_steps."""
    pkg.set_seeds(79)
    x, y = _regression()

    def endless(start: int, stop: int, size: int):
        while True:
            for i in range(start, stop, size):
                yield x[i : i + size], y[i : i + size]

    model = pkg.Model(nn.Linear(5, 1), "sgd", "mse", batch_metrics=["l1"])
    history = model.fit_generator(endless(0, 32, 8), endless(32, 48, 8), epochs=3,
                                  steps_per_epoch=5, validation_steps=2, verbose=False)
    evaluated = model.evaluate_generator(endless(32, 48, 8), steps=3, return_dict_format=True,
                                         verbose=False)
    predicted = model.predict_generator((xb for xb, _ in endless(0, 16, 4)), steps=4,
                                        verbose=False)
    return {"history": _plain(history), "evaluate": _plain(evaluated),
            "predict": _plain(predicted)}


def script_test_and_predict_hooks(pkg: types.ModuleType, workdir: Path) -> dict:
    """A Callback passed to evaluate and predict: on_test_* / on_predict_* hooks, their logs
    and self.params."""
    pkg.set_seeds(83)
    x, y = _classification(n=30)
    seen: list = []

    class EvalSpy(pkg.Callback):
        def on_test_begin(self, logs):
            seen.append(("test_begin", _describe(logs), _describe(dict(self.params))))

        def on_test_batch_end(self, batch_number, logs):
            seen.append(("test_batch_end", batch_number, _describe(logs)))

        def on_test_end(self, logs):
            seen.append(("test_end", _describe(logs)))

        def on_predict_begin(self, logs):
            seen.append(("predict_begin", _describe(logs), _describe(dict(self.params))))

        def on_predict_batch_end(self, batch_number, logs):
            seen.append(("predict_batch_end", batch_number, _describe(logs)))

        def on_predict_end(self, logs):
            seen.append(("predict_end", _describe(logs)))

    model = pkg.Model(_classifier(), "sgd", "cross_entropy", batch_metrics=["accuracy"],
                      epoch_metrics=["f1"])
    model.evaluate(x, y, batch_size=8, callbacks=[EvalSpy()], verbose=False)
    model.predict(x, batch_size=16, callbacks=[EvalSpy()], verbose=False)
    return {"seen": seen}


class _TwoOutputs(nn.Module):
    """A network returning a tuple (class scores, a regression value)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(6, 8)
        self.classes = nn.Linear(8, 3)
        self.value = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = torch.relu(self.body(x))
        return self.classes(hidden), self.value(hidden)


def script_multi_output(pkg: types.ModuleType, workdir: Path) -> dict:
    """A network with two outputs and targets, a custom loss over both, and predict returning
    a tuple."""
    pkg.set_seeds(89)
    x, y = _classification()
    value = x.sum(1, keepdim=True)

    def joint_loss(y_pred, y_true):
        return (nn.functional.cross_entropy(y_pred[0], y_true[0])
                + nn.functional.mse_loss(y_pred[1], y_true[1]))

    model = pkg.Model(_TwoOutputs(), "adam", joint_loss)
    history = model.fit(x[:48], (y[:48], value[:48]),
                        validation_data=(x[48:], (y[48:], value[48:])),
                        epochs=2, batch_size=16, verbose=False)
    evaluated = model.evaluate(x[48:], (y[48:], value[48:]), return_pred=True, verbose=False)
    return {"history": _plain(history), "evaluate": _plain(evaluated),
            "predict": _plain(model.predict(x, batch_size=20, verbose=False))}


def script_bundle_regression_infer(pkg: types.ModuleType, workdir: Path) -> dict:
    """ModelBundle for regression: train_data, load_checkpoint('best'), test_data, infer_data."""
    pkg.set_seeds(97)
    x, y = _regression(n=60)
    bundle = pkg.ModelBundle.from_network(str(workdir / "reg"), nn.Linear(5, 1),
                                          optimizer="sgd", task="regression",
                                          batch_metrics=["l1"])
    history = bundle.train_data(x[:40], y[:40], validation_data=(x[40:50], y[40:50]),
                                epochs=3, batch_size=8, verbose=False)
    result = bundle.test_data(x[50:], y[50:], batch_size=5, verbose=False)
    result = {key: value for key, value in result.items() if key != "epoch"}
    inferred = bundle.infer_data(x[50:], batch_size=4, verbose=False)
    return {"history": _plain(history), "test": _plain(result), "infer": _plain(inferred),
            "saved_epochs_file": sorted(p.name for p in (workdir / "reg").iterdir()
                                        if p.name.startswith("checkpoint_epoch_"))}


def script_clip_and_delay(pkg: types.ModuleType, workdir: Path) -> dict:
    """ClipNorm on the network's parameters and a DelayCallback holding a CSVLogger back."""
    pkg.set_seeds(101)
    x, y = _classification()
    network = _classifier()
    model = pkg.Model(network, torch.optim.SGD(network.parameters(), lr=0.5), "cross_entropy",
                      batch_metrics=["accuracy"])
    callbacks = [pkg.ClipNorm(network.parameters(), max_norm=0.1),
                 pkg.DelayCallback(pkg.CSVLogger(str(workdir / "late.csv")), epoch_delay=2)]
    history = model.fit(x, y, epochs=4, batch_size=16, callbacks=callbacks, verbose=False)
    return {"history": _plain(history), "late.csv": _read_csv(workdir / "late.csv")}


def script_sklearn_metrics(pkg: types.ModuleType, workdir: Path) -> dict:
    """SKLearnMetrics wrapping scikit-learn's r2_score and mean_absolute_error."""
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    pkg.set_seeds(103)
    x, y = _regression(n=40)
    model = pkg.Model(nn.Linear(5, 1), "sgd", "mse", epoch_metrics=[
        pkg.SKLearnMetrics([sklearn_metrics.r2_score, sklearn_metrics.mean_absolute_error])])
    history = model.fit(x[:32], y[:32], validation_data=(x[32:], y[32:]), epochs=2,
                        batch_size=8, verbose=False)
    return {"history": _plain(history)}


def script_gradient_logger(pkg: types.ModuleType, workdir: Path) -> dict:
    """CSVGradientLogger: per-layer gradient statistics written per batch."""
    pkg.set_seeds(107)
    x, y = _classification(n=32)
    model = pkg.Model(_classifier(), "sgd", "cross_entropy")
    model.fit(x, y, epochs=2, batch_size=16, verbose=False,
              callbacks=[pkg.CSVGradientLogger(str(workdir / "grad_{}.csv"))])
    files = sorted(path.name for path in workdir.iterdir())
    return {"files": files, **{name: _read_csv(workdir / name) for name in files}}


def script_plot_history(pkg: types.ModuleType, workdir: Path) -> dict:
    """plot_history saving one figure per metric without showing them."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    pkg.set_seeds(109)
    x, y = _classification(n=32)
    model = pkg.Model(_classifier(), "sgd", "cross_entropy", batch_metrics=["accuracy"])
    history = model.fit(x[:24], y[:24], validation_data=(x[24:], y[24:]), epochs=2,
                        batch_size=8, verbose=False)
    figures = pkg.plot_history(history, show=False, save=True, save_directory=str(workdir),
                               save_filename_template="{metric}_plot", close=True)
    return {"files": sorted(path.name for path in workdir.iterdir()),
            "returned": type(figures).__name__,
            "returned_len": len(figures) if isinstance(figures, (list, tuple)) else None}


SCRIPTS: dict[str, Callable[[types.ModuleType, Path], dict]] = {
    name[len("script_"):]: function
    for name, function in dict(globals()).items()
    if name.startswith("script_")
}

# Divergences not fixed here: script name -> exact reason (xfail strict, so a fix shows up).
KNOWN_DIVERGENCES: dict[str, str] = {
}


# --------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------


def _compare(expected: Any, actual: Any, where: str, problems: list[str]) -> None:
    """Collect every difference between Poutyne's observation and epochal's."""
    if type(expected) is not type(actual):
        problems.append(f"{where}: type {type(expected).__name__} (poutyne) vs "
                        f"{type(actual).__name__} (epochal): {actual!r:.200}")
        return
    if isinstance(expected, dict):
        if list(expected) != list(actual):
            missing = [k for k in expected if k not in actual]
            extra = [k for k in actual if k not in expected]
            problems.append(f"{where}: keys {list(expected)} (poutyne) vs {list(actual)} "
                            f"(epochal); missing {missing}, extra {extra}")
        for key in expected:
            if key in actual:
                if key in TIME_KEYS:
                    _compare(type(expected[key]).__name__, type(actual[key]).__name__,
                             f"{where}[{key!r}] type", problems)
                    continue
                _compare(expected[key], actual[key], f"{where}[{key!r}]", problems)
        return
    if isinstance(expected, (list, tuple)):
        if len(expected) != len(actual):
            problems.append(f"{where}: length {len(expected)} (poutyne) vs {len(actual)} "
                            f"(epochal)")
        for index, (e, a) in enumerate(zip(expected, actual)):
            _compare(e, a, f"{where}[{index}]", problems)
        return
    if isinstance(expected, np.ndarray):
        if expected.shape != actual.shape:
            problems.append(f"{where}: shape {expected.shape} vs {actual.shape}")
        elif not np.allclose(expected, actual, atol=TOLERANCE, rtol=TOLERANCE, equal_nan=True):
            problems.append(f"{where}: values differ by up to "
                            f"{np.nanmax(np.abs(expected - actual)):.3g}")
        return
    if isinstance(expected, float):
        same = (math.isnan(expected) and math.isnan(actual)) or math.isclose(
            expected, actual, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
        if not same:
            problems.append(f"{where}: {expected!r} (poutyne) vs {actual!r} (epochal)")
        return
    if isinstance(expected, str) and _is_number(expected) and _is_number(actual):
        _compare(float(expected), float(actual), where, problems)
        return
    if expected != actual:
        problems.append(f"{where}: {expected!r:.200} (poutyne) vs {actual!r:.200} (epochal)")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _drop_time_columns(observation: Any) -> Any:
    """Blank the 'time' column of CSV/TSV tables, whose values are wall-clock seconds."""
    if isinstance(observation, dict):
        return {k: _drop_time_columns(v) for k, v in observation.items()}
    if (isinstance(observation, list) and observation and isinstance(observation[0], list)
            and observation[0] and all(isinstance(c, str) for c in observation[0])
            and "time" in observation[0]):
        column = observation[0].index("time")
        return [observation[0]] + [
            [("<time>" if i == column else cell) for i, cell in enumerate(row)]
            for row in observation[1:]
        ]
    if isinstance(observation, list):
        return [_drop_time_columns(v) for v in observation]
    if isinstance(observation, tuple):
        return tuple(_drop_time_columns(v) for v in observation)
    return observation


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_DIVERGENCES[name]))
        if name in KNOWN_DIVERGENCES else name
        for name in SCRIPTS
    ],
)
def test_script_behaves_as_with_poutyne(name: str, tmp_path: Path) -> None:
    """The script observes the same history, logs, files and returns with epochal as Poutyne."""
    script = SCRIPTS[name]
    (tmp_path / "poutyne").mkdir()
    (tmp_path / "epochal").mkdir()
    expected = _drop_time_columns(script(poutyne, tmp_path / "poutyne"))
    actual = _drop_time_columns(script(epochal, tmp_path / "epochal"))
    problems: list[str] = []
    _compare(expected, actual, name, problems)
    assert not problems, "\n".join(problems[:40])


def test_comparison_catches_a_difference() -> None:
    """The comparison reports an int logged as a float, a missing key and a changed value."""
    problems: list[str] = []
    _compare({"epoch": 1, "loss": 0.5, "acc": 10.0}, {"epoch": 1.0, "loss": 0.5}, "h", problems)
    _compare([0.25], [0.2501], "v", problems)
    assert len(problems) == 3
