"""Resume after SIGKILL at any moment equals an uninterrupted training (CPU, bit for bit)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys

import pytest
import torch

EPOCHS = 4
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(directory, epochs, kill="", background=False):
    args = [sys.executable, "-m", "tests.integration.kill_worker", str(directory), str(epochs)]
    if kill:
        args.append(kill)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "EPOCHAL_TEST_BACKGROUND_COMMITS": "1" if background else "0"}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _rows(directory):
    with open(os.path.join(directory, "log.tsv"), encoding="utf-8") as f:
        return [{k: v for k, v in r.items() if k != "time"}
                for r in csv.DictReader(f, delimiter="\t")]


def _weights(directory):
    return torch.load(os.path.join(directory, "checkpoint.ckpt"), weights_only=True)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    directory = tmp_path_factory.mktemp("straight")
    result = _run(directory, EPOCHS)
    assert result.returncode == 0, result.stderr
    return directory


class TestKillAndResume:
    @pytest.mark.parametrize(
        "kill",
        [
            "epoch_begin:3",  # between epochs
            "step:2:5",  # mid-epoch
            "write:state/:2",  # during the second snapshot's state write
            "write:manifests/:3",  # during the third manifest write (the commit point)
            "write:log.tsv:2",  # after the commit, during a derived file's write
        ],
    )
    @pytest.mark.parametrize("background", [False, True], ids=["sync", "background"])
    def test_killed_run_resumes_to_the_same_result(self, tmp_path, straight, kill, background):
        """A run SIGKILLed at that moment (commits written synchronously or in the
        background), then resumed, ends with the uninterrupted run's weights (bit-identical),
        log.tsv values and best checkpoint, with no duplicate row."""
        killed = _run(tmp_path, EPOCHS, kill, background)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert "finished" not in killed.stdout
        resumed = _run(tmp_path, EPOCHS, background=background)
        assert resumed.returncode == 0, resumed.stderr
        assert _rows(tmp_path) == _rows(straight)
        expected, got = _weights(straight), _weights(tmp_path)
        assert all(torch.equal(expected[k], got[k]) for k in expected)
        best = sorted(n for n in os.listdir(straight) if n.startswith("checkpoint_epoch_"))
        assert sorted(n for n in os.listdir(tmp_path) if n.startswith("checkpoint_epoch_")) == best
        leftovers = [n for n in os.listdir(tmp_path / "state") if n.endswith(".tmp")]
        assert leftovers == [] or all(n.startswith(".") for n in leftovers)


@pytest.mark.parametrize("background", [False, True], ids=["sync", "background"])
def test_kill_after_every_storage_operation_resumes_bit_identically(tmp_path, background):
    """A run SIGKILLed right after each storage operation of epochs 1 and 2 in turn (every
    file write, fsync, rename, directory fsync and delete: identity record, probe, best and
    last checkpoints, state, manifest, log.tsv, pruning of superseded best checkpoints, plots),
    then resumed, ends with the uninterrupted run's weights (bit-identical), one log.tsv row
    per epoch with the same values, and the same files; with background commits the kill
    lands in the writer thread while the next epoch trains, with the same outcome."""
    import json

    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "EPOCHAL_TEST_BACKGROUND_COMMITS": "1" if background else "0"}
    result = subprocess.run(
        [sys.executable, "-m", "tests.integration.kill_worker", "--matrix", str(tmp_path), "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    reference, points = lines[0], lines[1:]
    events = reference["operations"]
    assert [r["epoch"] for r in reference["reference"]["rows"]] == ["1", "2"]
    for kind in ("write", "fsync", "rename bundle.json", "rename epoch_0001.state",
                 "rename epoch_0002.json", "rename log.tsv", "rename checkpoint.ckpt",
                 "delete checkpoint_epoch_1.ckpt"):
        assert kind in events, kind
    assert len(points) == len(events)
    failures = []
    for point in points:
        n = point["kill_after"]
        if point["killed"] != -signal.SIGKILL or point["resumed"] != 0:
            failures.append((n, events[n - 1], point["killed"], point["resumed"]))
            continue
        for key in ("weights", "rows", "files"):
            if point[key] != reference["reference"][key]:
                failures.append((n, events[n - 1], key, point[key]))
    assert failures == [], failures
