"""Model(..., strategy='ddp'): data-parallel training and evaluation on 2 gloo ranks."""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import epochal
from epochal import Callback, Model
from epochal._parallel import resolve_strategy, warn_restart_caveat, writes_output
from epochal.distributed import DistributedEnv
from epochal.exceptions import ConfigurationError, ShardingError
from epochal_adapters.data.fast_loader import TensorBatchLoader
from tests.ddp.ranks import run_ranks, values

pytestmark = pytest.mark.ddp

N_TRAIN = 64
N_VALID = 1001


def _data(n: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=generator)
    y = torch.randint(0, 3, (n,), generator=generator)
    return TensorDataset(x, y)


def _model(**kwargs: Any) -> Model:
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    return Model(network, "sgd", "cross_entropy", batch_metrics=["accuracy"],
                 epoch_metrics=["f1"], **kwargs)


def _fit(batch_size: int, callbacks: list[Any] | None = None, *, fast: bool = False,
         **fit_kwargs: Any) -> tuple[Model, list[dict[str, Any]]]:
    model = _model()
    loader = TensorBatchLoader if fast else DataLoader
    train = loader(_data(N_TRAIN, 1), batch_size=batch_size, shuffle=False)
    valid = loader(_data(N_VALID, 2), batch_size=50)
    history = model.fit_generator(train, valid, epochs=3, verbose=False,
                                  callbacks=callbacks, **fit_kwargs)
    return model, history


def _assert_equal_runs(results: list[Any], model: Model, history: list[dict[str, Any]]) -> None:
    """Each rank's weights and epoch rows equal one process's within 1e-6."""
    for result in results:
        weights, rank_history = result[0], result[1]
        for key, value in model.get_weight_copies().items():
            assert torch.allclose(weights[key], value, atol=1e-6), key
        assert len(rank_history) == len(history)
        for row, expected in zip(rank_history, history):
            assert row.keys() == expected.keys()
            for key in expected:
                if key != "time":
                    assert row[key] == pytest.approx(expected[key], abs=1e-6), key


def _rank_fit(rank: int, world: int) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]],
                                              Any]:
    model, history = _fit(4)
    test = model.evaluate_generator(DataLoader(_data(N_VALID, 3), batch_size=64),
                                    return_dict_format=True, verbose=False)
    assert isinstance(model._parallel, epochal._parallel.DataParallel)
    return model.get_weight_copies(), history, test


class TestEquivalence:
    def test_two_ranks_of_batch_b_equal_one_process_of_batch_2b(self) -> None:
        """Weights, epoch rows (1,001 validation samples) and a test evaluation of 2 ranks with
        batch 4 equal one process with batch 8 within 1e-6."""
        results = values(run_ranks(_rank_fit))
        model, history = _fit(8)
        test = model.evaluate_generator(DataLoader(_data(N_VALID, 3), batch_size=64),
                                        return_dict_format=True, verbose=False)
        for weights, rank_history, rank_test in results:
            for key, value in model.get_weight_copies().items():
                assert torch.allclose(weights[key], value, atol=1e-6), key
            assert len(rank_history) == len(history)
            for row, expected in zip(rank_history, history):
                assert row.keys() == expected.keys()
                for key in expected:
                    if key != "time":
                        assert row[key] == pytest.approx(expected[key], abs=1e-6), key
            for key in test:
                if key != "time":
                    assert rank_test[key] == pytest.approx(test[key], abs=1e-6), key
        same = [{k: v for k, v in row.items() if k != "time"} for row in results[0][1]]
        assert same == [{k: v for k, v in row.items() if k != "time"} for row in results[1][1]]


GROUP = 3  # batches per optimizer step: each rank's 8 batches of 4 form groups of 3, 3 and 2


