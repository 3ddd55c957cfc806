"""Resume after SIGKILL at any moment equals an uninterrupted training (CPU, bit for bit)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def _matrix(*args, timeout=900, background=False):
    """Run the fault-injection matrix; the uninterrupted run's record and one per kill point,
    with the list of kill points that did not resume to the uninterrupted result; with
    ``background`` the bundle commits in the background."""
    import json

    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "EPOCHAL_TEST_BACKGROUND_COMMITS": "1" if background else "0"}
    result = subprocess.run(
        [sys.executable, "-m", "tests.integration.kill_worker", "--matrix", *map(str, args)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    reference, points = lines[0], lines[1:]
    events = reference["operations"]
    assert [p["kill_after"] for p in points] == reference["points"]
    failures = []
    for point in points:
        n = point["kill_after"]
        if point["killed"] != -signal.SIGKILL or point["resumed"] != 0:
            failures.append((n, events[n - 1], point["killed"], point["resumed"]))
            continue
        for key in ("weights", "rows", "files"):
            if point[key] != reference["reference"][key]:
                failures.append((n, events[n - 1], key, point[key]))
    return reference, points, failures


@pytest.mark.parametrize("background", [False, True], ids=["sync", "background"])
def test_kill_after_every_storage_operation_resumes_bit_identically(tmp_path, background):
    """A run SIGKILLed right after each storage operation of epochs 1 and 2 in turn (every
    file write, fsync, rename, directory fsync and delete: identity record, probe, best and
    last checkpoints, state, manifest, log.tsv, pruning of superseded best checkpoints, plots),
    then resumed, ends with the uninterrupted run's weights (bit-identical), one log.tsv row
    per epoch with the same values, and the same files; with background commits the kill
    lands in the writer thread while the next epoch trains, with the same outcome."""
    reference, points, failures = _matrix(tmp_path, 2, background=background)
    events = reference["operations"]
    assert [r["epoch"] for r in reference["reference"]["rows"]] == ["1", "2"]
    for kind in ("write", "fsync", "rename bundle.json", "rename epoch_0001.state",
                 "rename epoch_0002.json", "rename log.tsv", "rename checkpoint.ckpt",
                 "delete checkpoint_epoch_1.ckpt"):
        assert kind in events, kind
    # The identity record is durable (renamed) before any training file is written.
    assert events.index("rename bundle.json") < events.index("rename checkpoint_epoch_1.ckpt")
    assert len(points) == len(events)
    assert failures == [], failures


def test_kill_inside_pruning_resumes_bit_identically(tmp_path):
    """Epoch 3's commit prunes three superseded files (manifest and state of epoch 1, the
    best checkpoint of epoch 2); a run SIGKILLed before that pruning, between its deletes and
    after the last, and around every other delete (probe, epoch 2's pruning), then resumed,
    ends with the uninterrupted run's weights, rows and files: nothing superseded survives
    and nothing kept is lost."""
    reference, points, failures = _matrix(tmp_path, 3, "--only", "delete")
    events = reference["operations"]
    pruned = [n for n, kind in enumerate(events, start=1) if kind in (
        "delete epoch_0001.json", "delete epoch_0001.state", "delete checkpoint_epoch_2.ckpt")]
    assert pruned == [pruned[0], pruned[0] + 1, pruned[0] + 2]  # one prune, three deletes
    assert {pruned[0] - 1, *pruned} <= {p["kill_after"] for p in points}
    assert reference["reference"]["files"] == [
        "bundle.json", "checkpoint.ckpt", "checkpoint_epoch_3.ckpt", "log.tsv",
        "manifests/epoch_0002.json", "manifests/epoch_0003.json",
        "state/epoch_0002.state", "state/epoch_0003.state"]
    assert failures == [], failures


# One example in the test suite (ci profile), ten in nox -s props; each costs a process start.
@settings(max_examples=max(1, settings.default.max_examples // 30), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_sigkill_at_any_storage_operation_resumes_bit_identically_property(tmp_path_factory,
                                                                           data):
    """For a one- to three-epoch training, with or without keep_only_last_best and
    save_every_epoch, a SIGKILL right after any storage operation, then a resume, ends with
    the uninterrupted run's weights (bit-identical), rows and files."""
    import json

    epochs = data.draw(st.integers(1, 3), label="epochs")
    options = {"keep_only_last_best": data.draw(st.booleans(), label="keep_only_last_best"),
               "save_every_epoch": data.draw(st.booleans(), label="save_every_epoch")}
    pick = data.draw(st.integers(0, 10**6), label="kill point (modulo the operations)")
    _reference, points, failures = _matrix(
        tmp_path_factory.mktemp("property"), epochs, "--pick", pick,
        "--train-options", json.dumps(options))
    assert len(points) == 1
    assert failures == [], failures


@pytest.mark.s3
@pytest.mark.parametrize("background", [False, True], ids=["sync", "background"])
def test_kill_after_every_s3_operation_resumes_bit_identically(_moto_s3_server, moto_s3,
                                                               tmp_path, background):
    """On S3 (a moto server over HTTP), a run SIGKILLed right after each upload and delete
    of epochs 1 and 2 in turn (probe, identity record, best and last checkpoints, state,
    manifest, log.tsv, pruning, plots), then resumed, ends with the uninterrupted run's
    weights (bit-identical), one log.tsv row per epoch with the same values, and the same
    objects; with background commits (S3's default: the files spooled locally on the
    training thread, uploaded by the writer thread while the next epoch trains) too."""
    import json

    base = f"s3://{_moto_s3_server.create_bucket()}/runs"
    reference, points, failures = _matrix(
        base, 2, "--storage-options", json.dumps(moto_s3), "--scratch", tmp_path, timeout=600,
        background=background)
    events = reference["operations"]
    assert [r["epoch"] for r in reference["reference"]["rows"]] == ["1", "2"]
    for kind in ("upload ._probe", "delete ._probe", "upload bundle.json",
                 "upload checkpoint_epoch_1.ckpt", "upload state/epoch_0001.state",
                 "upload manifests/epoch_0002.json", "upload log.tsv",
                 "upload checkpoint.ckpt", "delete checkpoint_epoch_1.ckpt"):
        assert kind in events, kind
    assert events.index("upload bundle.json") < events.index("upload checkpoint_epoch_1.ckpt")
    assert len(points) == len(events)
    assert failures == [], failures
