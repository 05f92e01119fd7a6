"""Speedup arithmetic, repeats and the table files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlbench_ray.report.summary import TABLE_COLUMNS, aggregate_times, summarize_trials
from mlbench_ray.summarizer import ResultStore


def trial(workers: int, time_s: float | None, seed: int = 0, status: str = "converged") -> dict:
    return {
        "workers": workers,
        "seed": seed,
        "status": status if time_s is not None else "not_converged",
        "time_to_goal_s": time_s,
        "train_time_s": (time_s or 100.0) * 0.8,
        "epochs": 3,
    }


def test_speedup_and_best() -> None:
    """Speedup is baseline over time; the best is the largest, with its worker count."""
    summary = summarize_trials([trial(1, 120.0), trial(2, 80.0), trial(4, 40.0), trial(16, 60.0)])
    assert summary["baseline_s"] == 120.0
    speedups = {row["workers"]: row["speedup"] for row in summary["per_worker_count"]}
    assert speedups == {1: 1.0, 2: 1.5, 4: 3.0, 16: 2.0}
    assert summary["best_speedup"] == 3.0
    assert summary["best_speedup_workers"] == 4


def test_worker_counts_sort_as_numbers() -> None:
    """16 workers sort after 2, not between 1 and 2."""
    summary = summarize_trials([trial(16, 10.0), trial(2, 50.0), trial(1, 100.0)])
    assert [row["workers"] for row in summary["per_worker_count"]] == [1, 2, 16]


def test_no_baseline_gives_no_speedup() -> None:
    """Without a converged 1-worker run there is no baseline and no speedup."""
    summary = summarize_trials([trial(1, None), trial(2, 50.0)])
    assert summary["baseline_s"] is None
    assert summary["best_speedup"] is None


def test_median_and_olympic_mean() -> None:
    """Median below 5 runs; olympic mean from 5 runs; a non-converged run counts as infinite."""
    assert aggregate_times([30.0, 10.0, 20.0]) == (20.0, "median")
    assert aggregate_times([10.0, 20.0, 30.0, 40.0, 1000.0]) == (30.0, "olympic mean")
    assert aggregate_times([10.0, 20.0, 30.0, 40.0, None]) == (30.0, "olympic mean")
    assert aggregate_times([10.0, None, 30.0, 40.0, None]) == (None, "olympic mean")
    assert aggregate_times([10.0, None]) == (None, "median")
    assert aggregate_times([5.0]) == (5.0, "single run")


def test_result_store_writes_table_files(tmp_path: Path) -> None:
    """The store writes results.json, table.md and table.csv in the seed's columns after each trial."""
    header = {
        "job": {"name": "demo", "max_epochs": 10, "aggregation": "allreduce"},
        "metric_name": "top1_accuracy",
        "labels": {
            "task": "Image Classification",
            "dataset": "CIFAR-10",
            "model": "ResNet-20",
            "metric_name": "Top-1 Accuracy",
            "metric_goal": "80%",
        },
        "framework": "PyTorch 2.14.1, Ray 2.60.0",
        "dataset": {"label": "CIFAR-10", "root": "/data", "verification": "verified"},
    }
    store = ResultStore(str(tmp_path), header)
    store.record_trial(trial(1, 100.0))
    first = json.loads((tmp_path / "results.json").read_text())
    assert [t["workers"] for t in first["trials"]] == [1]
    store.record_trial(trial(2, 62.5))
    store.record_trial({**trial(4, None), "status": "failed", "error": "RuntimeError: boom"})

    document = json.loads((tmp_path / "results.json").read_text())
    assert [t["workers"] for t in document["trials"]] == [1, 2, 4]
    assert document["summary"]["best_speedup"] == pytest.approx(1.6)
    csv_lines = (tmp_path / "table.csv").read_text().splitlines()
    assert csv_lines[0] == ",".join(TABLE_COLUMNS)
    assert csv_lines[1].endswith("100.0 s,1.60x,2")
    markdown = (tmp_path / "table.md").read_text()
    assert "| Image Classification | CIFAR-10 | ResNet-20 | All-Reduce |" in markdown
    assert "| 4 | 0 | failed |" in markdown
    assert not list(tmp_path.glob(".*.tmp"))


def test_summarize_error_picks_root_cause() -> None:
    """The summary of a wrapped worker error is its last exception line, without the module path."""
    from mlbench_ray.sweep import summarize_error

    wrapped = (
        "WorkerGroupError: Training failed due to worker errors:\n[Rank 1 Error Snippet]:\n"
        'Traceback (most recent call last):\n  File "loop.py", line 1, in f\n'
        "mlbench_ray.training.faults.InjectedFault: injected fault on rank 1 at epoch 1\n"
    )
    assert summarize_error(wrapped) == "InjectedFault: injected fault on rank 1 at epoch 1"
    assert summarize_error("plain text") == "plain text"
