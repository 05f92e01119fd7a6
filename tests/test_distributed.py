"""Distributed behaviour on real gloo ranks: exactly-once evaluation, aggregation, metric reduction."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from mlbench_ray.config import load_job
from mlbench_ray.data.sharding import eval_range, steps_per_epoch, train_shard
from mlbench_ray.distributed.aggregation import make_aggregator
from mlbench_ray.distributed.metrics import all_reduce_sums
from mlbench_ray.tasks.base import WorkerContext
from mlbench_ray.tasks.image_classification import ImageClassificationTask
from tests.helpers import run_ranks
from tests.test_config import REPO


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_eval_ranges_cover_each_sample_once(world_size: int) -> None:
    """Evaluation ranges of all ranks cover 10,000 samples exactly once."""
    covered = []
    for rank in range(world_size):
        start, stop = eval_range(10_000, world_size, rank)
        covered.extend(range(start, stop))
    assert sorted(covered) == list(range(10_000))


def test_train_shards_equal_and_disjoint() -> None:
    """Training shards have equal sizes, share no index and change with the epoch."""
    shards = [train_shard(1003, 3, rank, seed=7, epoch=1) for rank in range(3)]
    assert {len(s) for s in shards} == {334}
    assert len(set(torch.cat(shards).tolist())) == 3 * 334
    assert not torch.equal(train_shard(1003, 3, 0, seed=7, epoch=2), shards[0])
    assert steps_per_epoch(1003, 3, 100) == 3


def _evaluate_synthetic(rank: int, world_size: int) -> dict[str, float]:
    job = load_job(
        REPO / "jobs" / "quickstart.yaml",
        {"data.synthetic_test_samples": 1000, "data.synthetic_train_samples": 96, "workers": [world_size]},
    )
    context = WorkerContext(world_size, rank, rank, torch.device("cpu"), seed=0)
    task = ImageClassificationTask(job, context)
    totals = task.evaluate(task.model)
    local_samples = totals["samples"]
    reduced = all_reduce_sums(totals, context.device)
    return {"local": local_samples, **reduced}


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_evaluation_counts_each_test_image_once(world_size: int) -> None:
    """1, 2 and 3 ranks evaluate exactly the 1,000 test images, with the same global accuracy."""
    results = run_ranks(_evaluate_synthetic, world_size)
    assert sum(r["local"] for r in results) == 1000
    for result in results:
        assert result["samples"] == 1000
    # Identical weights on every rank, so the global count of correct predictions is rank-independent.
    assert len({r["correct"] for r in results}) == 1


def _accuracy_from_unequal_shards(rank: int, world_size: int) -> dict[str, float]:
    # Rank 0: 3 of 3 correct; rank 1: 0 of 1 correct. Global accuracy is 3/4, the mean of ratios 1/2.
    local = {"correct": 3.0, "samples": 3.0} if rank == 0 else {"correct": 0.0, "samples": 1.0}
    return all_reduce_sums(local, torch.device("cpu"))


def test_metric_reduction_sums_before_dividing() -> None:
    """Accuracy is reduced from summed counts, not averaged over ranks."""
    results = run_ranks(_accuracy_from_unequal_shards, 2)
    for totals in results:
        assert totals["correct"] / totals["samples"] == pytest.approx(0.75)


def _one_step(
    rank: int, world_size: int, scheme: str, bucket_mb: float | None = None
) -> dict[str, list[torch.Tensor]]:
    job = load_job(
        REPO / "jobs" / "quickstart.yaml",
        {
            "aggregation": scheme,
            "workers": [world_size],
            "data.synthetic_train_samples": 64,
            "data.synthetic_test_samples": 8,
            "task_options.batch_size_per_worker": 16,
        },
    )
    context = WorkerContext(world_size, rank, rank, torch.device("cpu"), seed=3)
    task = ImageClassificationTask(job, context)
    # Different ranks initialise differently here, to check that both schemes start from rank 0's weights.
    with torch.no_grad():
        for param in task.model.parameters():
            param.add_(0.01 * rank)
    aggregator = make_aggregator(scheme, task.model, bucket_mb)
    for step, batch in enumerate(task.train_batches(epoch=1)):
        if step == 2:
            break
        task.before_step(step)
        loss = task.training_loss(aggregator.train_model, batch)
        task.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        aggregator.reduce_gradients()
        task.optimizer.step()
    dist.barrier()
    buffers = [b.detach().clone() for b in task.model.buffers()]
    aggregator.sync_buffers()
    return {
        "params": [p.detach().clone() for p in task.model.parameters()],
        "buffers": buffers,
        "synced_buffers": [b.detach().clone() for b in task.model.buffers()],
    }


def test_allreduce_and_ddp_give_the_same_update() -> None:
    """Two steps on 2 gloo ranks: flat all-reduce and DDP end with the same weights on every rank."""
    allreduce = run_ranks(_one_step, 2, "allreduce")
    bucketed = run_ranks(_one_step, 2, "allreduce", 0.05)
    ddp = run_ranks(_one_step, 2, "ddp")
    for rank in range(2):
        for kind in ("params", "buffers"):
            for tensor_a, tensor_d in zip(allreduce[rank][kind], ddp[rank][kind], strict=True):
                torch.testing.assert_close(tensor_a, tensor_d, rtol=1e-5, atol=1e-6)
            for tensor_b, tensor_d in zip(bucketed[rank][kind], ddp[rank][kind], strict=True):
                torch.testing.assert_close(tensor_b, tensor_d, rtol=1e-5, atol=1e-6)
    # Parameters agree across ranks. Buffers are each rank's statistics from its own batches.
    for param_0, param_1 in zip(allreduce[0]["params"], allreduce[1]["params"], strict=True):
        torch.testing.assert_close(param_0, param_1)


def test_sync_buffers_copies_rank_0() -> None:
    """Ranks train on different data, so their batch-norm statistics differ until `sync_buffers`."""
    for scheme in ("allreduce", "ddp"):
        ranks = run_ranks(_one_step, 2, scheme, 0.05)
        running = [
            (buffer_0, buffer_1)
            for buffer_0, buffer_1 in zip(ranks[0]["buffers"], ranks[1]["buffers"], strict=True)
            if buffer_0.is_floating_point()
        ]
        assert any(not torch.allclose(buffer_0, buffer_1) for buffer_0, buffer_1 in running), scheme
        for rank in range(2):
            for synced, rank_0 in zip(ranks[rank]["synced_buffers"], ranks[0]["buffers"], strict=True):
                torch.testing.assert_close(synced, rank_0, rtol=0, atol=0)


def test_allreduce_update_differs_from_no_averaging() -> None:
    """The averaged update is not what a rank would compute on its own data alone."""
    allreduce = run_ranks(_one_step, 2, "allreduce")
    alone = _one_step_single()
    assert any(not torch.allclose(a, b) for a, b in zip(allreduce[0]["params"], alone, strict=True))


def _one_step_single() -> list[torch.Tensor]:
    job = load_job(
        REPO / "jobs" / "quickstart.yaml",
        {
            "data.synthetic_train_samples": 64,
            "data.synthetic_test_samples": 8,
            "task_options.batch_size_per_worker": 16,
            "workers": [1],
        },
    )
    task = ImageClassificationTask(job, WorkerContext(1, 0, 0, torch.device("cpu"), seed=3))
    aggregator = make_aggregator("allreduce", task.model)
    for step, batch in enumerate(task.train_batches(epoch=1)):
        if step == 2:
            break
        task.before_step(step)
        loss = task.training_loss(aggregator.train_model, batch)
        task.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        task.optimizer.step()
    return [p.detach().clone() for p in task.model.parameters()]


def test_allreduce_buckets_follow_backward_order() -> None:
    """Small buckets split ResNet-20's gradients into several, last layer first; None gives one."""
    from mlbench_ray.distributed.aggregation import BucketedAllReduce
    from mlbench_ray.models.resnet import resnet20

    model = resnet20()
    bucketed = BucketedAllReduce(model, bucket_bytes=64 * 1024)
    assert len(bucketed._buckets) > 5
    assert bucketed._buckets[0].params[0] is model.fc.bias
    total = sum(p.numel() for p in model.parameters())
    assert sum(b.flat.numel() for b in bucketed._buckets) == total
    assert len(BucketedAllReduce(model, bucket_bytes=None)._buckets) == 1


def _checkpointed_buffers(rank: int, world_size: int) -> list[torch.Tensor]:
    from mlbench_ray.training.loop import run_training

    job = load_job(
        REPO / "jobs" / "quickstart.yaml",
        {
            "workers": [world_size],
            "max_epochs": 2,
            "goal.value": 1.0,
            "max_steps_per_epoch": 2,
            "data.synthetic_train_samples": 64,
            "data.synthetic_test_samples": 8,
            "task_options.batch_size_per_worker": 16,
        },
    )
    states: list[dict] = []
    run_training(
        job,
        WorkerContext(world_size, rank, rank, torch.device("cpu"), seed=3),
        on_checkpoint=lambda state, record: states.append(state),
    )
    model_state = states[0]["task"]["model"]
    return [value for name, value in model_state.items() if "running" in name]


def test_checkpoint_statistics_match_across_ranks() -> None:
    """After an epoch on different data, both ranks checkpoint rank 0's batch-norm statistics."""
    ranks = run_ranks(_checkpointed_buffers, 2)
    assert ranks[0], "the checkpoint contains no running statistics"
    for buffer_0, buffer_1 in zip(ranks[0], ranks[1], strict=True):
        torch.testing.assert_close(buffer_0, buffer_1, rtol=0, atol=0)
