"""Reading torchrun's environment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from epochal.distributed import DistributedEnv, detect_env
from epochal.exceptions import DistributedError
from tests.ddp.ranks import torchrun_environment

pytestmark = pytest.mark.ddp

TORCHRUN = {
    "RANK": "3",
    "WORLD_SIZE": "4",
    "LOCAL_RANK": "1",
    "LOCAL_WORLD_SIZE": "2",
    "MASTER_ADDR": "node0",
    "MASTER_PORT": "29500",
    "TORCHELASTIC_RESTART_COUNT": "2",
}


class TestDetectEnv:
    def test_none_without_torchrun(self) -> None:
        """A plain `python train.py` has no distributed environment."""
        assert detect_env({"PATH": "/bin"}) is None

    def test_reads_every_torchrun_variable(self) -> None:
        """All of torchrun's variables land in the record."""
        env = detect_env(TORCHRUN)
        assert env == DistributedEnv(
            rank=3, world_size=4, local_rank=1, local_world_size=2, master_addr="node0",
            master_port=29500, restart_count=2,
        )
        assert not env.is_main

    def test_defaults_for_hand_launched_ranks(self) -> None:
        """Only RANK and WORLD_SIZE are required; the rest default."""
        env = detect_env({"RANK": "0", "WORLD_SIZE": "1"})
        assert env == DistributedEnv(rank=0, world_size=1)
        assert env is not None and env.is_main

    @pytest.mark.parametrize(
        ("environ", "message"),
        [
            ({"RANK": "0"}, "RANK is set but WORLD_SIZE is not"),
            ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x' is not an integer"),
            ({"RANK": "2", "WORLD_SIZE": "2"}, "0 <= RANK < WORLD_SIZE"),
            ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"},
             "0 <= LOCAL_RANK < LOCAL_WORLD_SIZE"),
        ],
    )
    def test_inconsistent_values_are_named(self, environ: dict[str, str], message: str) -> None:
        """Each malformed environment raises DistributedError naming the variable."""
        with pytest.raises(DistributedError, match=message):
            detect_env(environ)


class TestUnderTorchrun:
    def test_two_torchrun_workers_find_each_other_and_count_exactly(
        self, tmp_path: Path
    ) -> None:
        """Under `torchrun --nproc-per-node 2` each worker detects its rank, joins the group
        and the evaluation pass over 1,001 examples counts 1,001 on both."""
        environ = torchrun_environment()
        out = tmp_path / "result"
        completed = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone",
             "--nproc-per-node", "2", str(Path(__file__).with_name("torchrun_worker.py")),
             str(out)],
            env=environ, capture_output=True, text=True, timeout=120, check=False,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        results = [json.loads(Path(f"{out}.{rank}").read_text()) for rank in range(2)]
        assert sorted(r["local"] for r in results) == [500, 501]
        assert [r["samples"] for r in results] == [1001, 1001]
        assert [r["world"] for r in results] == [2, 2]
        assert results[0]["loss"] == results[1]["loss"]
