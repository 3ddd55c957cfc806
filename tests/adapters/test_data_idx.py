"""IDX files: round-trips (plain and gzipped), headers, and clear errors on bad files."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torchvision.datasets.mnist import read_image_file, read_label_file

from epochal_adapters.data.idx import read_idx, read_idx_header, read_idx_tensor, write_idx

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


class TestWriteIdx:
    @pytest.mark.parametrize("suffix", ["", ".gz"])
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_round_trip_keeps_values_shape_and_dtype(
        self, tmp_path: Path, suffix: str, dtype: type
    ) -> None:
        """Writing then reading an array gives back the same values, shape and dtype."""
        values = (np.arange(2 * 3 * 4) - 7).astype(dtype).reshape(2, 3, 4)
        path = tmp_path / f"a-idx3{suffix}"
        write_idx(path, values)
        back = read_idx(path)
        assert back.dtype == values.dtype
        np.testing.assert_array_equal(back, values)

    @given(
        array=hnp.arrays(
            dtype=st.sampled_from([np.dtype(d) for d in DTYPES]),
            shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
        ),
        gzipped=st.booleans(),
    )
    def test_property_round_trip(self, array: np.ndarray, gzipped: bool) -> None:
        """Any storable array survives a write/read round-trip bit for bit."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / ("x.gz" if gzipped else "x")
            write_idx(path, array)
            back = read_idx(path)
        assert back.shape == array.shape
        assert back.dtype == array.dtype
        assert back.tobytes() == array.tobytes()

    def test_gz_suffix_writes_gzip_and_plain_writes_raw_bytes(self, tmp_path: Path) -> None:
        """A ``.gz`` name is gzip-compressed; any other name holds the raw big-endian layout."""
        values = np.array([[1, 2], [3, 4]], dtype=np.int16)
        write_idx(tmp_path / "p", values)
        write_idx(tmp_path / "p.gz", values)
        raw = (tmp_path / "p").read_bytes()
        assert raw == bytes([0, 0, 0x0B, 2, 0, 0, 0, 2, 0, 0, 0, 2, 0, 1, 0, 2, 0, 3, 0, 4])
        assert gzip.decompress((tmp_path / "p.gz").read_bytes()) == raw

    def test_torchvision_reads_written_mnist_files(self, tmp_path: Path) -> None:
        """torchvision's own MNIST readers accept the files, images and labels alike."""
        images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
        labels = torch.tensor([3, 1, 4, 1, 5], dtype=torch.uint8)
        write_idx(tmp_path / "train-images-idx3-ubyte", images)
        write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
        assert torch.equal(read_image_file(str(tmp_path / "train-images-idx3-ubyte")), images)
        assert torch.equal(read_label_file(str(tmp_path / "train-labels-idx1-ubyte")), labels.long())

    def test_unsupported_dtype_is_rejected(self, tmp_path: Path) -> None:
        """A dtype without an IDX code (int64) raises ValueError naming the file."""
        with pytest.raises(ValueError, match=r"x\.idx.*int64"):
            write_idx(tmp_path / "x.idx", np.zeros(3, dtype=np.int64))

    def test_zero_dimensional_array_is_rejected(self, tmp_path: Path) -> None:
        """A scalar cannot be stored: IDX needs at least one dimension."""
        with pytest.raises(ValueError, match="dimensions"):
            write_idx(tmp_path / "x.idx", np.array(3, dtype=np.uint8))


class TestReadIdx:
    def test_tensor_reader_matches_numpy_reader(self, tmp_path: Path) -> None:
        """``read_idx_tensor`` gives the same values as ``read_idx``, as a tensor."""
        write_idx(tmp_path / "f.gz", np.arange(6, dtype=np.float32).reshape(3, 2))
        assert torch.equal(read_idx_tensor(tmp_path / "f.gz"), torch.arange(6.0).reshape(3, 2))

    def test_header_reports_shape_and_dtype(self, tmp_path: Path) -> None:
        """The header reader returns dtype, shape and sizes without reading the values."""
        write_idx(tmp_path / "h.gz", np.zeros((7, 28, 28), dtype=np.uint8))
        header = read_idx_header(tmp_path / "h.gz")
        assert (header.dtype, header.shape) == (np.dtype(np.uint8), (7, 28, 28))
        assert (header.header_bytes, header.data_bytes) == (16, 7 * 28 * 28)

    @pytest.mark.parametrize("suffix", ["", ".gz"])
    def test_bad_magic_names_the_file(self, tmp_path: Path, suffix: str) -> None:
        """A file whose magic number is not IDX raises ValueError naming it."""
        path = tmp_path / f"bad{suffix}"
        payload = b"\x12\x34\x08\x01" + b"\x00\x00\x00\x01" + b"\x07"
        path.write_bytes(gzip.compress(payload) if suffix else payload)
        with pytest.raises(ValueError, match=r"bad.*magic number 0x12340801"):
            read_idx(path)

    def test_gzipped_content_without_gz_suffix_is_a_bad_magic(self, tmp_path: Path) -> None:
        """Compressed bytes under a plain name are reported as not IDX, with a hint."""
        path = tmp_path / "train-images-idx3-ubyte"
        path.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x00"))
        with pytest.raises(ValueError, match=r"compressed without a \.gz suffix"):
            read_idx(path)

    @pytest.mark.parametrize("suffix", ["", ".gz"])
    def test_truncated_values_name_the_file(self, tmp_path: Path, suffix: str) -> None:
        """Values cut short raise ValueError naming the file and both byte counts."""
        path = tmp_path / f"short{suffix}"
        write_idx(path, np.zeros((4, 5), dtype=np.uint8))
        payload = (gzip.decompress if suffix else bytes)(path.read_bytes())[:-3]
        path.write_bytes(gzip.compress(payload) if suffix else payload)
        with pytest.raises(ValueError, match=r"short.* is truncated.*needs 20 bytes.*has 17"):
            read_idx(path)

    def test_truncated_header_names_the_file(self, tmp_path: Path) -> None:
        """A header that announces more dimensions than the file holds raises ValueError."""
        path = tmp_path / "cut"
        path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 1]))
        with pytest.raises(ValueError, match=r"cut is truncated.*3 dimensions"):
            read_idx(path)

    def test_truncated_gzip_stream_names_the_file(self, tmp_path: Path) -> None:
        """A gzip file cut mid-stream raises ValueError (not EOFError) naming it."""
        path = tmp_path / "cut.gz"
        write_idx(path, np.arange(1000, dtype=np.int32))
        path.write_bytes(path.read_bytes()[:-40])
        with pytest.raises(ValueError, match=r"cut\.gz is a truncated or corrupt gzip"):
            read_idx(path)

    def test_trailing_bytes_are_rejected(self, tmp_path: Path) -> None:
        """Extra bytes after the values mean the header lies: ValueError naming the file."""
        path = tmp_path / "long"
        write_idx(path, np.zeros(3, dtype=np.uint8))
        path.write_bytes(path.read_bytes() + b"\x00")
        with pytest.raises(ValueError, match="long is longer than its header says"):
            read_idx(path)

    def test_missing_file_raises_file_not_found(self, tmp_path: Path) -> None:
        """Reading a file that does not exist raises FileNotFoundError."""
        with pytest.raises(FileNotFoundError):
            read_idx(tmp_path / "nope")
