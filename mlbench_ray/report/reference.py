"""MLBench's published reference results, as result sets that any run can be compared against.

Source: MLBench's published benchmark results for its PyTorch 1.7-era reference code, one NVIDIA T4
GPU per node. MLBench published the 1-worker time and the best speedup with its worker count, not every
worker count. Each reference set therefore contains two derived trials: the 1-worker time, and the
time at the best worker count, computed as baseline / best speedup.
"""

from __future__ import annotations

from typing import Any

SOURCE = "MLBench published results (PyTorch 1.7, one T4 per node)"

_LABELS = {
    "task": "Image Classification",
    "dataset": "CIFAR-10",
    "model": "ResNet-20",
    "metric_name": "Top-1 Accuracy",
    "metric_goal": "80%",
}

# (1-worker time in seconds, best speedup, workers at the best speedup)
_PUBLISHED = {
    "allreduce": (171.0, 6.6, 16),
    "ddp": (171.0, 4.4, 8),
}


def reference_result_set(aggregation: str) -> dict[str, Any]:
    """Return MLBench's CIFAR-10 ResNet-20 result for `allreduce` or `ddp` as a result set."""
    if aggregation not in _PUBLISHED:
        raise ValueError(
            f"no MLBench reference for aggregation {aggregation!r}; use one of {sorted(_PUBLISHED)}"
        )
    baseline_s, best_speedup, best_workers = _PUBLISHED[aggregation]
    trial = {"seed": 0, "status": "converged", "goal": 0.80, "train_time_s": None}
    return {
        "source": SOURCE,
        "job": {
            "name": f"mlbench-reference-cifar10-resnet20-{aggregation}",
            "aggregation": aggregation,
            "resources": {"gpus_per_worker": 1},
            "report": {},
        },
        "labels": _LABELS,
        "framework": "PyTorch 1.7 (MLBench)",
        "metric_name": "top1_accuracy",
        "environment": {"hardware": "one NVIDIA T4 per node"},
        "dataset": {"label": "CIFAR-10", "verification": "verified", "root": ""},
        "trials": [
            {**trial, "workers": 1, "time_to_goal_s": baseline_s},
            {**trial, "workers": best_workers, "time_to_goal_s": baseline_s / best_speedup},
        ],
    }


REFERENCE_NAMES = {f"mlbench-{name}": name for name in _PUBLISHED}
