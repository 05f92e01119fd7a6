"""CPU use per process while a command runs, split by how many workers train.

    python benchmarks/cpu_by_process.py [--interval 5] -- python benchmarks/orchestration_scaling.py ...

Linux only. Runs the command, reads every process's CPU time from /proc each `--interval` seconds, and
sorts the intervals by how many Ray Train workers (`ray::RayTrainWorker`) used more than 60% of a core
in them. For the intervals with 1 and with 2 such workers, it prints the mean cores each process name
used: the workers' share, what Ray's own processes and the rest of the machine took, and what stayed
idle (the workers waiting for each other at the collectives, among others).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import defaultdict

WORKER = "ray::RayTrainWo"  # /proc/PID/comm keeps 15 characters of "ray::RayTrainWorker"
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """Return the name and the CPU seconds used so far of every process."""
    usage = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():  # leave out this sampler itself
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/comm") as handle:
                name = handle.read().strip()
        except OSError:  # the process ended between listing and reading
            continue
        usage[int(entry)] = (name, (int(fields[11]) + int(fields[12])) / TICKS_PER_S)
    return usage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given: pass it after --")

    by_workers: dict[int, list[dict[str, float]]] = defaultdict(list)
    process = subprocess.Popen(command)
    previous, previous_time = cpu_seconds(), time.perf_counter()
    while process.poll() is None:
        time.sleep(args.interval)
        current, now = cpu_seconds(), time.perf_counter()
        elapsed = now - previous_time
        cores: dict[str, float] = defaultdict(float)
        busy_workers = 0
        for pid, (name, seconds) in current.items():
            used = (seconds - previous.get(pid, (name, 0.0))[1]) / elapsed
            cores[name] += used
            busy_workers += name == WORKER and used > 0.6
        by_workers[busy_workers].append(cores)
        previous, previous_time = current, now

    total_cores = os.cpu_count() or 1
    if not (by_workers.get(1) or by_workers.get(2)):
        print(
            f"no {args.interval:g} s interval had 1 or 2 busy Ray Train workers ({WORKER}): nothing to report"
        )
    for workers in (1, 2):
        intervals = by_workers.get(workers, [])
        if not intervals:
            continue
        mean: dict[str, float] = defaultdict(float)
        for cores in intervals:
            for name, used in cores.items():
                mean[name] += used / len(intervals)
        idle = total_cores - sum(mean.values())
        print(f"\n{len(intervals)} intervals with {workers} busy worker(s), {total_cores} cores")
        print("| Process | Cores |")
        print("|---|---|")
        for name, used in sorted(mean.items(), key=lambda item: -item[1]):
            if used >= 0.002:
                print(f"| {name} | {used:.3f} |")
        print(f"| (idle) | {idle:.3f} |")
    sys.exit(process.returncode)


if __name__ == "__main__":
    main()
