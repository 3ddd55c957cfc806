"""TensorBatchLoader: the same batches, order, values and random draws as DataLoader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset
from torchvision import transforms

from epochal_adapters.data import TensorBatchLoader, to_tensor_batch, write_idx

IMAGES = 160


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with small MNIST-format files (160 train images, 0..255 random pixels)."""
    root = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    for prefix, count in (("train", IMAGES), ("t10k", 20)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte",
                  rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))  # fmt: skip
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, count, dtype=np.uint8))
    return root


def mnist(root: Path, transform: Any = None) -> torchvision.datasets.MNIST:
    return torchvision.datasets.MNIST(
        root, train=True, download=False,
        transform=transforms.ToTensor() if transform is None else transform,
    )  # fmt: skip


def trace(
    make: Callable[[torch.Generator | None], Any], *, use_generator: bool, seed: int, epochs: int = 2
) -> list[tuple[Any, ...]]:
    """Every batch with the RNG states right after it, plus the states at each epoch's end.

    A global draw per batch stands in for the training step's own randomness (dropout).
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 1) if use_generator else None
    loader = make(generator)
    steps: list[tuple[Any, ...]] = []

    def states() -> tuple[torch.Tensor, torch.Tensor | None]:
        return torch.get_rng_state(), None if generator is None else generator.get_state()

    for _ in range(epochs):
        for batch in loader:
            torch.rand(1)
            steps.append(("batch", batch, *states()))
        steps.append(("end", None, *states()))
    return steps


def assert_same(expected: Any, actual: Any) -> None:
    """Same structure, same dtypes, bit-identical values."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor)
        assert expected.dtype == actual.dtype and expected.shape == actual.shape
        assert torch.equal(expected, actual)
    elif isinstance(expected, (list, tuple)):
        assert type(expected) is type(actual) and len(expected) == len(actual)
        for left, right in zip(expected, actual):
            assert_same(left, right)
    else:
        assert expected == actual


def assert_equivalent(dataset: Dataset[Any], *, batch_size: int, shuffle: bool,
                      drop_last: bool, use_generator: bool, seed: int) -> None:  # fmt: skip
    reference = trace(
        lambda g: DataLoader(dataset, batch_size, shuffle=shuffle, drop_last=drop_last, generator=g),
        use_generator=use_generator, seed=seed,
    )  # fmt: skip
    fast = trace(
        lambda g: TensorBatchLoader(dataset, batch_size, shuffle, drop_last=drop_last, generator=g),
        use_generator=use_generator, seed=seed,
    )  # fmt: skip
    assert len(reference) == len(fast)
    for expected, actual in zip(reference, fast):
        assert expected[0] == actual[0]
        assert_same(expected[1], actual[1])
        assert torch.equal(expected[2], actual[2]), "global RNG state differs"
        if expected[3] is not None:
            assert torch.equal(expected[3], actual[3]), "generator state differs"


class TestTensorBatchLoaderEquivalence:
    @given(
        size=st.integers(1, IMAGES),
        batch_size=st.integers(1, 48),
        shuffle=st.booleans(),
        drop_last=st.booleans(),
        use_generator=st.booleans(),
        seed=st.integers(0, 2**31 - 1),
        kind=st.sampled_from(["mnist-subset", "tensor-dataset"]),
    )
    def test_property_same_batches_and_rng_state_as_dataloader(
        self, mnist_root: Path, size: int, batch_size: int, shuffle: bool, drop_last: bool,
        use_generator: bool, seed: int, kind: str,
    ) -> None:  # fmt: skip
        """For any size, batch size, seed, drop_last and shuffle, with or without a generator,
        the fast loader yields DataLoader's batches bit for bit and leaves the RNGs as it does."""
        if kind == "mnist-subset":
            dataset: Dataset[Any] = Subset(mnist(mnist_root), list(range(size)))
        else:
            values = torch.randn(size, 3, generator=torch.Generator().manual_seed(seed))
            dataset = TensorDataset(values, torch.arange(size) % 7)
        assert_equivalent(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                          use_generator=use_generator, seed=seed)  # fmt: skip

    def test_plain_mnist_dataset_is_decoded_directly(self, mnist_root: Path) -> None:
        """A plain MNIST with ToTensor is read from .data/.targets, and matches DataLoader."""
        dataset = mnist(mnist_root)
        assert TensorBatchLoader(dataset, 16).decoded_directly
        assert_equivalent(dataset, batch_size=16, shuffle=True, drop_last=False,
                          use_generator=True, seed=3)  # fmt: skip

    def test_nested_subsets_are_decoded_directly(self, mnist_root: Path) -> None:
        """A Subset of a Subset (as from a split of a split) is still read directly, in order."""
        dataset = Subset(Subset(mnist(mnist_root), [5, 9, 2, 7, 100, 3]), [4, 0, 3])
        loader = TensorBatchLoader(dataset, 2)
        assert loader.decoded_directly
        assert_equivalent(dataset, batch_size=2, shuffle=False, drop_last=False,
                          use_generator=False, seed=0)  # fmt: skip

    def test_to_tensor_then_normalize_is_batched_exactly(self, mnist_root: Path) -> None:
        """Compose([ToTensor(), Normalize(...)]) is applied per batch, bit-identical."""
        transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
        )
        dataset = mnist(mnist_root, transform)
        assert TensorBatchLoader(dataset, 8).decoded_directly
        assert_equivalent(dataset, batch_size=8, shuffle=True, drop_last=True,
                          use_generator=False, seed=1)  # fmt: skip

    def test_unknown_transform_falls_back_to_iterating_once(self, mnist_root: Path) -> None:
        """Any other transform is run once by iterating the dataset, still matching DataLoader."""
        transform = transforms.Compose([transforms.ToTensor(), transforms.Lambda(lambda x: x * 2)])
        dataset = mnist(mnist_root, transform)
        assert not TensorBatchLoader(dataset, 8).decoded_directly
        assert_equivalent(dataset, batch_size=8, shuffle=True, drop_last=False,
                          use_generator=True, seed=2)  # fmt: skip

    def test_single_tensor_examples_give_tensor_batches(self) -> None:
        """Examples that are bare tensors come out as bare tensor batches, like default collate."""

        class Bare(Dataset[torch.Tensor]):
            def __len__(self) -> int:
                return 10

            def __getitem__(self, index: int) -> torch.Tensor:
                return torch.full((2,), float(index))

        assert_equivalent(Bare(), batch_size=3, shuffle=True, drop_last=False,
                          use_generator=True, seed=0)  # fmt: skip


