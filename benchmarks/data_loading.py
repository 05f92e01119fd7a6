"""Data-loading share of the training step for each task, through the loop every worker runs.

    python benchmarks/data_loading.py [--steps 20] [--repeats 3] [--threads 1]

For each task, the loop's step timer splits every step into data wait, compute and communication. The
data share is data / (data + compute + communication), the median over `--repeats` runs of `--steps`
steps on one process. The image task runs ResNet-20 at batch 128 on synthetic 32x32 images, with its
per-sample random crop and flip done on batches of tensors, and once without augmentation for
comparison. The language-modelling tasks' data shares come from `language_step_throughput.py`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_throughput import one_epoch_job, print_row  # noqa: E402

from mlbench_ray.tasks.base import WorkerContext  # noqa: E402
from mlbench_ray.training.loop import run_training  # noqa: E402


def data_share(steps: int, augment: bool) -> float:
    job = one_epoch_job(steps, augment)
    step = run_training(job, WorkerContext(1, 0, 0, torch.device("cpu"), seed=0))["step_time"]
    total = step["data_s"] + step["compute_s"] + (step["communication_s"] or 0.0)
    return step["data_s"] / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"{args.steps} steps, {args.threads} thread(s), {args.repeats} runs each, CPU")
    print("| Task | Data share of step time (median) | Runs |")
    print("|---|---|---|")
    for label, augment in (
        ("image classification, ResNet-20, augmented", True),
        ("same, no augmentation", False),
    ):
        shares = [data_share(args.steps, augment) for _ in range(args.repeats)]
        print_row(label, f"{statistics.median(shares):.2%}", [f"{s:.2%}" for s in shares])


if __name__ == "__main__":
    main()
