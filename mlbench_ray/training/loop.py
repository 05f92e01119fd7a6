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
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
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

CHECKPOINT_FILE = "trial_state.pt"

EpochCallback = Callable[[dict[str, Any]], None]
# Called on every rank after each evaluation that does not end the trial, with the state to save.
CheckpointCallback = Callable[[dict[str, Any], dict[str, Any]], None]
# Called on every rank once the clock has started, with its wall-clock start time.
ClockCallback = Callable[[float], None]


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
    job: JobSpec,
    context: WorkerContext,
    on_epoch: EpochCallback | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    resume: dict[str, Any] | None = None,
    attempt: int = 0,
    clock_start_unix_s: float | None = None,
    on_clock_start: ClockCallback | None = None,
) -> dict[str, Any]:
    """Train the job's task on this rank until the goal or max epochs; return the trial result.

    Every rank returns the same result; `on_epoch` is called on every rank after each evaluation.
    `on_checkpoint` receives the state to save after each evaluation that does not end the trial, and
    `resume` is such a state: training then goes on after its epoch. `attempt` counts the worker
    group's restarts; after a restart the clock runs on from `clock_start_unix_s`, the wall-clock
    start of the first attempt, checkpoint or not.
    """
    task = get_task_class(job.task)(job, context)
    if resume is not None:
        # Before the aggregator: it broadcasts rank 0's weights, and DDP wraps the model as it is.
        task.load_state_dict(resume["task"])
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
    first_epoch = 1
    restarts = attempt
    # The checkpoint epoch each restart continued from; 0 for a restart without a checkpoint.
    restart_epochs: list[int] = [0] * attempt
    if resume is not None:
        curve = list(resume["curve"])
        global_step = int(resume["global_step"])
        total_samples = int(resume["total_samples"])
        best_metric = resume["best_metric"]
        first_epoch = int(resume["epoch"]) + 1
        restart_epochs = [*resume["restart_epochs"], int(resume["epoch"])]
        restart_epochs = [0] * (attempt - len(restart_epochs)) + restart_epochs
        timer.totals_s = dict(resume["timer_totals_s"])
        timer.steps = int(resume["timer_steps"])

    _barrier()
    synchronize()
    start = time.perf_counter()
    # Wall-clock time of the start, for MLPerf-style logs; durations use the monotonic clock above.
    start_unix_s = time.time()
    if clock_start_unix_s is None and resume is not None:
        clock_start_unix_s = float(resume["start_unix_s"])
    if clock_start_unix_s is not None:
        # The clock never stops: the time lost to the failure and the restart counts.
        start_unix_s = clock_start_unix_s
        start -= time.time() - start_unix_s
    if on_clock_start is not None:
        on_clock_start(start_unix_s)

    def evaluate(epoch: int, epoch_step: int, epoch_steps: int, epoch_start: float) -> dict[str, Any]:
        """Evaluate on every rank's share of the test set, summed over ranks; return the record."""
        nonlocal best_metric
        # Rank 0's batch-norm statistics go to every rank, so all ranks evaluate and checkpoint one model.
        aggregator.sync_buffers()
        totals = task.evaluate(aggregator.eval_model)
        totals["train_loss_sum"] = float(interval["loss_sum"])
        totals["train_steps"] = float(interval["steps"])
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
        interval_train_s = timer.step_time_s - interval["step_time_s"]
        record = {
            "epoch": epoch,
            # Epochs done at this evaluation, fractional for evaluations within an epoch.
            "epoch_progress": epoch - 1 + epoch_step / max(epoch_steps, 1),
            "step": global_step,
            "elapsed_s": elapsed_s,
            "epoch_s": time.perf_counter() - epoch_start,
            "metric": evaluation.metric,
            "val_loss": evaluation.loss,
            "train_loss": train_loss,
            "lr": lr,
            "samples_per_s": interval["samples"] * context.world_size / max(interval_train_s, 1e-9),
            **task.epoch_details(),
        }
        interval.update(loss_sum=torch.zeros_like(interval["loss_sum"]), steps=0, samples=0)
        interval["step_time_s"] = timer.step_time_s
        curve.append(record)
        if on_epoch is not None:
            on_epoch(record)
        return record

    # Training loss, steps, samples and step time since the last evaluation.
    interval: dict[str, Any] = {
        "loss_sum": torch.zeros((), dtype=torch.float64, device=context.device),
        "steps": 0,
        "samples": 0,
        "step_time_s": timer.step_time_s,
    }
    for epoch in range(first_epoch, job.max_epochs + 1):
        epoch_start = time.perf_counter()
        epoch_steps = task.epoch_steps(epoch)
        # Evaluations within the epoch, after these steps; the epoch's end always evaluates.
        evaluate_after = {step for step in task.evaluation_points(epoch) if 0 < step < epoch_steps}
        batches = iter(task.train_batches(epoch))
        if job.faults:
            inject_faults(job.faults, context.world_size, context.world_rank, epoch, task.model, restarts)

        record: dict[str, Any] | None = None
        for epoch_step in range(1, epoch_steps + 1):
            timer.start_step()

            # Data: next batch, already augmented and on the device.
            batch = next(batches)
            micro_batches = task.micro_batches(batch)
            timer.lap("data")

            # Forward and backward, once per micro-batch; gradients accumulate, and only the last
            # backward pass communicates.
            task.before_step(global_step)
            task.optimizer.zero_grad(set_to_none=True)
            step_loss = torch.zeros((), dtype=torch.float64, device=context.device)
            for index, micro_batch in enumerate(micro_batches):
                last = index == len(micro_batches) - 1
                with nullcontext() if last else aggregator.no_sync():
                    loss = task.training_loss(train_model, micro_batch)
                    loss.backward()
                step_loss += loss.detach().double()
            timer.lap("compute")

            # Gradient averaging (a no-op for DDP, which overlaps it with backward).
            aggregator.reduce_gradients()
            timer.lap("communication")

            task.before_optimizer_step()
            task.optimizer.step()
            interval["loss_sum"] += step_loss
            interval["steps"] += 1
            step_samples = task.batch_samples(batch)
            interval["samples"] += step_samples
            total_samples += step_samples
            timer.lap("compute")
            timer.end_step()
            global_step += 1

            if epoch_step in evaluate_after or epoch_step == epoch_steps:
                record = evaluate(epoch, epoch_step, epoch_steps, epoch_start)
                if not (math.isfinite(record["train_loss"]) and math.isfinite(record["val_loss"])):
                    # Checked per evaluation, because a per-step check would sync the device every step.
                    status = "diverged"
                    diverged_at_step = global_step
                    break
                if task.goal_reached(record["metric"], goal):
                    status = "converged"
                    time_to_goal_s = record["elapsed_s"]
                    break
        if status != "not_converged":
            break
        if record is None:
            # An epoch of no steps still evaluates, so that every epoch has a record.
            record = evaluate(epoch, 0, 0, epoch_start)
        if on_checkpoint is not None and epoch < job.max_epochs:
            state = {
                "task": task.state_dict(),
                "epoch": epoch,
                "global_step": global_step,
                "total_samples": total_samples,
                "best_metric": best_metric,
                "curve": curve,
                "timer_totals_s": dict(timer.totals_s),
                "timer_steps": timer.steps,
                "start_unix_s": start_unix_s,
                "restart_epochs": restart_epochs,
            }
            on_checkpoint(state, record)

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
        "restarts": restarts,
        "restart_epochs": restart_epochs,
        "train_time_s": train_time_s,
        "wall_time_s": wall_time_s,
        "epochs": curve[-1]["epoch"] if curve else 0,
        "evaluations": len(curve),
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
    from ray.util.metrics import Gauge

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
    # Live throughput of this worker on the dashboard; the summarizer exports the trial-level metrics.
    throughput = Gauge(
        "mlbench_worker_samples_per_second",
        description="Training samples (images, tokens or sequences) per second of one worker, last epoch.",
        tag_keys=("job", "task", "workers", "rank"),
    )
    throughput_tags = {
        "job": job.name,
        "task": job.task,
        "workers": str(context.world_size),
        "rank": str(world_rank),
    }

    def report_epoch(record: dict[str, Any]) -> None:
        throughput.set(float(record["samples_per_s"]) / context.world_size, tags=throughput_tags)
        if world_rank == 0:
            # Fire and forget: progress must not hold up training.
            summarizer.record_epoch.remote(trial_key, record)

    def save_checkpoint(state: dict[str, Any], record: dict[str, Any]) -> None:
        # ray.train.report is a barrier: every rank calls it, and only rank 0 passes a checkpoint.
        # NOTE: a checkpoint counts once Ray Train's controller has collected it, which it does every
        # 2 s (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S). A failure sooner restarts from the one before.
        metrics = {"epoch": record["epoch"], "metric": record["metric"]}
        if world_rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, Path(folder) / CHECKPOINT_FILE)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))

    # Which start of this trial's worker group this is, from the summarizer, which outlives it.
    attempt_info: list[Any] = [None]
    if world_rank == 0:
        attempt_info = [ray.get(summarizer.begin_attempt.remote(trial_key))]
    if dist.is_available() and dist.is_initialized():
        dist.broadcast_object_list(attempt_info, src=0)
    attempt = int(attempt_info[0]["attempt"])

    def record_clock_start(start_unix_s: float) -> None:
        if world_rank == 0:
            ray.get(summarizer.set_clock_start.remote(trial_key, start_unix_s))

    resume = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume = torch.load(
                Path(folder) / CHECKPOINT_FILE, map_location=context.device, weights_only=False
            )
        logger.warning(
            "rank %d: restart %d continues from the checkpoint of epoch %d",
            world_rank,
            attempt,
            resume["epoch"],
        )
    elif attempt > 0:
        logger.warning(
            "rank %d: restart %d starts from epoch 1: no checkpoint was collected before the failure",
            world_rank,
            attempt,
        )

    result = run_training(
        job,
        context,
        on_epoch=report_epoch,
        on_checkpoint=save_checkpoint if job.resources.checkpoint else None,
        resume=resume,
        attempt=attempt,
        clock_start_unix_s=attempt_info[0]["start_unix_s"],
        on_clock_start=record_clock_start,
    )
    if world_rank == 0:
        # Wait for the summarizer, so that the result is on disk before the trial ends.
        ray.get(summarizer.record_trial.remote(result))
