"""Values of ``Model`` that Poutyne code reads: ``device`` as given, multi-device refusals,
``fit`` with no epoch to run, and the type of the weight dicts.

The expected values are Poutyne 1.19's (``poutyne/framework/model.py``: ``to`` stores the
device as given, ``cuda``/``cpu`` the parameters' ``torch.device``; ``EpochIterator`` runs
``range(initial_epoch, epochs + 1)`` between ``on_train_begin`` and ``on_train_end``;
``get_weight_copies`` returns the ``state_dict`` with copied tensors).
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from epochal import Callback, Model, ModelBundle
from epochal.core.records import StepRecord
from epochal.exceptions import ConfigurationError
from epochal.testing import RecordingSink


def _model(**kwargs):
    torch.manual_seed(0)
    return Model(nn.Linear(4, 3), "sgd", "cross_entropy", **kwargs)


def _data(n: int = 12):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


class _Hooks(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, object]] = []

    def on_train_begin(self, logs):
        self.calls.append(("train_begin", logs))

    def on_epoch_begin(self, epoch, logs):
        self.calls.append(("epoch_begin", epoch))

    def on_train_end(self, logs):
        self.calls.append(("train_end", logs))


# ---------------------------------------------------------------------- device


class TestDeviceAsGiven:
    def test_a_string_stays_a_string(self):
        model = _model(device="cpu")
        assert model.device == "cpu"
        assert isinstance(model.device, str)

    def test_to_stores_the_value_given(self):
        model = _model()
        assert model.to("cpu").device == "cpu"
        given = torch.device("cpu")
        assert model.to(given).device is given

    def test_none_by_default(self):
        assert _model().device is None

    def test_cpu_stores_a_torch_device(self):
        model = _model(device="cpu").cpu()
        assert model.device == torch.device("cpu")
        assert isinstance(model.device, torch.device)

    def test_a_one_element_list_gives_its_element(self):
        # Poutyne: device[0], and no DataParallel for a single device.
        assert _model(device=["cpu"]).device == "cpu"
        assert _model().to([torch.device("cpu")]).device == torch.device("cpu")

    def test_batches_still_go_to_the_normalised_device(self):
        model = _model(device="cpu")
        x, y = _data()
        history = model.fit(x, y, epochs=1, batch_size=4, verbose=False)
        assert len(history) == 1
        assert model._device == torch.device("cpu")

    def test_assigning_changes_where_batches_go(self):
        model = _model()
        model.device = "cpu"
        assert model.device == "cpu" and model._device == torch.device("cpu")
        model.device = None
        assert model.device is None and model._device is None

    def test_repr_shows_it(self):
        assert "device=cpu" in repr(_model(device="cpu"))


class TestSeveralDevices:
    """Poutyne's multi-GPU mode: a list of devices (or 'all') keeps the network on the first
    and runs each forward pass through torch.nn.parallel.data_parallel over all of them."""

    def test_a_list_runs_the_forward_through_data_parallel(self, monkeypatch):
        """The wiring, on the CPU: data_parallel (CUDA only) is replaced by a recorder that
        calls the module, and the CUDA check is lifted, so CPU devices stand in for GPUs."""
        calls = []

        def recording(module, inputs, device_ids=None, *args, **kwargs):
            calls.append((module, len(inputs), list(device_ids)))
            return module(*inputs)

        monkeypatch.setattr(torch.nn.parallel, "data_parallel", recording)
        monkeypatch.setattr("epochal._arrays.check_parallel_devices", lambda *a: None)
        x, y = _data()
        plain = _model()
        expected = plain.fit(x, y, epochs=2, batch_size=4, verbose=False)
        model = _model(device=["cpu", "cpu"])
        assert model.device == "cpu"  # Poutyne: device[0]
        history = model.fit(x, y, epochs=2, batch_size=4, verbose=False)
        assert calls and all(
            module is model.network and n == 1
            and ids == [torch.device("cpu"), torch.device("cpu")]
            for module, n, ids in calls)
        assert [{k: v for k, v in row.items() if k != "time"} for row in history] == [
            {k: v for k, v in row.items() if k != "time"} for row in expected]
        evaluated = len(calls)
        model.evaluate(x, y, batch_size=6, verbose=False)
        assert len(calls) == evaluated + 2  # every pass, as Poutyne's _compute_loss_and_metrics
        model.to("cpu")
        model.predict(x, batch_size=6, verbose=False)
        assert len(calls) == evaluated + 2  # one device again: a plain call

    @pytest.mark.parametrize("device", [["cpu", "cpu"], ("cuda:0", "cpu")])
    def test_several_devices_must_be_cuda(self, device):
        """data_parallel raises "device type could not be determined" at the first batch on
        non-CUDA devices; epochal says so when the model is built."""
        with pytest.raises(ConfigurationError, match="needs CUDA devices"):
            _model(device=device)

    @pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
    def test_all_without_a_gpu_says_so(self):
        with pytest.raises(ConfigurationError, match="sees none"):
            _model(device="all")

    def test_with_strategy_ddp_refused(self):
        with pytest.raises(ConfigurationError, match="cannot be combined"):
            _model(device=["cuda:0", "cuda:1"], strategy="ddp")

    @pytest.mark.parametrize("device", [["cpu", "nonsense"], ["cpu", 1.5], ["cpu", "cpu"]])
    def test_in_to_before_anything_moves(self, device):
        model = _model(device="cpu")
        weight = model.network.weight
        with pytest.raises(ConfigurationError, match="device"):
            model.to(device)
        assert model.device == "cpu" and model._other_devices == ()
        assert model.network.weight is weight and weight.device.type == "cpu"

    def test_an_empty_list(self):
        with pytest.raises(ConfigurationError, match=r"device=\[\] names no device"):
            _model(device=[])

    @pytest.mark.parametrize("device", ["nonsense", 1.5])
    def test_not_a_device(self, device):
        with pytest.raises(ConfigurationError, match="device"):
            _model(device=device)


# ---------------------------------------------------------------------- epochs


class TestNoEpochToRun:
    @pytest.mark.parametrize(
        ("epochs", "initial_epoch"), [(0, 1), (2, 3), (0, 5)]
    )
    def test_fit_returns_an_empty_history(self, epochs, initial_epoch):
        model = _model()
        before = {k: v.clone() for k, v in model.network.state_dict().items()}
        hooks = _Hooks()
        sink = RecordingSink(StepRecord)
        sink.attach(model.bus)
        x, y = _data()
        history = model.fit(x, y, validation_data=(x, y), epochs=epochs,
                            initial_epoch=initial_epoch, verbose=False, callbacks=[hooks])
        assert history == []
        # As Poutyne: on_train_begin and on_train_end run, no epoch does.
        assert hooks.calls == [("train_begin", {}), ("train_end", {})]
        assert sink.records == []
        for key, value in model.network.state_dict().items():
            assert torch.equal(value, before[key])

    def test_fit_generator_and_fit_dataset(self):
        model = _model()
        x, y = _data()
        batches = [(x[:4], y[:4])]
        assert model.fit_generator(batches, epochs=0, verbose=False) == []
        dataset = torch.utils.data.TensorDataset(x, y)
        assert model.fit_dataset(dataset, epochs=0, verbose=False) == []

    def test_an_empty_validation_loader_is_not_an_error_with_nothing_to_run(self):
        model = _model()
        x, y = _data()
        assert model.fit_generator([(x, y)], [], epochs=0, verbose=False) == []

    @pytest.mark.parametrize("epochs", [-1, 1.5, "3", True])
    def test_bad_epochs(self, epochs):
        x, y = _data()
        with pytest.raises(ConfigurationError, match=rf"epochs must be an int >= 0.*{epochs!r}"):
            _model().fit(x, y, epochs=epochs, verbose=False)

    @pytest.mark.parametrize("initial_epoch", [0, -2, 1.0])
    def test_initial_epoch_below_one(self, initial_epoch):
        x, y = _data()
        with pytest.raises(ConfigurationError, match="initial_epoch must be an int >= 1") as info:
            _model().fit(x, y, epochs=3, initial_epoch=initial_epoch, verbose=False)
        assert "epoch numbered 0" in str(info.value)

    def test_bundle_fresh_directory_trains_nothing(self, tmp_path):
        bundle = ModelBundle.from_network(str(tmp_path / "run"), nn.Linear(4, 3),
                                          optimizer="sgd", task="classif")
        x, y = _data()
        loader = [(x, y)]
        assert bundle.train(loader, loader, epochs=0, verbose=False) == []
        assert len(bundle.train(loader, loader, epochs=1, verbose=False)) == 1

    def test_bundle_rejects_negative_epochs_before_reading_the_directory(self, tmp_path):
        bundle = ModelBundle.from_network(str(tmp_path / "run"), nn.Linear(4, 3),
                                          optimizer="sgd", task="classif")
        x, y = _data()
        with pytest.raises(ConfigurationError, match="epochs must be an int >= 0"):
            bundle.train([(x, y)], epochs=-1, verbose=False)


# ---------------------------------------------------------------------- weights


class TestWeightDicts:
    def test_get_weight_copies_is_an_ordered_dict_of_copies(self):
        model = _model()
        copies = model.get_weight_copies()
        assert type(copies) is OrderedDict
        assert list(copies) == list(model.network.state_dict())
        assert hasattr(copies, "_metadata")  # the state_dict itself, as Poutyne's
        for key, value in copies.items():
            assert value.device.type == "cpu" and not value.requires_grad
            assert value.data_ptr() != model.network.state_dict()[key].data_ptr()
        with torch.no_grad():
            model.network.weight.add_(1.0)
        assert not torch.equal(copies["weight"], model.network.weight)

    def test_get_weights_shares_the_tensors(self):
        model = _model()
        weights = model.get_weights()
        assert type(weights) is OrderedDict
        assert weights["weight"].data_ptr() == model.network.weight.data_ptr()

    def test_copies_load_back(self):
        model = _model()
        copies = model.get_weight_copies()
        with torch.no_grad():
            model.network.weight.zero_()
        model.set_weights(copies)
        assert torch.equal(model.network.weight, copies["weight"])


class _Params(Callback):
    def on_train_begin(self, logs):
        self.seen = dict(self.params)


@pytest.mark.parametrize("with_validation", [False, True])
def test_params_carry_valid_steps_only_with_a_validation_count(with_validation: bool) -> None:
    """Poutyne's ``EpochIterator`` sets ``{'epochs', 'steps'}`` and adds ``valid_steps`` only
    when the validation step count is known."""
    x, y = _data()
    callback = _Params()
    model = _model()
    model.fit(x, y, validation_data=(x, y) if with_validation else None, epochs=1,
              batch_size=6, verbose=False, callbacks=[callback])
    expected = {"epochs": 1, "steps": 2, **({"valid_steps": 2} if with_validation else {})}
    assert callback.seen == expected
