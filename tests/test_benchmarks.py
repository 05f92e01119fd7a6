"""The benchmark scripts' own argument errors and exit statuses (they are scripts, not tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a benchmark script with `args` and capture its exit status and output."""
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True, timeout=120
    )


def test_cpu_by_process_needs_a_command() -> None:
    result = run_script("cpu_by_process.py", "--interval", "0.1")
    assert result.returncode == 2
    assert "no command given: pass it after --" in result.stderr


def ray_train_workers_on_machine() -> bool:
    """Return whether any process on this machine is a Ray Train worker (the sampler reads them all)."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().startswith("ray::RayTrainWo"):
                return True
        except OSError:  # the process ended after the listing
            continue
    return False


def test_cpu_by_process_passes_exit_status() -> None:
    command = "import time, sys; time.sleep(0.5); sys.exit(3)"
    others_before = ray_train_workers_on_machine()
    result = run_script("cpu_by_process.py", "--interval", "0.1", "--", sys.executable, "-c", command)
    assert result.returncode == 3
    if others_before or ray_train_workers_on_machine():
        pytest.skip("another run's Ray Train workers are on this machine, and the sampler counts them")
    assert "had 1 or 2 busy Ray Train workers" in result.stdout
    assert "| Process | Cores |" not in result.stdout


def test_translation_benchmark_rejects_unknown_task() -> None:
    result = run_script("translation_step_throughput.py", "--tasks", "gnmt,lstm")
    assert result.returncode == 2
    assert "unknown task(s) lstm; use gnmt, transformer or both" in result.stderr


def test_scaling_benchmark_rejects_unknown_scheme() -> None:
    result = run_script("orchestration_scaling.py", "--aggregation", "ddp,horovod")
    assert result.returncode == 2
    assert "--aggregation 'ddp,horovod' is invalid: use allreduce, ddp or both" in result.stderr


def test_scaling_benchmark_rejects_zero_epochs() -> None:
    result = run_script("orchestration_scaling.py", "--epochs", "0")
    assert result.returncode == 2
    assert "--epochs 0 is invalid: use an integer of 1 or more" in result.stderr


def test_scaling_benchmark_rejects_bucket_size() -> None:
    # The script's parser rejects it before Ray starts, while the sweep would fail only after starting Ray.
    for value in ("abc", "0", "nan"):
        result = run_script("orchestration_scaling.py", "--bucket-mb", value)
        assert result.returncode == 2, value
        assert f"--bucket-mb '{value}' is invalid: use a size in MiB above 0, or none" in result.stderr
