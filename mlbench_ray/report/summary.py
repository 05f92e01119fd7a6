"""Speedups and the comparison table, computed from trial results.

Speedup(W) = baseline time / time(W), where the baseline is the 1-worker time to goal (wall clock).
With several seeds per worker count, time(W) is the median, or from 5 runs up MLPerf's olympic mean
(drop the fastest and the slowest, average the rest). A run that did not reach the goal counts as an
infinitely long run, as MLPerf counts it: one such run among five is dropped as the slowest.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from typing import Any

TABLE_COLUMNS = (
    "Task",
    "Dataset",
    "Model",
    "Aggregation scheme",
    "Metric Name",
    "Metric Goal",
    "Framework",
    "Baseline",
    "Best Speedup",
    "Best Speedup Workers",
)

AGGREGATION_LABELS = {"allreduce": "All-Reduce", "ddp": "DDP"}
OLYMPIC_MIN_RUNS = 5


def aggregate_times(times: list[float | None]) -> tuple[float | None, str]:
    """Combine the times to goal of several seeds; None marks a run that did not converge.

    Returns the time (None when the combined time is infinite) and the rule used.
    """
    if not times:
        return None, "none"
    values = sorted(math.inf if t is None else float(t) for t in times)
    if len(values) >= OLYMPIC_MIN_RUNS:
        kept = values[1:-1]
        combined = math.inf if math.isinf(kept[-1]) else sum(kept) / len(kept)
        rule = "olympic mean"
    else:
        combined = statistics.median(values)
        rule = "median" if len(values) > 1 else "single run"
    return (None if math.isinf(combined) else combined), rule


def summarize_trials(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Group trials by worker count and compute time per count, baseline, speedups and the best."""
    by_workers: dict[int, list[dict[str, Any]]] = {}
    for trial in trials:
        by_workers.setdefault(int(trial["workers"]), []).append(trial)

    rows = []
    for workers in sorted(by_workers):
        group = sorted(by_workers[workers], key=lambda t: t.get("seed", 0))
        times = [t.get("time_to_goal_s") if t.get("status") == "converged" else None for t in group]
        time_s, rule = aggregate_times(times)
        train_times = [t["train_time_s"] for t in group if t.get("train_time_s") is not None]
        rows.append(
            {
                "workers": workers,
                "seeds": [t.get("seed") for t in group],
                "statuses": [t.get("status") for t in group],
                "time_to_goal_s": time_s,
                "aggregation_rule": rule,
                "train_time_s": statistics.median(train_times) if train_times else None,
            }
        )

    baseline_row = next((row for row in rows if row["workers"] == 1), None)
    baseline_s = baseline_row["time_to_goal_s"] if baseline_row else None
    best: dict[str, Any] | None = None
    for row in rows:
        if baseline_s is None or row["time_to_goal_s"] is None:
            row["speedup"] = None
            continue
        row["speedup"] = baseline_s / row["time_to_goal_s"]
        row["scaling_efficiency"] = row["speedup"] / row["workers"]
        if best is None or row["speedup"] > best["speedup"]:
            best = row
    return {
        "baseline_s": baseline_s,
        "best_speedup": best["speedup"] if best else None,
        "best_speedup_workers": best["workers"] if best else None,
        "per_worker_count": rows,
    }


def _baseline_text(summary: dict[str, Any]) -> str:
    if summary["baseline_s"] is not None:
        return f"{summary['baseline_s']:.1f} s"
    baseline = next((r for r in summary["per_worker_count"] if r["workers"] == 1), None)
    if baseline is None:
        return "no 1-worker run"
    return "/".join(sorted(set(s.replace("_", " ") for s in baseline["statuses"])))


def table_row(
    labels: dict[str, str], framework: str, aggregation: str, summary: dict[str, Any]
) -> dict[str, str]:
    """Return one row of the comparison table in the seed's columns."""
    best = summary["best_speedup"]
    return {
        "Task": labels["task"],
        "Dataset": labels["dataset"],
        "Model": labels["model"],
        "Aggregation scheme": AGGREGATION_LABELS.get(aggregation, aggregation),
        "Metric Name": labels["metric_name"],
        "Metric Goal": labels["metric_goal"],
        "Framework": framework,
        "Baseline": _baseline_text(summary),
        "Best Speedup": f"{best:.2f}x" if best is not None else "n/a",
        "Best Speedup Workers": str(summary["best_speedup_workers"]) if best is not None else "n/a",
    }


def render_markdown(rows: list[dict[str, str]], columns: tuple[str, ...] = TABLE_COLUMNS) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines) + "\n"


def render_csv(rows: list[dict[str, str]], columns: tuple[str, ...] = TABLE_COLUMNS) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return buffer.getvalue()


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else pattern.format(value)


def worker_count_rows(summary: dict[str, Any]) -> list[dict[str, str]]:
    """Return the per-worker-count detail rows (time, speedup, statuses)."""
    rows = []
    for row in summary["per_worker_count"]:
        statuses = ", ".join(s.replace("_", " ") for s in row["statuses"])
        rows.append(
            {
                "Workers": str(row["workers"]),
                "Seeds": ", ".join(str(s) for s in row["seeds"]),
                "Status": statuses,
                "Time to goal": _fmt(row["time_to_goal_s"], "{:.1f} s"),
                "Train time": _fmt(row["train_time_s"], "{:.1f} s"),
                "Speedup": _fmt(row.get("speedup"), "{:.2f}x"),
                "Efficiency": _fmt(row.get("scaling_efficiency"), "{:.0%}"),
                "Rule": row["aggregation_rule"],
            }
        )
    return rows


DETAIL_COLUMNS = ("Workers", "Seeds", "Status", "Time to goal", "Train time", "Speedup", "Efficiency", "Rule")
