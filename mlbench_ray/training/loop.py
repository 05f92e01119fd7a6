"""The training loop every task runs on every rank, and its Ray Train entry point.

The clock starts after a barrier, once the model and data are built, and runs until the evaluation
that reaches the goal. Two times are kept: `time_to_goal_s`, wall clock including evaluation (as MLPerf
counts it), and `train_time_s`, the sum of training-step times (as MLBench counted it). The goal is
checked on metrics summed over all ranks, so every rank takes the same decision at the same step.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from mlbench_ray.config import JobSpec
from mlbench_ray.distributed.aggregation import make_aggregator
from mlbench_ray.distributed.metrics import all_reduce_sums
from mlbench_ray.tasks import get_task_class
from mlbench_ray.tasks.base import WorkerContext
from mlbench_ray.training.faults import inject_faults
from mlbench_ray.training.timer import StepTimer, device_synchronizer

logger = logging.getLogger(__name__)

EpochCallback = Callable[[dict[str, Any]], None]


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _gather_device_names(device: torch.device) -> list[str]:
    name = _device_name(device)
    if not (dist.is_available() and dist.is_initialized()):
        return [name]
    names: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(names, name)
    return [str(n) for n in names]


def run_training(
    job: JobSpec, context: WorkerContext, on_epoch: EpochCallback | None = None
) -> dict[str, Any]:
    """Train the job's task on this rank until the goal or max epochs; return the trial result.

    Every rank returns the same result; `on_epoch` is called on every rank after each evaluation.
    """
    task = get_task_class(job.task)(job, context)
    aggregator = make_aggregator(job.aggregation, task.model, job.allreduce_bucket_mb)
    # Compiled lazily on the first step, inside the timed region; evaluation stays eager.
    train_model = torch.compile(aggregator.train_model) if job.compile else aggregator.train_model
    device_names = _gather_device_names(context.device)
    synchronize = device_synchronizer(context.device)
    goal = job.goal.active
    description = task.describe()

    timer = StepTimer(synchronize)
    curve: list[dict[str, Any]] = []
    status = "not_converged"
    time_to_goal_s: float | None = None
    diverged_at_step: int | None = None
    global_step = 0
    total_samples = 0  # this rank's training samples; every rank trains as many
    best_metric: float | None = None

    _barrier()
    synchronize()
    start = time.perf_counter()
    # Wall-clock time of the start, for MLPerf-style logs; durations use the monotonic clock above.
    start_unix_s = time.time()

    for epoch in range(1, job.max_epochs + 1):
        epoch_start = time.perf_counter()
        epoch_step_time = timer.step_time_s
        loss_sum = torch.zeros((), dtype=torch.float64, device=context.device)
        epoch_samples = 0
        epoch_steps = task.epoch_steps(epoch)
        batches = iter(task.train_batches(epoch))
        if job.faults:
            inject_faults(job.faults, context.world_size, context.world_rank, epoch, task.model)

        for _ in range(epoch_steps):
            timer.start_step()

            # Data: next batch, already augmented and on the device.
            batch = next(batches)
            timer.lap("data")

            # Buffers (batch-norm statistics) from rank 0, for the all-reduce scheme.
            aggregator.before_forward()
            timer.lap("communication")

            # Forward and backward.
            task.before_step(global_step)
            loss = task.training_loss(train_model, batch)
            task.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            timer.lap("compute")

            # Gradient averaging (a no-op for DDP, which overlaps it with backward).
            aggregator.reduce_gradients()
            timer.lap("communication")

            task.before_optimizer_step()
            task.optimizer.step()
            loss_sum += loss.detach().double()
            epoch_samples += task.batch_samples(batch)
            timer.lap("compute")
            timer.end_step()
            global_step += 1

        # Evaluation on every rank's share of the test set, summed over ranks.
        totals = task.evaluate(aggregator.eval_model)
        totals["train_loss_sum"] = float(loss_sum)
        totals["train_steps"] = float(epoch_steps)
        totals = all_reduce_sums(totals, context.device)
        evaluation = task.metric_from_totals(totals)
        train_loss = totals["train_loss_sum"] / max(totals["train_steps"], 1.0)
        synchronize()
        elapsed_s = time.perf_counter() - start

        lr = task.current_lr()
        task.after_evaluation(evaluation)
        if math.isfinite(evaluation.metric):
            best_metric = (
                evaluation.metric
                if best_metric is None
                else (
                    max(best_metric, evaluation.metric)
                    if task.higher_is_better
                    else min(best_metric, evaluation.metric)
                )
            )
        epoch_train_s = timer.step_time_s - epoch_step_time
        record = {
            "epoch": epoch,
            "step": global_step,
            "elapsed_s": elapsed_s,
            "epoch_s": time.perf_counter() - epoch_start,
            "metric": evaluation.metric,
            "val_loss": evaluation.loss,
            "train_loss": train_loss,
            "lr": lr,
            "samples_per_s": epoch_samples * context.world_size / max(epoch_train_s, 1e-9),
            **task.epoch_details(),
        }
        total_samples += epoch_samples
        curve.append(record)
        if on_epoch is not None:
            on_epoch(record)

        if not (math.isfinite(train_loss) and math.isfinite(evaluation.loss)):
            # Checked once per epoch, because a per-step check would sync the device every step.
            status = "diverged"
            diverged_at_step = global_step
            break
        if task.goal_reached(evaluation.metric, goal):
            status = "converged"
            time_to_goal_s = elapsed_s
            break

    wall_time_s = time.perf_counter() - start
    train_time_s = timer.step_time_s
    per_step = timer.mean_per_step_s()
    if not aggregator.communication_timed:
        # DDP all-reduces inside backward; that time is part of compute and cannot be split out.
        per_step["communication_s"] = None
    global_samples = total_samples * context.world_size
    return {
        "workers": context.world_size,
        "seed": context.seed,
        "status": status,
        "start_unix_s": start_unix_s,
        "goal": goal,
        "time_to_goal_s": time_to_goal_s,
        "diverged_at_step": diverged_at_step,
        "train_time_s": train_time_s,
        "wall_time_s": wall_time_s,
        "epochs": len(curve),
        "steps": global_step,
        "final_metric": curve[-1]["metric"] if curve else None,
        "best_metric": best_metric,
        "samples_per_s": global_samples / train_time_s if train_time_s > 0 else None,
        "sample_unit": task.sample_unit,
        "step_time": per_step,
        "device_names": device_names,
        "torch_threads": torch.get_num_threads(),
        "task_details": description,
        "curve": curve,
    }


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point: run the job on this worker and, on rank 0, send the result on.

    `config` contains the job (as a plain dict), the trial's seed, and the name and namespace of the
    summarizer actor.
    """
    import ray
    import ray.train
    import ray.train.torch

    job = JobSpec.model_validate(config["job"])
    train_context = ray.train.get_context()
    world_rank = train_context.get_world_rank()
    context = WorkerContext(
        world_size=train_context.get_world_size(),
        world_rank=world_rank,
        local_rank=train_context.get_local_rank(),
        device=ray.train.torch.get_device(),
        seed=int(config["seed"]),
    )
    # Threads follow the CPU allotment so that co-located workers do not oversubscribe cores.
    if job.resources.set_torch_threads:
        torch.set_num_threads(max(1, int(job.resources.cpus_per_worker)))

    summarizer = ray.get_actor(config["summarizer_name"], namespace=config["namespace"])
    trial_key = {"workers": context.world_size, "seed": context.seed}

    def report_epoch(record: dict[str, Any]) -> None:
        if world_rank == 0:
            # Fire and forget: progress must not hold up training.
            summarizer.record_epoch.remote(trial_key, record)

    result = run_training(job, context, on_epoch=report_epoch)
    if world_rank == 0:
        # Wait for the summarizer, so that the result is on disk before the trial ends.
        ray.get(summarizer.record_trial.remote(result))
