"""Orchestration overhead and 2-worker scaling of a sweep on this machine.

    python benchmarks/orchestration_scaling.py [--steps 40] [--epochs 1] [--repeats 3]
        [--aggregation allreduce | ddp | allreduce,ddp] [--bucket-mb 0.25 | --bucket-mb none] [--skip-plain]

Runs the real sweep command on a local Ray instance with ResNet-20 on synthetic data, 1 and 2 workers
of one thread each, no augmentation, `--epochs` epochs. Both trials do the same global work: 2 x
`--steps` batches of 128 per epoch on one worker, `--steps` batches of 128 per epoch on each of two. It
reports:

- Ray start: a local instance on loopback, started as the sweep starts it (`connect_ray`).
- Per-trial overhead: sweep wall time minus the trials' own clock (from the workers' barrier to the end
  of training), divided by the trials: Tune trial start, worker-group start, dataset and model build,
  result writing and report.
- Per-step overhead: the 1-worker step time inside the sweep against the same steps in a plain loop
  (`step_throughput.plain_samples_per_s`) in this process.
- Scaling: samples/s of 2 workers over 1 worker on the same global work, and the communication share.
  With 2 or more epochs, also the speedup over the epochs after the first, from the rate that each
  epoch's evaluation records. It leaves out the first steps (memory allocation, the first collectives),
  which weigh twice as much in the 2-worker trial because it runs half the steps. A trial can reach the
  goal on synthetic data (100% top-1) in its first epoch, which would end it, so with 2 or more epochs
  the learning rate is 1e-9 and every trial trains all epochs.
Medians over `--repeats` sweeps per scheme. With both schemes, the sweeps alternate between them, and a
last figure divides each scheme's median 2-worker rate by the median 1-worker rate of all sweeps: with
one worker both schemes run the same code.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ray
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_throughput import BATCH, plain_samples_per_s, print_row  # noqa: E402

from mlbench_ray.sweep import connect_ray, main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run_sweep(steps: int, epochs: int, aggregation: str, bucket_mb: str, output: Path) -> tuple[float, dict]:
    args = [
        "--aggregation", aggregation,
        "--set", f"allreduce_bucket_mb={'null' if bucket_mb == 'none' else bucket_mb}",
        "--job", str(REPO / "jobs" / "quickstart.yaml"),
        "--workers", "1,2",
        "--max-epochs", str(epochs),
        "--set", "goal.value=1.0",
        "--set", f"data.synthetic_train_samples={BATCH * 2 * steps}",
        "--set", "data.synthetic_test_samples=256",
        "--set", f"task_options.batch_size_per_worker={BATCH}",
        "--set", "task_options.augment=false",
        "--output-dir", str(output),
        # Ray Train's run folders and checkpoints go with the results, not into ~/ray_results.
        "--storage-path", str(output / "ray_storage"),
    ]  # fmt: skip
    if epochs > 1:
        # A trial can reach the goal (100% top-1) on synthetic data in its first epoch, which would end
        # it. At this rate no trial learns enough to reach it, and a step costs the same at any rate.
        args += ["--set", "task_options.lr_per_worker=1e-9"]
    start = time.perf_counter()
    status = main(args)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"sweep failed with exit status {status}")
    return elapsed, json.loads((output / "results.json").read_text())


def is_positive_number(text: str) -> bool:
    """Return whether `text` is a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value) and value > 0


def epoch_rates(trial: dict, epochs: int) -> list[float]:
    """Return the samples/s of each epoch of a trial, from its evaluation records."""
    rates = [record["samples_per_s"] for record in trial["curve"]]
    if len(rates) < epochs:
        raise SystemExit(
            f"the {trial['workers']}-worker trial trained {len(rates)} of {epochs} epochs (status "
            f"{trial['status']}), so its epochs after the first cannot be measured"
        )
    return rates


def rate_after_first_epoch(rates: list[float]) -> float:
    """Return the samples/s of the epochs after the first, as the harmonic mean of equal-sized epochs."""
    return statistics.harmonic_mean(rates[1:])


