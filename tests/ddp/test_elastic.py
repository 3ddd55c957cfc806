"""Elastic resume: under `torchrun --max-restarts 3` a rank SIGKILLed at some point (a step,
inside a snapshot write) makes torchrun restart every rank; they resume from the newest commit
and finish bit-identical to an uninterrupted 2-rank run, with one log row per epoch."""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.ddp.ranks import free_port, run_ranks, torchrun_environment, values
from tests.ddp.test_bundle_ddp import _rank_train

pytestmark = pytest.mark.ddp

WORKER = Path(__file__).with_name("torchrun_bundle_worker.py")


def _torchrun(directory: Path, out: Path, kill: str) -> None:
    environ = torchrun_environment()
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "--max-restarts", "3", "--monitor-interval", "0.2", str(WORKER), str(directory),
         str(out), kill],
        env=environ, capture_output=True, text=True, timeout=240, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]


def _assert_bit_identical(uninterrupted: Any, directory: Path, out: Path) -> list[Any]:
    """Each rank's final weights and committed rows equal the uninterrupted run's (times
    aside), and ``log.tsv`` has one row per epoch; returns the ranks' results."""
    expected_weights, expected_rows = uninterrupted
    results = [torch.load(f"{out}.{rank}", weights_only=False) for rank in range(2)]
    for result in results:
        for key, value in expected_weights.items():
            assert torch.equal(result["weights"][key], value), key
        assert [{k: v for k, v in r.items() if k != "time"} for r in result["rows"]] == [
            {k: v for k, v in r.items() if k != "time"} for r in expected_rows
        ]
    assert len((directory / "log.tsv").read_text().splitlines()) == 5
    return results


@pytest.fixture(scope="module")
def uninterrupted() -> Any:
    with tempfile.TemporaryDirectory() as directory:
        return values(run_ranks(_rank_train, directory, 4))[0]


# Each launch kills three times in a row (one kill per attempt, torchrun --max-restarts 3):
# 6 kills in two launches, mid-epoch, at an epoch's last step and inside commits.
@pytest.mark.parametrize(
    "kill",
    ["step:1:13,write:state/:1,step:0:8", "write:manifests/:2,step:0:5,write:manifests/:1"],
)
def test_a_killed_rank_is_restarted_and_the_run_ends_bit_identical(
    tmp_path: Path, uninterrupted: Any, kill: str
) -> None:
    """After SIGKILL of one rank (mid-epoch, or inside a commit) and torchrun's restart, the
    finished run equals the uninterrupted 2-rank run bit for bit, one log row per epoch."""
    directory, out = tmp_path / "bundle", tmp_path / "result"
    _torchrun(directory, out, kill)
    results = _assert_bit_identical(uninterrupted, directory, out)
    assert [r["restarts"] for r in results] == [3, 3]  # every kill happened, all restarted


def test_two_nodes_rendezvous_restart_and_end_bit_identical(
    tmp_path: Path, uninterrupted: Any
) -> None:
    """Two torchrun agents, one rank each, meet through a c10d rendezvous as two machines
    would (``--nnodes 2 --rdzv-backend c10d --rdzv-endpoint``), sharing the bundle's
    directory. Rank 1 is SIGKILLed mid-epoch: its agent restarts it, the other agent sees the
    new rendezvous round and restarts its rank too, and the run ends bit-identical to the
    uninterrupted 2-rank run, one log row per epoch."""
    directory, out = tmp_path / "bundle", tmp_path / "result"
    environ = torchrun_environment()
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
        "--rdzv-id", "two-nodes", "--max-restarts", "3", "--monitor-interval", "0.2",
        str(WORKER), str(directory), str(out), "step:1:13",
    ]
    nodes = [subprocess.Popen(command, env=environ, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [node.communicate(timeout=240)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    results = _assert_bit_identical(uninterrupted, directory, out)
    assert max(result["restarts"] for result in results) >= 1  # the kill happened


def _random_kills(seed: int, launches: int) -> list[str]:
    """``launches`` KILL arguments of three kills each, drawn from ``seed``: a rank (0 or 1)
    at a step 1..8 of its attempt (an attempt starts at an epoch boundary with at least one
    8-step epoch left, so the kill always happens), or rank 0 inside its 1st or 2nd write of a
    state file or a manifest (at most 2 epochs are committed before the third attempt, which
    so has at least 2 commits left)."""
    rng = random.Random(seed)
    kills = []
    for _ in range(launches):
        points = []
        for _ in range(3):
            if rng.random() < 0.6:
                points.append(f"step:{rng.randint(0, 1)}:{rng.randint(1, 8)}")
            else:
                points.append(f"write:{rng.choice(['state/', 'manifests/'])}:{rng.randint(1, 2)}")
        kills.append(",".join(points))
    return kills


@pytest.mark.slow
@pytest.mark.parametrize("kill", _random_kills(seed=11, launches=4))
def test_more_random_kill_points_end_bit_identical(
    tmp_path: Path, uninterrupted: Any, kill: str
) -> None:
    """12 more SIGKILLs at seeded random steps and writes (slow: ``nox -s ddp -- -m slow``)
    end bit-identical to the uninterrupted 2-rank run, one log row per epoch."""
    test_a_killed_rank_is_restarted_and_the_run_ends_bit_identical(tmp_path, uninterrupted, kill)
