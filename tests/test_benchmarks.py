"""The benchmark scripts' own argument errors and exit statuses (they are scripts, not tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_cpu_by_process_passes_exit_status() -> None:
    command = "import time, sys; time.sleep(0.5); sys.exit(3)"
    result = run_script("cpu_by_process.py", "--interval", "0.1", "--", sys.executable, "-c", command)
    assert result.returncode == 3
    assert "had 1 or 2 busy Ray Train workers" in result.stdout
    assert "| Process | Cores |" not in result.stdout


def test_translation_benchmark_rejects_unknown_task() -> None:
    result = run_script("translation_step_throughput.py", "--tasks", "gnmt,lstm")
    assert result.returncode == 2
    assert "unknown task(s) lstm; use gnmt, transformer or both" in result.stderr


def test_scaling_benchmark_rejects_unknown_scheme() -> None:
    result = run_script("orchestration_scaling.py", "--aggregation", "ddp,horovod")
    assert result.returncode == 2
    assert "--aggregation 'ddp,horovod': use allreduce, ddp or allreduce,ddp" in result.stderr


def test_scaling_benchmark_rejects_zero_epochs() -> None:
    result = run_script("orchestration_scaling.py", "--epochs", "0")
    assert result.returncode == 2
    assert "--epochs 0: use 1 or more" in result.stderr
