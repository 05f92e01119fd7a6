"""Fast paths compute the same function as the plain path: same loss and weights after training steps."""

from __future__ import annotations

import torch

from mlbench_ray.config import load_job
from mlbench_ray.tasks.base import WorkerContext
from mlbench_ray.tasks.image_classification import ImageClassificationTask
from mlbench_ray.training.loop import run_training
from tests.test_config import REPO

CPU = torch.device("cpu")


def small_job(**overrides: object):
    base = {
        "workers": [1],
        "max_epochs": 1,
        "max_steps_per_epoch": 2,
        "goal.value": 1.0,
        "data.synthetic_train_samples": 64,
        "data.synthetic_test_samples": 32,
        "task_options.batch_size_per_worker": 16,
    }
    return load_job(REPO / "jobs" / "quickstart.yaml", {**base, **overrides})


def two_steps(**options: object) -> tuple[list[float], list[torch.Tensor]]:
    """Train two steps with the given task options; return the losses and the final weights."""
    job = small_job(**{f"task_options.{key}": value for key, value in options.items()})
    task = ImageClassificationTask(job, WorkerContext(1, 0, 0, CPU, seed=0))
    losses = []
    for step, batch in enumerate(task.train_batches(epoch=1)):
        task.before_step(step)
        loss = task.training_loss(task.model, batch)
        task.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        task.optimizer.step()
        losses.append(float(loss.detach()))
    return losses, [p.detach().clone() for p in task.model.parameters()]


def test_channels_last_same_function() -> None:
    """Channels-last weights and images give the same losses and weights as the default layout."""
    plain_losses, plain_weights = two_steps(channels_last=False)
    fast_losses, fast_weights = two_steps(channels_last=True)
    torch.testing.assert_close(fast_losses, plain_losses, rtol=1e-5, atol=1e-6)
    # Other convolution kernels sum in another order; after two steps weights agree to about 1e-4.
    for fast, plain in zip(fast_weights, plain_weights, strict=True):
        torch.testing.assert_close(fast.contiguous(), plain, rtol=0, atol=1e-3)


def test_bf16_autocast_close_to_fp32() -> None:
    """bf16 autocast gives losses within bf16 precision (about 1%) of full precision."""
    plain_losses, _ = two_steps(autocast="off")
    bf16_losses, _ = two_steps(autocast="bf16")
    torch.testing.assert_close(bf16_losses, plain_losses, rtol=2e-2, atol=2e-2)
    assert bf16_losses != plain_losses  # autocast did change the arithmetic


def test_compile_same_losses() -> None:
    """torch.compile trains to the same losses as eager mode (compiles once, about 35 s on 2 cores)."""
    eager = run_training(small_job(), WorkerContext(1, 0, 0, CPU, seed=0))
    compiled = run_training(small_job(compile=True), WorkerContext(1, 0, 0, CPU, seed=0))
    assert compiled["steps"] == eager["steps"] == 2
    # Fused kernels sum in another order: losses agree to about 1e-4 relative.
    eager_curve, compiled_curve = eager["curve"][0], compiled["curve"][0]
    torch.testing.assert_close(compiled_curve["train_loss"], eager_curve["train_loss"], rtol=1e-3, atol=0)
    torch.testing.assert_close(compiled_curve["val_loss"], eager_curve["val_loss"], rtol=1e-3, atol=0)
