"""The training loop on one process: goal, max epochs, divergence, timing fields."""

from __future__ import annotations

import math

import torch

from mlbench_ray.config import load_job
from mlbench_ray.tasks.base import WorkerContext
from mlbench_ray.training.loop import run_training
from tests.test_config import REPO

CPU = torch.device("cpu")


def small_job(**overrides: object):
    base = {
        "workers": [1],
        "data.synthetic_train_samples": 256,
        "data.synthetic_test_samples": 64,
        "task_options.batch_size_per_worker": 32,
    }
    return load_job(REPO / "jobs" / "quickstart.yaml", {**base, **overrides})


def test_reaches_goal_and_records_times() -> None:
    """A reachable goal ends the trial as converged with both times and the curve."""
    epochs_seen = []
    result = run_training(
        small_job(**{"goal.value": 0.5, "max_epochs": 8}),
        WorkerContext(1, 0, 0, CPU, seed=0),
        on_epoch=epochs_seen.append,
    )
    assert result["status"] == "converged"
    assert result["final_metric"] >= 0.5
    assert result["time_to_goal_s"] == result["curve"][-1]["elapsed_s"]
    assert 0 < result["train_time_s"] < result["time_to_goal_s"]
    assert len(epochs_seen) == result["epochs"]
    assert result["steps"] == result["epochs"] * 8
    assert set(result["step_time"]) == {"data_s", "compute_s", "communication_s"}


def test_max_epochs_is_not_converged() -> None:
    """An unreachable goal runs max epochs and is not converged, with no time to goal."""
    result = run_training(
        small_job(**{"goal.value": 1.0, "max_epochs": 1, "max_steps_per_epoch": 2}),
        WorkerContext(1, 0, 0, CPU, seed=0),
    )
    assert result["status"] == "not_converged"
    assert result["time_to_goal_s"] is None
    assert result["epochs"] == 1
    assert result["steps"] == 2


def test_nan_loss_is_diverged() -> None:
    """A learning rate that blows the loss up marks the trial diverged after that epoch."""
    result = run_training(
        small_job(**{"max_epochs": 3, "task_options.lr_per_worker": 1e12, "task_options.warmup": False}),
        WorkerContext(1, 0, 0, CPU, seed=0),
    )
    assert result["status"] == "diverged"
    assert result["diverged_at_step"] == result["epochs"] * 8
    assert result["time_to_goal_s"] is None
    assert not math.isfinite(result["curve"][-1]["train_loss"]) or not math.isfinite(
        result["curve"][-1]["val_loss"]
    )


def test_warmup_reaches_peak_lr_after_log2_w_epochs() -> None:
    """With 4 workers the rate rises from 0.02 to 0.08 over 2 epochs of steps."""
    from mlbench_ray.tasks.image_classification import ImageClassificationTask

    job = small_job(workers=[4], **{"data.synthetic_train_samples": 512})
    task = ImageClassificationTask(job, WorkerContext(4, 0, 0, CPU, seed=0))
    assert task.steps_per_epoch == 4
    assert task.warmup_steps == 8
    task.before_step(0)
    assert task.current_lr() == 0.02 + 0.06 / 8
    for step in range(1, 8):
        task.before_step(step)
    assert task.current_lr() == 0.08
