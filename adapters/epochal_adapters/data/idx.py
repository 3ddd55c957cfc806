"""Read and write IDX files, the format of MNIST and its look-alikes.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim``
big-endian unsigned 32-bit dimension sizes, then the values in C order, big-endian.
Source: Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten digits",
section "File formats for the MNIST database".

A path ending in ``.gz`` is read and written gzip-compressed; any other path is plain.
"""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt
import torch

__all__ = ["IdxHeader", "read_idx", "read_idx_header", "read_idx_tensor", "write_idx"]

#: IDX dtype code -> numpy dtype (big-endian, as stored in the file).
_CODE_TO_DTYPE: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KIND_TO_CODE: dict[tuple[str, int], int] = {
    (dtype.kind, dtype.itemsize): code for code, dtype in _CODE_TO_DTYPE.items()
}
_MAX_NDIM = 255
_HEADER_PROBE_BYTES = 4 + 4 * _MAX_NDIM


@attrs.frozen(kw_only=True)
class IdxHeader:
    """The header of one IDX file.

    Attributes:
        dtype: Native-endian numpy dtype of the values.
        shape: Size of each dimension, outermost first.
        header_bytes: Length of the magic number plus the dimension sizes, in bytes.
    """

    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    header_bytes: int

    @property
    def data_bytes(self) -> int:
        """Number of bytes the values take after the header."""
        count = 1
        for size in self.shape:
            count *= size
        return count * self.dtype.itemsize


def _open_read(path: Path) -> Any:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _parse_header(path: Path, head: bytes) -> IdxHeader:
    if len(head) < 4:
        raise ValueError(
            f"{path} is not an IDX file: it holds {len(head)} bytes, fewer than the 4-byte magic "
            "number. Replace it with a complete copy."
        )
    zero0, zero1, code, ndim = head[0], head[1], head[2], head[3]
    if zero0 != 0 or zero1 != 0 or code not in _CODE_TO_DTYPE or ndim == 0:
        raise ValueError(
            f"{path} is not an IDX file: bad magic number 0x{head[:4].hex()} (expected "
            f"0x0000 then a dtype code in {sorted(hex(c) for c in _CODE_TO_DTYPE)} and ndim >= 1). "
            "Is it compressed without a .gz suffix, or a different format?"
        )
    header_bytes = 4 + 4 * ndim
    if len(head) < header_bytes:
        raise ValueError(
            f"{path} is truncated: its header announces {ndim} dimensions ({header_bytes} bytes) "
            f"but the file holds only {len(head)} bytes. Replace it with a complete copy."
        )
    shape = struct.unpack(f">{ndim}I", head[4:header_bytes])
    return IdxHeader(
        dtype=_CODE_TO_DTYPE[code].newbyteorder("="), shape=tuple(shape), header_bytes=header_bytes
    )


def _read_bytes(path: Path, size: int = -1) -> bytes:
    try:
        with _open_read(path) as stream:
            data: bytes = stream.read(size)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(
            f"{path} is a truncated or corrupt gzip file ({error}). Replace it with a complete copy."
        ) from error
    return data


def read_idx_header(path: str | os.PathLike[str]) -> IdxHeader:
    """Read only the header of an IDX file (cheap: a few bytes, even for a large file).

    Args:
        path: Local file; gzip-compressed when the name ends in ``.gz``.

    Returns:
        The dtype, shape and header length.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The magic number is not an IDX one, or the header is cut short; the message
            names the file.
    """
    path = Path(path)
    return _parse_header(path, _read_bytes(path, _HEADER_PROBE_BYTES)[: 4 + 4 * _MAX_NDIM])


def read_idx(path: str | os.PathLike[str]) -> npt.NDArray[Any]:
    """Read a whole IDX file into a numpy array.

    Args:
        path: Local file; gzip-compressed when the name ends in ``.gz``.

    Shapes:
        returned: the shape stored in the header, e.g. ``(60000, 28, 28)`` for MNIST images,
        ``(60000,)`` for its labels.

    Returns:
        A writable, native-endian array with the file's dtype (``uint8`` for MNIST).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Bad magic number, truncated file, or trailing bytes after the values; the
            message names the file and the sizes involved.
    """
    path = Path(path)
    data = _read_bytes(path)
    header = _parse_header(path, data[:_HEADER_PROBE_BYTES])
    body = len(data) - header.header_bytes
    if body != header.data_bytes:
        problem = "truncated" if body < header.data_bytes else "longer than its header says"
        raise ValueError(
            f"{path} is {problem}: shape {header.shape} of {header.dtype} needs "
            f"{header.data_bytes} bytes of values after the header, the file has {body}. "
            "Replace it with a complete copy."
        )
    values = np.frombuffer(
        data, dtype=header.dtype.newbyteorder(">"), offset=header.header_bytes
    ).reshape(header.shape)
    return values.astype(header.dtype, copy=True)


def read_idx_tensor(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read a whole IDX file into a CPU tensor (same contract as `read_idx`).

    Args:
        path: Local file; gzip-compressed when the name ends in ``.gz``.

    Returns:
        A tensor with the file's shape and dtype (``torch.uint8`` for MNIST).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Bad magic number, truncated file or trailing bytes; the message names the
            file.
    """
    return torch.from_numpy(read_idx(path))


def write_idx(path: str | os.PathLike[str], values: npt.ArrayLike | torch.Tensor) -> None:
    """Write an array as an IDX file, atomically (temp file in the same folder, then rename).

    Args:
        path: Local file; written gzip-compressed when the name ends in ``.gz``. Missing parent
            folders are created.
        values: A numpy array or CPU/GPU tensor of dtype uint8, int8, int16, int32, float32 or
            float64 with at least one dimension.

    Raises:
        ValueError: The dtype has no IDX code, the array is 0-dimensional, or a dimension
            does not fit in 32 bits.
    """
    path = Path(path)
    if isinstance(values, torch.Tensor):
        array = values.detach().cpu().numpy()
    else:
        array = np.asarray(values)
    code = _KIND_TO_CODE.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise ValueError(
            f"Cannot write {path}: dtype {array.dtype} has no IDX code. Use one of uint8, int8, "
            "int16, int32, float32, float64."
        )
    if not 1 <= array.ndim <= _MAX_NDIM or any(size >= 2**32 for size in array.shape):
        raise ValueError(
            f"Cannot write {path}: shape {array.shape} is not storable (IDX needs 1 to 255 "
            "dimensions, each below 2**32)."
        )
    header = bytes((0, 0, code, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=array.dtype.newbyteorder(">")).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            if path.suffix == ".gz":
                with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as compressed:
                    compressed.write(payload)
            else:
                raw.write(payload)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; data files are world-readable
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
