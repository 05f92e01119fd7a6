"""Orchestration overhead and 2-worker scaling of a sweep on this machine.

    python benchmarks/orchestration_scaling.py [--steps 40] [--repeats 3] [--aggregation allreduce]
        [--bucket-mb 0.25 | --bucket-mb none]

Runs the real sweep command on a local Ray instance with ResNet-20 on synthetic data, 1 and 2 workers
of one thread each, no augmentation, one epoch. Both trials do the same global work: 2 x `--steps`
batches of 128 on one worker, `--steps` batches of 128 on each of two. It reports:

- Ray start: `ray.init` on loopback.
- Per-trial overhead: sweep wall time minus the trials' own clock (from the workers' barrier to the end
  of training), divided by the trials: Tune trial start, worker-group start, dataset and model build,
  result writing and report.
- Per-step overhead: the 1-worker step time inside the sweep against the same steps in a plain loop
  (`step_throughput.plain_samples_per_s`) in this process.
- Scaling: samples/s of 2 workers over 1 worker on the same global work, and the communication share.
Medians over `--repeats` sweeps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ray
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_throughput import BATCH, plain_samples_per_s, print_row  # noqa: E402

from mlbench_ray.sweep import NAMESPACE, main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run_sweep(steps: int, aggregation: str, bucket_mb: str, output: Path) -> tuple[float, dict]:
    args = [
        "--aggregation", aggregation,
        "--set", f"allreduce_bucket_mb={'null' if bucket_mb == 'none' else bucket_mb}",
        "--job", str(REPO / "jobs" / "quickstart.yaml"),
        "--workers", "1,2",
        "--max-epochs", "1",
        "--set", "goal.value=1.0",
        "--set", f"data.synthetic_train_samples={BATCH * 2 * steps}",
        "--set", "data.synthetic_test_samples=256",
        "--set", f"task_options.batch_size_per_worker={BATCH}",
        "--set", "task_options.augment=false",
        "--output-dir", str(output),
    ]  # fmt: skip
    start = time.perf_counter()
    status = main(args)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"sweep failed with exit status {status}")
    return elapsed, json.loads((output / "results.json").read_text())


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="batches per worker in the 2-worker trial")
    parser.add_argument("--repeats", type=int, default=3, help="sweeps to run")
    parser.add_argument(
        "--aggregation", default="allreduce", choices=["allreduce", "ddp"], help="gradient aggregation scheme"
    )
    parser.add_argument(
        "--bucket-mb", default="0.25", help="all-reduce bucket size in MiB, or none for one flat buffer"
    )
    args = parser.parse_args()

    start = time.perf_counter()
    ray.init(address="local", namespace=NAMESPACE, _node_ip_address="127.0.0.1", dashboard_host="127.0.0.1")
    ray_start_s = time.perf_counter() - start

    overheads, step_overheads, speedups, comm_shares = [], [], [], []
    rates: dict[int, list[float]] = {1: [], 2: []}
    torch.set_num_threads(1)
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as folder:
            sweep_s, document = run_sweep(
                args.steps, args.aggregation, args.bucket_mb, Path(folder) / f"run{repeat}"
            )
        trials = {t["workers"]: t for t in document["trials"]}
        overheads.append((sweep_s - sum(t["wall_time_s"] for t in trials.values())) / len(trials))
        plain_step_s = BATCH / plain_samples_per_s(2 * args.steps)
        sweep_step_s = trials[1]["train_time_s"] / trials[1]["steps"]
        step_overheads.append(sweep_step_s - plain_step_s)
        speedups.append(trials[2]["samples_per_s"] / trials[1]["samples_per_s"])
        for workers in (1, 2):
            rates[workers].append(trials[workers]["samples_per_s"])
        step = trials[2]["step_time"]
        if step["communication_s"] is not None:  # None under DDP, which overlaps it with backward
            comm_shares.append(
                step["communication_s"] / (step["data_s"] + step["compute_s"] + step["communication_s"])
            )
    ray.shutdown()

    print(
        f"ResNet-20 on synthetic data, {args.aggregation} (buckets: {args.bucket_mb} MiB), batch {BATCH} "
        f"per worker, 1 thread per worker, "
        f"{args.repeats} sweeps"
    )
    print("| Figure | Median | Runs |")
    print("|---|---|---|")
    print_row("Ray start (local, loopback)", f"{ray_start_s:.1f} s", [round(ray_start_s, 1)])
    print_row("Overhead per trial", f"{statistics.median(overheads):.1f} s", [round(v, 1) for v in overheads])
    step_ms = [round(v * 1000, 1) for v in step_overheads]
    print_row("Overhead per step (1 worker, vs plain loop)", f"{statistics.median(step_ms):.1f} ms", step_ms)
    for workers in (1, 2):
        runs = [round(v, 1) for v in rates[workers]]
        print_row(f"{workers}-worker samples/s", f"{statistics.median(rates[workers]):.1f}", runs)
    speedup_runs = [round(v, 2) for v in speedups]
    print_row("2-worker speedup, same global work", f"{statistics.median(speedups):.2f}x", speedup_runs)
    shares = [round(v, 3) for v in comm_shares]
    share_text = f"{statistics.median(comm_shares):.1%}" if comm_shares else "n/a (overlapped)"
    print_row("Communication share, 2 workers", share_text, shares)


if __name__ == "__main__":
    main_benchmark()