class TestTensorBatchLoader:
    def test_to_tensor_batch_matches_torchvision_to_tensor(self, mnist_root: Path) -> None:
        """The batched ToTensor equals stacking torchvision's ToTensor of each PIL image."""
        dataset = mnist(mnist_root, transforms.ToTensor())
        expected = torch.stack([dataset[i][0] for i in range(IMAGES)])
        assert torch.equal(to_tensor_batch(dataset.data), expected)

    def test_batches_are_fresh_tensors_not_views_of_the_cache(self) -> None:
        """An in-place change to a served batch does not change later epochs (as with a
        DataLoader), also for an unshuffled TensorDataset served by slices."""
        from torch.utils.data import TensorDataset

        x = torch.arange(12, dtype=torch.float32).reshape(6, 2)
        loader = TensorBatchLoader(TensorDataset(x, torch.arange(6)), 4, shuffle=False)
        for xb, _ in loader:
            xb.mul_(0)
        assert torch.equal(torch.cat([xb for xb, _ in loader]), x)

    def test_len_and_attributes_mirror_dataloader(self, mnist_root: Path) -> None:
        """len, batch_size, drop_last and dataset read as on a DataLoader."""
        dataset = mnist(mnist_root)
        for drop_last in (False, True):
            loader = TensorBatchLoader(dataset, 32, drop_last=drop_last)
            reference = DataLoader(dataset, 32, drop_last=drop_last)
            assert len(loader) == len(reference) == len(list(loader))
            assert (loader.batch_size, loader.drop_last, loader.dataset) == (32, drop_last, dataset)

    def test_labels_are_int64_and_images_float(self, mnist_root: Path) -> None:
        """A batch is [x, y] with x (batch, 1, 28, 28) float32 in [0, 1] and y int64."""
        x, y = next(iter(TensorBatchLoader(mnist(mnist_root), 5)))
        assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert y.shape == (5,) and y.dtype == torch.int64

    def test_to_device_moves_the_data_once(self, mnist_root: Path) -> None:
        """``.to(device)`` and ``device=`` put batches on that device (CPU here; CUDA if any)."""
        device = "cuda" if torch.cuda.is_available() else "cpu"
        loader = TensorBatchLoader(mnist(mnist_root), 7, True, device=device)
        assert loader.to(device) is loader
        x, y = next(iter(loader))
        assert x.device.type == device and y.device.type == device

    def test_bad_batch_size_and_empty_shuffle_are_rejected(self) -> None:
        """A non-positive batch size, or shuffling an empty dataset, raises ValueError."""
        data = TensorDataset(torch.arange(3))
        with pytest.raises(ValueError, match="batch_size"):
            TensorBatchLoader(data, 0)
        with pytest.raises(ValueError, match="empty"):
            TensorBatchLoader(TensorDataset(torch.arange(0)), 2, shuffle=True)

    def test_unsupported_examples_raise_type_error(self) -> None:
        """Examples that collate to a dict are refused with a TypeError pointing to DataLoader."""

        class Dicts(Dataset[dict[str, torch.Tensor]]):
            def __len__(self) -> int:
                return 2

            def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
                return {"x": torch.zeros(1)}

        with pytest.raises(TypeError, match="DataLoader"):
            TensorBatchLoader(Dicts(), 1)