def _rank_fit_accumulating(rank: int, world: int) -> tuple[dict[str, torch.Tensor],
                                                           list[dict[str, Any]], int]:
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    model = _model()
    assert model._parallel is not None
    reductions = [0]

    def counting(state, bucket):  # type: ignore[no-untyped-def]  # DDP checks annotations
        reductions[0] += 1  # DDP's all-reduce, counted
        return allreduce_hook(None, bucket)  # type: ignore[arg-type]

    model._parallel.network.register_comm_hook(None, counting)
    train = DataLoader(_data(N_TRAIN, 1), batch_size=4, shuffle=False)
    valid = DataLoader(_data(N_VALID, 2), batch_size=50)
    history = model.fit_generator(train, valid, epochs=3, verbose=False,
                                  batches_per_step=GROUP)
    return model.get_weight_copies(), history, reductions[0]


def _rank_fit_fast(rank: int, world: int) -> tuple[dict[str, torch.Tensor],
                                                   list[dict[str, Any]], list[int]]:
    sizes: list[int] = []

    class Sizes(Callback):
        def on_valid_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
            sizes.append(int(logs["size"]))

    model, history = _fit(4, [Sizes()], fast=True)
    return model.get_weight_copies(), history, sizes


class TestAccumulationAndFastLoader:
    def test_accumulation_on_two_ranks_equals_one_process_and_syncs_once_per_step(
        self,
    ) -> None:
        """2 ranks x batch 4 x 3 accumulated batches equal 1 process x batch 8 x 3 within
        1e-6, with one gradient all-reduce per optimizer step (no_sync on the others)."""
        results = values(run_ranks(_rank_fit_accumulating))
        model, history = _fit(8, batches_per_step=GROUP)
        _assert_equal_runs(results, model, history)
        steps_per_epoch = math.ceil(N_TRAIN // 2 // 4 / GROUP)  # 8 batches: 3 groups
        assert [r[2] for r in results] == [3 * steps_per_epoch] * 2

    def test_tensor_batch_loader_is_sharded_exactly(self) -> None:
        """TensorBatchLoader through fit_generator on 2 ranks: each rank sees its shard (the
        1,001 validation examples counted once: 501 + 500 per epoch), and the run equals one
        process with batch 8 within 1e-6."""
        results = values(run_ranks(_rank_fit_fast))
        model, history = _fit(8, fast=True)
        _assert_equal_runs(results, model, history)
        assert [sum(r[2]) for r in results] == [3 * 501, 3 * 500]


class _FailingNetwork(torch.nn.Module):
    """A linear network whose forward raises on one rank at one call."""

    def __init__(self, rank: int, failing_rank: int, at: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(6, 3)
        self.fails = rank == failing_rank
        self.at = at
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fails and self.calls == self.at:
            raise ValueError(f"boom at forward call {self.at}")
        return self.linear(x)


def _rank_failing(rank: int, world: int, at: int) -> None:
    torch.manual_seed(0)
    model = Model(_FailingNetwork(rank, 1, at), "sgd", "cross_entropy")
    train = DataLoader(_data(N_TRAIN, 1), batch_size=4)  # 8 steps per epoch on each rank
    valid = DataLoader(_data(N_VALID, 2), batch_size=50)
    model.fit_generator(train, valid, epochs=2, verbose=False)


class TestFailureInsideAStep:
    @pytest.mark.parametrize(("at", "where"), [(3, "train pass of epoch 1, step 3"),
                                               (10, "valid pass of epoch 1")])
    def test_an_exception_in_one_ranks_forward_stops_every_rank_with_its_name(
        self, at: int, where: str
    ) -> None:
        """Rank 1's network raising in forward (training step 3, or during validation) ends
        both ranks well within the 30 s limit: rank 1 with its exception (noting its rank),
        rank 0 with PeerFailedError naming rank 1 and the exception, not the group timeout."""
        results = run_ranks(_rank_failing, at, timeout_s=30)
        assert [r["ok"] for r in results] == [False, False]
        assert results[1]["type"] == "NetworkInputError"
        assert f"boom at forward call {at}" in results[1]["text"]
        assert f"Raised on rank 1 of 2 during the {where}" in results[1]["text"]
        assert results[0]["type"] == "PeerFailedError"
        assert f"Rank 1 failed during the {where}: NetworkInputError" in results[0]["text"]
        assert f"boom at forward call {at}" in results[0]["text"]


def _rank_starts_own_group(rank: int, world: int) -> tuple[bool, int]:
    import torch.distributed as dist

    model = _model(strategy="ddp")
    started = dist.is_initialized()
    model._parallel.session.close()
    return started and not dist.is_initialized(), model._parallel.world_size


class _StopAt(Callback):
    """Stops the training after one training step of rank 0 (its flag rides along)."""

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        if batch_number == 3 and torch.distributed.get_rank() == 0:
            self.model.stop_training = True


def _rank_collectives(rank: int, world: int) -> tuple[bool, list[int]]:
    """The all-reduce calls made from Python (DDP's own are in C++) by a 2-epoch fit with 8
    and with 16 steps per epoch, and by a 2-epoch fit (8 steps) of a model whose previous fit
    a stop on rank 0 ended."""
    counts = []
    all_reduce = torch.distributed.all_reduce
    for batch_size in (4, 2, 4):
        model = _model()
        if len(counts) == 2:
            model.fit_generator(DataLoader(_data(N_TRAIN, 1), batch_size=4), epochs=1,
                                verbose=False, callbacks=[_StopAt()])
            assert model.global_step == 4  # decided at step 3, agreed after step 4
        calls = [0]

        def counted(*args: Any, calls: list[int] = calls, **kwargs: Any) -> Any:
            calls[0] += 1
            return all_reduce(*args, **kwargs)

        torch.distributed.all_reduce = counted
        try:
            model.fit_generator(DataLoader(_data(N_TRAIN, 1), batch_size=batch_size),
                                DataLoader(_data(N_VALID, 2), batch_size=50), epochs=2,
                                verbose=False)
        finally:
            torch.distributed.all_reduce = all_reduce
        counts.append(calls[0])
    assert model._parallel is not None
    return model._parallel.carrier is not None, counts


class TestSetup:
    def test_cpu_ranks_carry_the_stop_flag_in_the_gradients(self) -> None:
        """On CPU ranks the stop flag rides on DDP's gradient all-reduce: the Python-side
        collectives of a fit do not grow with the steps (8 or 16 per epoch: same count)."""
        results = values(run_ranks(_rank_collectives))
        for carried, (eight, sixteen, after_a_stop) in results:
            assert carried
            assert eight == sixteen < 2 * 16  # per pass: its records; per epoch: flag, agree
            assert after_a_stop == eight  # the earlier call's stop does not ride along


def _rank_frozen(rank: int, world: int) -> str:
    network = torch.nn.Linear(6, 3)
    network.requires_grad_(False)
    try:
        Model(network, torch.optim.SGD(network.parameters(), lr=0.1), "cross_entropy",
              strategy="ddp")
    except RuntimeError as exc:
        return str(exc)
    return "no error"


class TestFrozenNetwork:
    def test_a_network_without_trainable_parameters_is_refused_as_ddp_does(self) -> None:
        """No parameter needs a gradient: DDP's own refusal, not a carrier that would let the
        ranks train apart once a callback unfreezes the network."""
        for text in values(run_ranks(_rank_frozen)):
            assert "doesn't have any parameter that requires a gradient" in text


    def test_model_starts_the_process_group_when_the_application_did_not(self) -> None:
        """Without an initialised group, Model(strategy='ddp') joins one from torchrun's
        environment (and owns it)."""
        assert values(run_ranks(_rank_starts_own_group, init=False)) == [(True, 2), (True, 2)]

    def test_strategy_none_is_ddp_only_with_several_ranks(self) -> None:
        """None means one process unless torchrun's environment has WORLD_SIZE > 1."""
        assert resolve_strategy(None, None) is None
        assert resolve_strategy(None, DistributedEnv(rank=0, world_size=1)) is None
        assert resolve_strategy(None, DistributedEnv(rank=0, world_size=2)) == "ddp"
        assert resolve_strategy("ddp", DistributedEnv(rank=0, world_size=1)) == "ddp"

    def test_bad_strategies_are_refused_before_any_work(self) -> None:
        """An unknown name, or 'ddp' without torchrun's environment, is a clear error."""
        with pytest.raises(ConfigurationError, match="strategy must be"):
            resolve_strategy("fsdp", None)
        with pytest.raises(ConfigurationError, match="torchrun"):
            resolve_strategy("ddp", None)

    def test_a_restartable_launch_without_the_workaround_is_warned(self) -> None:
        """Under torchrun --max-restarts without TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, rank 0
        warns and names the variable; with it, or on other ranks, nothing is said."""
        main = DistributedEnv(rank=0, world_size=2)
        with pytest.warns(RuntimeWarning, match="TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1"):
            warn_restart_caveat(main, {"TORCHELASTIC_MAX_RESTARTS": "3"})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warn_restart_caveat(main, {"TORCHELASTIC_MAX_RESTARTS": "3",
                                       "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"})
            warn_restart_caveat(DistributedEnv(rank=1, world_size=2),
                                {"TORCHELASTIC_MAX_RESTARTS": "3"})

    def test_one_process_models_have_no_parallel_state(self) -> None:
        """Without torchrun's environment a Model trains exactly as before."""
        if "WORLD_SIZE" in os.environ:
            pytest.skip("launched under torchrun")
        assert _model()._parallel is None

    def test_writers_are_the_file_and_console_callbacks(self) -> None:
        """Checkpoints, loggers and progress write; schedulers and stoppers do not."""
        with tempfile.TemporaryDirectory() as tmp:
            assert writes_output(epochal.ModelCheckpoint(os.path.join(tmp, "w.ckpt")))
            assert writes_output(epochal.CSVLogger(os.path.join(tmp, "log.tsv")))
        assert not writes_output(epochal.EarlyStopping())
        assert not writes_output(epochal.TerminateOnNaN())

        class Mine(Callback):
            rank_zero_only = True

        assert writes_output(Mine())


def _rank_csv(rank: int, world: int, directory: str) -> bool:
    logger = epochal.CSVLogger(os.path.join(directory, f"log{rank}.csv"))
    _fit(4, callbacks=[logger])
    return True


def _rank_unshardable(rank: int, world: int) -> str:
    model = _model()
    batches = [(torch.randn(4, 6), torch.randint(0, 3, (4,)))]
    try:
        model.fit_generator(batches, epochs=1, verbose=False)
    except ShardingError as exc:
        return str(exc)
    return "no error"


class TestRankZeroWrites:
    def test_only_rank_zero_writes_log_files(self) -> None:
        """A CSVLogger given on both ranks writes rank 0's file alone."""
        with tempfile.TemporaryDirectory() as tmp:
            values(run_ranks(_rank_csv, tmp))
            assert sorted(p.name for p in Path(tmp).iterdir()) == ["log0.csv"]
            lines = (Path(tmp) / "log0.csv").read_text().splitlines()
            assert len(lines) == 4  # header and 3 epochs

    def test_a_loader_that_cannot_be_sharded_is_named_on_every_rank(self) -> None:
        """A list of batches is refused with a ShardingError on both ranks, without a hang."""
        for message in values(run_ranks(_rank_unshardable)):
            assert "Cannot shard a list" in message


DECIDE_EPOCH, DECIDE_STEP = 2, 5
STEPS = 8  # per epoch: 64 examples, 32 per rank, batches of 4


class _Decider(Callback):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.epoch = 0

    def on_epoch_begin(self, epoch_number: int, logs: dict[str, Any]) -> None:
        self.epoch = epoch_number

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        if self.epoch == DECIDE_EPOCH and batch_number == DECIDE_STEP:
            if self.kind == "stop":
                self.model.stop_training = True
            elif self.kind == "error":
                raise RuntimeError("callback failed")


class _NanAt:
    """A loss that is nan at one step of one epoch on this rank."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        loss = torch.nn.functional.cross_entropy(y_pred, y_true)
        if self.calls == STEPS * (DECIDE_EPOCH - 1) + DECIDE_STEP:
            return loss * math.nan
        return loss


class _Counter(Callback):
    """Counts the training steps run (also those of a pass an exception ends)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps = 0

    def on_train_batch_end(self, batch_number: int, logs: dict[str, Any]) -> None:
        self.steps += 1


def _rank_stop(rank: int, world: int, kind: str, decider: int) -> dict[str, Any]:
    model = _model()
    counter = _Counter()
    callbacks: list[Any] = [counter]
    if rank == decider:
        if kind in ("stop", "error"):
            callbacks.append(_Decider(kind))
        elif kind == "nan":
            model.loss_function = _NanAt()
        elif kind == "early":  # a callback only this rank has: stops after epoch 1
            callbacks.append(epochal.EarlyStopping(monitor="loss", mode="max", patience=0,
                                                   min_delta=1e9))
    if kind == "nan":
        callbacks.append(epochal.TerminateOnNaN())
    train = DataLoader(_data(N_TRAIN, 1), batch_size=4, shuffle=True)
    try:
        history = model.fit_generator(train, epochs=4, verbose=False, callbacks=callbacks)
    except Exception as exc:
        return {"error": type(exc).__name__, "step": counter.steps}
    assert counter.steps == model.global_step
    return {"epochs": len(history), "step": counter.steps, "complete": model.epoch_complete}


class TestStopConsensus:
    @pytest.mark.parametrize("decider", [0, 1])
    @pytest.mark.parametrize("kind", ["stop", "nan", "error", "early"])
    def test_every_rank_stops_at_the_same_point_within_two_steps(
        self, kind: str, decider: int
    ) -> None:
        """A stop request, a nan loss, a callback exception or an early stop taken on one rank
        ends the training on every rank at the same step, at most 2 steps later."""
        results = values(run_ranks(_rank_stop, kind, decider))
        assert results[0]["step"] == results[1]["step"]
        if kind == "early":
            assert [r["epochs"] for r in results] == [2, 2]  # stopped after epoch 2's check
            return
        decided_at = STEPS * (DECIDE_EPOCH - 1) + DECIDE_STEP
        assert decided_at <= results[0]["step"] <= decided_at + 2
        if kind == "error":
            assert results[decider]["error"] == "RuntimeError"
            assert results[1 - decider]["error"] == "PeerFailedError"
        else:
            assert [r["epochs"] for r in results] == [DECIDE_EPOCH, DECIDE_EPOCH]


def _rank_predictions(rank: int, world: int) -> tuple[int, float, int]:
    model = _model()
    loader = DataLoader(_data(N_VALID, 3), batch_size=64)
    loss, _, preds = model.evaluate_generator(loader, return_pred=True, verbose=False)
    predicted = model.predict_generator(DataLoader(_data(N_VALID, 3).tensors[0], batch_size=64),
                                        verbose=False)
    return len(preds), float(loss), len(predicted)


class TestEvaluationReturningPredictions:
    def test_every_rank_gets_the_whole_result(self) -> None:
        """With return_pred, and for predict, every rank runs the whole data (1,001 outputs)
        and the loss equals one process's: nothing is sharded or reduced twice."""
        model = _model()
        expected = model.evaluate_generator(DataLoader(_data(N_VALID, 3), batch_size=64),
                                            verbose=False)[0]
        for count, loss, predicted in values(run_ranks(_rank_predictions)):
            assert (count, predicted) == (N_VALID, N_VALID)
            assert loss == pytest.approx(expected, abs=1e-6)
