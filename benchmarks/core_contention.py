"""Scaling ceiling of this machine: two plain training loops at once against one alone.

    python benchmarks/core_contention.py [--steps 30] [--repeats 3]

Runs the plain ResNet-20 loop of `step_throughput.py` (batch 128, 1 thread, synthetic images, no
communication at all) in one process alone, then in two processes at the same time, `--repeats` times,
alternating which comes first. The ratio of the two processes' summed samples/s to the single
process's is the best 2-worker speedup the cores allow, before any communication or framework cost:
shared caches, memory bandwidth and the host's scheduling set it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from step_throughput import plain_samples_per_s, print_row


def run_processes(count: int, steps: int) -> float:
    """Start `count` plain loops at once and return their summed samples per second."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--steps", str(steps)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    rates = []
    for process in processes:
        output, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a plain loop failed with exit status {process.returncode}")
        rates.append(float(output.strip().splitlines()[-1]))
    return sum(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per side")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        import torch

        torch.set_num_threads(1)
        plain_samples_per_s(2)  # warm-up
        print(plain_samples_per_s(args.steps), flush=True)
        return

    alone, together = [], []
    for repeat in range(args.repeats):
        if repeat % 2:
            together.append(run_processes(2, args.steps))
        alone.append(run_processes(1, args.steps))
        if not repeat % 2:
            together.append(run_processes(2, args.steps))
    ratios = [t / a for t, a in zip(together, alone, strict=True)]
    print(
        f"ResNet-20 plain loop, batch 128, 1 thread per process, {args.steps} steps, {args.repeats} repeats"
    )
    print("| Figure | Median | Runs |")
    print("|---|---|---|")
    print_row("1 process, samples/s", f"{statistics.median(alone):.1f}", [round(v, 1) for v in alone])
    print_row(
        "2 processes, summed samples/s", f"{statistics.median(together):.1f}", [round(v, 1) for v in together]
    )
    print_row("Ratio 2 / 1", f"{statistics.median(ratios):.2f}x", [round(v, 2) for v in ratios])


if __name__ == "__main__":
    main()
