"""The report's tables: the comparison table with throughput, efficiency, communication share and cost.

Every function here reads a stored result set (the `results.json` document), so a report can be made
again at any time without running anything.
"""

from __future__ import annotations

import statistics
from typing import Any

from mlbench_ray.report.summary import (
    AGGREGATION_LABELS,
    TABLE_COLUMNS,
    summarize_trials,
    table_row,
)

REPORT_COLUMNS = (
    *TABLE_COLUMNS,
    "Throughput at Best (samples/s)",
    "Scaling Efficiency at Best",
    "Communication Share at Best",
    "GPU-hours at Best",
    "Cost at Best",
)

WORKER_COLUMNS = (
    "Workers",
    "Runs",
    "Status",
    "Time to Goal",
    "Spread",
    "Train Time",
    "Speedup",
    "Scaling Efficiency",
    "Throughput (samples/s)",
    "Communication Share",
    "GPU-hours to Goal",
    "Cost to Goal",
)

STATUS_TEXT = {
    "converged": "converged",
    "not_converged": "not converged",
    "diverged": "diverged",
    "failed": "failed",
}


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _trials_at(document: dict[str, Any], workers: int) -> list[dict[str, Any]]:
    return [t for t in document["trials"] if int(t["workers"]) == workers]


def communication_share_text(trials: list[dict[str, Any]]) -> str:
    """Median share of step time spent in communication, as text.

    "n/a (overlapped)" where communication ran inside the backward pass (DDP) and was not timed apart.
    """
    shares = []
    overlapped = False
    for trial in trials:
        step = trial.get("step_time")
        if not step:
            continue
        if step.get("communication_s") is None:
            overlapped = True
            continue
        total = sum(step.get(key) or 0.0 for key in ("data_s", "compute_s", "communication_s"))
        if total > 0:
            shares.append(step["communication_s"] / total)
    if shares:
        return f"{statistics.median(shares):.1%}"
    return "n/a (overlapped)" if overlapped else "n/a"


def gpu_hours(document: dict[str, Any], workers: int, seconds: float | None) -> float | None:
    """GPU-hours of `workers` workers running for `seconds`; None on CPU-only runs."""
    gpus_per_worker = document["job"]["resources"]["gpus_per_worker"]
    if seconds is None or not gpus_per_worker:
        return None
    return workers * gpus_per_worker * seconds / 3600.0


def _gpu_hours_text(document: dict[str, Any], hours: float | None) -> str:
    if hours is not None:
        return f"{hours:.3f}"
    return "n/a (CPU)" if not document["job"]["resources"]["gpus_per_worker"] else "n/a"


def _cost_text(document: dict[str, Any], hours: float | None) -> str:
    report = document["job"].get("report") or {}
    price = report.get("price_per_gpu_hour")
    if hours is None:
        return "n/a (CPU)" if not document["job"]["resources"]["gpus_per_worker"] else "n/a"
    if price is None:
        return "n/a (no price)"
    return f"{hours * price:.2f} {report.get('currency', 'USD')}"


def _fmt(value: float | None, pattern: str, missing: str = "n/a") -> str:
    return missing if value is None else pattern.format(value)


def worker_rows(document: dict[str, Any]) -> list[dict[str, str]]:
    """Return one row per worker count, in numeric order; non-converged runs show their status."""
    summary = summarize_trials(document["trials"])
    rows = []
    for row in summary["per_worker_count"]:
        workers = row["workers"]
        trials = _trials_at(document, workers)
        converged = [t["time_to_goal_s"] for t in trials if t.get("status") == "converged"]
        statuses = [STATUS_TEXT.get(t.get("status", ""), str(t.get("status"))) for t in trials]
        if row["time_to_goal_s"] is None:
            # A worker count that did not reach the goal gets no number, only its statuses.
            time_text = "/".join(sorted(set(statuses)))
        else:
            time_text = f"{row['time_to_goal_s']:.1f} s ({row['aggregation_rule']})"
        spread = f"{min(converged):.1f}-{max(converged):.1f} s" if len(converged) > 1 else "n/a"
        throughputs = [t["samples_per_s"] for t in trials if t.get("samples_per_s")]
        hours = gpu_hours(document, workers, row["time_to_goal_s"])
        rows.append(
            {
                "Workers": str(workers),
                "Runs": str(len(trials)),
                "Status": ", ".join(statuses),
                "Time to Goal": time_text,
                "Spread": spread,
                "Train Time": _fmt(row["train_time_s"], "{:.1f} s"),
                "Speedup": _fmt(row.get("speedup"), "{:.2f}x"),
                "Scaling Efficiency": _fmt(row.get("scaling_efficiency"), "{:.0%}"),
                "Throughput (samples/s)": _fmt(_median(throughputs), "{:.0f}"),
                "Communication Share": communication_share_text(trials),
                "GPU-hours to Goal": _gpu_hours_text(document, hours),
                "Cost to Goal": _cost_text(document, hours),
            }
        )
    return rows


def report_row(document: dict[str, Any]) -> dict[str, str]:
    """Return the comparison-table row of a result set: the seed's columns plus the extras."""
    summary = summarize_trials(document["trials"])
    row = table_row(document["labels"], document["framework"], document["job"]["aggregation"], summary)
    best_workers = summary["best_speedup_workers"]
    extras = dict.fromkeys(REPORT_COLUMNS[len(TABLE_COLUMNS) :], "n/a")
    if best_workers is not None:
        best = next(r for r in summary["per_worker_count"] if r["workers"] == best_workers)
        trials = _trials_at(document, best_workers)
        throughputs = [t["samples_per_s"] for t in trials if t.get("samples_per_s")]
        hours = gpu_hours(document, best_workers, best["time_to_goal_s"])
        extras = {
            "Throughput at Best (samples/s)": _fmt(_median(throughputs), "{:.0f}"),
            "Scaling Efficiency at Best": _fmt(best.get("scaling_efficiency"), "{:.0%}"),
            "Communication Share at Best": communication_share_text(trials),
            "GPU-hours at Best": _gpu_hours_text(document, hours),
            "Cost at Best": _cost_text(document, hours),
        }
    return {**row, **extras}


def report_json(document: dict[str, Any]) -> dict[str, Any]:
    """Return the tables as JSON-ready data."""
    return {
        "source": document.get("source"),
        "aggregation": AGGREGATION_LABELS.get(document["job"]["aggregation"], document["job"]["aggregation"]),
        "row": report_row(document),
        "workers": worker_rows(document),
        "summary": summarize_trials(document["trials"]),
    }
