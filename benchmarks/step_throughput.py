"""Step throughput of the project's training step against a plain PyTorch loop, same model and data.

    python benchmarks/step_throughput.py [--steps 30] [--repeats 5] [--threads 1]

Both sides train ResNet-20 (the image task's model) with SGD (momentum 0.9, weight decay 1e-4) on
batches of 128 synthetic 32x32 images held in memory, one process, `--threads` torch threads. The
project's side runs `run_training`, the loop every worker runs, with its step timer and aggregation
hooks. The evaluation at the end of its epoch is not in the figure. The plain side is a bare
forward/backward/step loop. Augmentation is off on both sides, so the ratio measures the loop's own
cost; `data_loading.py` measures the data share. The two sides alternate, `--repeats` times each, and
the table shows medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from mlbench_ray.config import JobSpec, load_job
from mlbench_ray.models.resnet import resnet20
from mlbench_ray.tasks.base import WorkerContext
from mlbench_ray.training.loop import run_training

REPO = Path(__file__).resolve().parents[1]
BATCH = 128


def one_epoch_job(steps: int, augment: bool) -> JobSpec:
    """Return a 1-worker job of one epoch of `steps` ResNet-20 steps on synthetic data, batch 128."""
    return load_job(
        REPO / "jobs" / "quickstart.yaml",
        {
            "workers": [1],
            "max_epochs": 1,
            "goal.value": 1.0,
            "max_steps_per_epoch": steps,
            "data.synthetic_train_samples": BATCH * steps,
            "data.synthetic_test_samples": 8,
            "task_options.batch_size_per_worker": BATCH,
            "task_options.augment": augment,
        },
    )


def project_samples_per_s(steps: int) -> float:
    job = one_epoch_job(steps, augment=False)
    result = run_training(job, WorkerContext(1, 0, 0, torch.device("cpu"), seed=0))
    return float(result["samples_per_s"])


def plain_samples_per_s(steps: int) -> float:
    torch.manual_seed(0)
    images = torch.randn(BATCH * steps, 3, 32, 32)
    labels = torch.randint(0, 10, (BATCH * steps,))
    model = resnet20()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        batch = slice(step * BATCH, (step + 1) * BATCH)
        loss = loss_fn(model(images[batch]), labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return BATCH * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per side")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    project_sps, plain_sps = [], []
    plain_samples_per_s(3)  # warm-up: first-call allocations stay out of the figures
    for _ in range(args.repeats):
        project_sps.append(project_samples_per_s(args.steps))
        plain_sps.append(plain_samples_per_s(args.steps))
    ratios = [p / q for p, q in zip(project_sps, plain_sps, strict=True)]
    print(f"ResNet-20, batch {BATCH}, {args.steps} steps, {args.threads} thread(s), {args.repeats} repeats")
    print("| Side | Median samples/s | Runs |")
    print("|---|---|---|")
    print_row(
        "project (run_training)", f"{statistics.median(project_sps):.1f}", [round(v) for v in project_sps]
    )
    print_row("plain PyTorch loop", f"{statistics.median(plain_sps):.1f}", [round(v) for v in plain_sps])
    print_row("ratio project / plain", f"{statistics.median(ratios):.3f}", [round(r, 3) for r in ratios])


def print_row(name: str, median: str, runs: list) -> None:
    print(f"| {name} | {median} | {runs} |")


if __name__ == "__main__":
    main()