def print_scheme(scheme: str, args: argparse.Namespace, ray_start_s: float, figures: dict[str, list]) -> None:
    """Print one scheme's table of medians and runs."""
    print(
        f"\nResNet-20 on synthetic data, {scheme} (buckets: {args.bucket_mb} MiB), batch {BATCH} per worker, "
        f"1 thread per worker, sweeps: {len(figures['speedups'])}"
    )
    print("| Figure | Median | Runs |")
    print("|---|---|---|")
    print_row("Ray start (local, loopback)", f"{ray_start_s:.1f} s", [round(ray_start_s, 1)])
    overheads = figures["overheads"]
    print_row("Overhead per trial", f"{statistics.median(overheads):.1f} s", [round(v, 1) for v in overheads])
    step_ms = [round(v * 1000, 1) for v in figures["step_overheads"]]
    if step_ms:
        print_row(
            "Overhead per step (1 worker, vs plain loop)", f"{statistics.median(step_ms):.1f} ms", step_ms
        )
    for workers in (1, 2):
        rates = figures[f"rates{workers}"]
        print_row(
            f"{workers}-worker samples/s", f"{statistics.median(rates):.1f}", [round(v, 1) for v in rates]
        )
    speedups = figures["speedups"]
    speedup_runs = [round(v, 2) for v in speedups]
    print_row("2-worker speedup, same global work", f"{statistics.median(speedups):.2f}x", speedup_runs)
    if args.epochs > 1:
        for workers in (1, 2):
            # A run lists one sweep's epochs. The median is over all sweeps' epochs after the first.
            sweeps = figures[f"epoch_rates{workers}"]
            later_rates = [rate for rates in sweeps for rate in rates[1:]]
            runs = [[round(rate, 1) for rate in rates] for rates in sweeps]
            label = f"{workers}-worker samples/s per epoch (median: epochs after the first)"
            print_row(label, f"{statistics.median(later_rates):.1f}", runs)
        after_first = [
            rate_after_first_epoch(rates2) / rate_after_first_epoch(rates1)
            for rates1, rates2 in zip(figures["epoch_rates1"], figures["epoch_rates2"], strict=True)
        ]
        after_first_runs = [round(v, 2) for v in after_first]
        median_text = f"{statistics.median(after_first):.2f}x"
        print_row("2-worker speedup, epochs after the first", median_text, after_first_runs)
    shares = figures["comm_shares"]
    share_text = f"{statistics.median(shares):.1%}" if shares else "n/a (overlapped)"
    print_row("Communication share, 2 workers", share_text, [round(v, 3) for v in shares])


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--steps", type=int, default=40, help="batches per worker and epoch in the 2-worker trial"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=1,
        help="epochs per trial, each of --steps batches per worker in the 2-worker trial. With 2 or more, "
        "the table adds the speedup over the epochs after the first, and the learning rate is 1e-9 so "
        "that no trial stops at the goal",
    )
    parser.add_argument("--repeats", type=int, default=3, help="sweeps to run per scheme")
    parser.add_argument(
        "--aggregation",
        default="allreduce",
        help="gradient aggregation scheme, allreduce or ddp, or both comma-separated: the schemes then "
        "alternate, in reverse order on every second repeat",
    )
    parser.add_argument(
        "--bucket-mb", default="0.25", help="all-reduce bucket size in MiB, or none for one flat buffer"
    )
    parser.add_argument(
        "--skip-plain",
        action="store_true",
        help="leave out the plain loop after each sweep, and with it the per-step overhead",
    )
    args = parser.parse_args()
    schemes = args.aggregation.split(",")
    unknown = sorted(set(schemes) - {"allreduce", "ddp"})
    if unknown or len(set(schemes)) != len(schemes):
        parser.error(
            f"--aggregation {args.aggregation!r} is invalid: use allreduce, ddp or both, comma-separated, "
            f"each once"
        )
    for name in ("steps", "epochs", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)} is invalid: use an integer of 1 or more")
    if args.bucket_mb != "none" and not is_positive_number(args.bucket_mb):
        parser.error(f"--bucket-mb {args.bucket_mb!r} is invalid: use a size in MiB above 0, or none")

    start = time.perf_counter()
    connect_ray(None)  # the sweep's own start of a local instance, with its settings
    ray_start_s = time.perf_counter() - start

    keys = (
        "overheads",
        "step_overheads",
        "speedups",
        "comm_shares",
        "rates1",
        "rates2",
        "epoch_rates1",
        "epoch_rates2",
    )
    figures: dict[str, dict[str, list]] = {scheme: {key: [] for key in keys} for scheme in schemes}
    torch.set_num_threads(1)
    for repeat in range(args.repeats):
        # Alternating the order cancels any advantage of running at a given point of the repeat.
        for scheme in schemes if repeat % 2 == 0 else schemes[::-1]:
            scheme_figures = figures[scheme]
            with tempfile.TemporaryDirectory() as folder:
                sweep_s, document = run_sweep(
                    args.steps,
                    args.epochs,
                    scheme,
                    args.bucket_mb,
                    Path(folder) / f"{scheme}{repeat}",
                )
            trials = {t["workers"]: t for t in document["trials"]}
            overhead = (sweep_s - sum(t["wall_time_s"] for t in trials.values())) / len(trials)
            scheme_figures["overheads"].append(overhead)
            if not args.skip_plain:
                plain_step_s = BATCH / plain_samples_per_s(2 * args.steps)
                sweep_step_s = trials[1]["train_time_s"] / trials[1]["steps"]
                scheme_figures["step_overheads"].append(sweep_step_s - plain_step_s)
            scheme_figures["speedups"].append(trials[2]["samples_per_s"] / trials[1]["samples_per_s"])
            for workers in (1, 2):
                scheme_figures[f"rates{workers}"].append(trials[workers]["samples_per_s"])
                scheme_figures[f"epoch_rates{workers}"].append(epoch_rates(trials[workers], args.epochs))
            step = trials[2]["step_time"]
            if step["communication_s"] is not None:  # None under DDP, which overlaps it with backward
                step_s = step["data_s"] + step["compute_s"] + step["communication_s"]
                scheme_figures["comm_shares"].append(step["communication_s"] / step_s)
    ray.shutdown()

    for scheme in schemes:
        print_scheme(scheme, args, ray_start_s, figures[scheme])
    if len(schemes) > 1:
        # With one worker neither scheme wraps or hooks the model, so all 1-worker trials share a baseline.
        baseline = statistics.median([rate for f in figures.values() for rate in f["rates1"]])
        print(f"\nAgainst the median 1-worker rate of all sweeps ({baseline:.1f} samples/s):")
        for scheme in schemes:
            speedup = statistics.median(figures[scheme]["rates2"]) / baseline
            print(f"- {scheme}: median 2-worker rate over it, {speedup:.2f}x")


if __name__ == "__main__":
    main_benchmark()
