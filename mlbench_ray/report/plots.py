"""Plots of a result set (or several, side by side), rendered with matplotlib to PNG bytes."""

from __future__ import annotations

import io
import statistics
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render to files only

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

from mlbench_ray.report.summary import summarize_trials  # noqa: E402


def _label(document: dict[str, Any]) -> str:
    return str(document.get("source") or document["job"]["name"])


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def _legend(axes: plt.Axes, **kwargs: str) -> None:
    if axes.get_legend_handles_labels()[0]:  # an empty result set draws no lines
        axes.legend(**kwargs)


def _worker_axis(axes: plt.Axes) -> None:
    axes.set_xscale("log", base=2)
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.set_xlabel("workers")


def speedup_plot(documents: list[dict[str, Any]]) -> bytes:
    """Plot speedup against worker count for each result set, with the ideal (linear) line."""
    figure, axes = plt.subplots(figsize=(6, 4))
    largest = 1
    for document in documents:
        rows = [r for r in summarize_trials(document["trials"])["per_worker_count"] if r.get("speedup")]
        if rows:
            workers = [r["workers"] for r in rows]
            largest = max(largest, *workers)
            axes.plot(workers, [r["speedup"] for r in rows], marker="o", label=_label(document))
    ideal = [2**k for k in range(largest.bit_length())] + ([largest] if largest & (largest - 1) else [])
    axes.plot(ideal, ideal, linestyle="--", color="gray", label="ideal")
    _worker_axis(axes)
    axes.set_xlabel("workers")
    axes.set_ylabel("speedup over 1 worker")
    axes.set_title("Speedup")
    _legend(axes)
    return _png(figure)


def time_to_goal_plot(documents: list[dict[str, Any]]) -> bytes:
    """Plot time to goal against worker count; worker counts that did not converge are left out."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for document in documents:
        rows = [r for r in summarize_trials(document["trials"])["per_worker_count"] if r["time_to_goal_s"]]
        if rows:
            axes.plot(
                [r["workers"] for r in rows],
                [r["time_to_goal_s"] for r in rows],
                marker="o",
                label=_label(document),
            )
    _worker_axis(axes)
    axes.set_ylabel("time to goal (s, wall clock)")
    axes.set_title("Time to goal")
    _legend(axes)
    return _png(figure)


def metric_curve_plot(document: dict[str, Any]) -> bytes:
    """Plot the metric after each evaluation against wall-clock time, one line per trial, with the goal."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for trial in document["trials"]:
        curve = trial.get("curve") or []
        if curve:
            axes.plot(
                [point["elapsed_s"] for point in curve],
                [point["metric"] for point in curve],
                marker=".",
                label=f"W={trial['workers']} seed={trial['seed']}",
            )
    goal = document["trials"][0].get("goal") if document["trials"] else None
    if goal is not None:
        axes.axhline(goal, linestyle="--", color="gray", label=f"goal {goal:g}")
    axes.set_xlabel("wall-clock time (s)")
    axes.set_ylabel(str(document.get("metric_name", "metric")))
    axes.set_title("Metric against time")
    _legend(axes, fontsize="small")
    return _png(figure)


def step_breakdown_plot(document: dict[str, Any]) -> bytes:
    """Plot the median step time per worker count, stacked by data, compute and communication."""
    by_workers: dict[int, list[dict[str, Any]]] = {}
    for trial in document["trials"]:
        if trial.get("step_time"):
            by_workers.setdefault(int(trial["workers"]), []).append(trial["step_time"])
    figure, axes = plt.subplots(figsize=(6, 4))
    workers = sorted(by_workers)
    positions = range(len(workers))
    bottom = [0.0] * len(workers)
    overlapped = False
    for phase, colour in (("data_s", "tab:green"), ("compute_s", "tab:blue"), ("communication_s", "tab:red")):
        heights = []
        for count in workers:
            values = [step[phase] for step in by_workers[count] if step.get(phase) is not None]
            overlapped = overlapped or (phase == "communication_s" and not values)
            heights.append(statistics.median(values) * 1000 if values else 0.0)
        axes.bar(positions, heights, bottom=bottom, color=colour, label=phase.removesuffix("_s"))
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes.set_xticks(list(positions), [str(w) for w in workers])
    axes.set_xlabel("workers")
    axes.set_ylabel("mean step time (ms)")
    title = "Step time breakdown"
    if overlapped:
        title += " (DDP: communication inside compute)"
    axes.set_title(title, fontsize="medium")
    _legend(axes)
    return _png(figure)
