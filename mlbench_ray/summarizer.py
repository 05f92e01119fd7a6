"""The summarizer: gathers every trial's result, computes speedups and writes the results.

`ResultStore` is a plain class. The sweep runs it as a named Ray actor (`Summarizer`) that lives as long
as the sweep, pinned to the node that runs the sweep command, so the output folder is on that node. It
rewrites results.json and the tables after every trial, each file atomically (write a temporary file,
then rename), so results already written survive a crash of a later trial.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import ray

from mlbench_ray.config import OutputSpec
from mlbench_ray.report.summary import (
    DETAIL_COLUMNS,
    render_csv,
    render_markdown,
    summarize_trials,
    table_row,
    worker_count_rows,
)
from mlbench_ray.storage import upload_results

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
TABLE_MARKDOWN = "table.md"
TABLE_CSV = "table.csv"


def _json_safe(value: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) with their names as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` so that a reader sees either the old or the new file, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp creates the file as 0600; results are for sharing, so apply the usual umask instead.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _trial_id(trial_key: dict[str, int]) -> str:
    return f"{trial_key['workers']}-{trial_key['seed']}"


def trial_label(job_name: str, workers: int, seed: int) -> str:
    return f"{job_name} W={workers} seed={seed}"


class ResultStore:
    """Trial results of one sweep and the files made from them."""

    def __init__(
        self,
        output_dir: str,
        header: dict[str, Any],
        trials: list[dict[str, Any]] | None = None,
        storage_filesystem: Any = None,
    ):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.output_dir = Path(output_dir)
        self.header = header
        self.storage_filesystem = storage_filesystem
        self.trials: list[dict[str, Any]] = list(trials or [])
        self.epochs_seen: dict[str, int] = {}
        self.attempts: dict[str, int] = {}
        self.clock_starts: dict[str, float] = {}

    def _name(self) -> str:
        return str(self.header["job"]["name"])

    def record_epoch(self, trial_key: dict[str, int], record: dict[str, Any]) -> None:
        """Log one progress line for an evaluation of a running trial (epoch 2.3: 30% into epoch 3)."""
        label = trial_label(self._name(), trial_key["workers"], trial_key["seed"])
        max_epochs = self.header["job"]["max_epochs"]
        metric_name = self.header["metric_name"]
        logger.info(
            "[%s] epoch %s/%d %s=%.4f val_loss=%.4f train_loss=%.4f lr=%.4g elapsed=%.1fs epoch=%.1fs "
            "%s/s=%.0f",
            label,
            f"{record.get('epoch_progress', record['epoch']):.3g}",
            max_epochs,
            metric_name,
            record["metric"],
            record["val_loss"],
            record["train_loss"],
            record["lr"],
            record["elapsed_s"],
            record["epoch_s"],
            self.header.get("sample_unit", "samples"),
            record["samples_per_s"],
        )

    def record_trial(self, result: dict[str, Any]) -> None:
        """Store a finished trial (replacing an earlier result of the same worker count and seed)."""
        key = (int(result["workers"]), int(result["seed"]))
        self.trials = [t for t in self.trials if (int(t["workers"]), int(t["seed"])) != key]
        self.trials.append(result)
        self.trials.sort(key=lambda t: (int(t["workers"]), int(t["seed"])))
        label = trial_label(self._name(), *key)
        if result.get("status") == "converged":
            logger.info(
                "[%s] converged: time_to_goal_s=%.1f train_time_s=%.1f epochs=%d",
                label,
                result["time_to_goal_s"],
                result["train_time_s"],
                result["epochs"],
            )
        elif result.get("status") == "diverged":
            logger.info(
                "[%s] diverged: non-finite loss in epoch %s (detected after step %s)",
                label,
                result.get("epochs"),
                result.get("diverged_at_step"),
            )
        elif result.get("status") == "failed":
            logger.info("[%s] failed: %s", label, result.get("error"))
        else:
            logger.info(
                "[%s] finished with status %s after %s epochs",
                label,
                result.get("status"),
                result.get("epochs"),
            )
        self.write()

    def begin_attempt(self, trial_key: dict[str, int]) -> dict[str, Any]:
        """Count a start of a trial's worker group; return the attempt number and the trial's clock start.

        The count lives here, not in the checkpoint, so that a worker group restarting without a
        checkpoint (one that failed before its first checkpoint was collected) is still counted.
        """
        key = _trial_id(trial_key)
        attempt = self.attempts.get(key, -1) + 1
        self.attempts[key] = attempt
        return {"attempt": attempt, "start_unix_s": self.clock_starts.get(key)}

    def set_clock_start(self, trial_key: dict[str, int], start_unix_s: float) -> None:
        """Record when a trial's clock started, once, for the attempts after a failure."""
        self.clock_starts.setdefault(_trial_id(trial_key), start_unix_s)

    def has_trial(self, workers: int, seed: int) -> bool:
        return any(int(t["workers"]) == workers and int(t["seed"]) == seed for t in self.trials)

    def summary(self) -> dict[str, Any]:
        return summarize_trials(self.trials)

    def table_rows(self) -> list[dict[str, str]]:
        header = self.header
        return [
            table_row(header["labels"], header["framework"], header["job"]["aggregation"], self.summary())
        ]

    def render_markdown(self) -> str:
        """Return the comparison table, the per-worker-count detail and notes on the data."""
        summary = self.summary()
        dataset = self.header["dataset"]
        notes = []
        if dataset["verification"] == "synthetic":
            notes.append(
                "Dataset: SYNTHETIC random images (smoke run); these times say nothing about the real task."
            )
        elif dataset["verification"] == "not verified":
            notes.append(f"Dataset: {dataset['label']} from {dataset['root']}, checksums NOT verified.")
        else:
            notes.append(f"Dataset: {dataset['label']} from {dataset['root']}, checksums verified.")
        if self.header["labels"].get("metric_note"):
            notes.append(self.header["labels"]["metric_note"])
        notes.append(
            "Baseline: 1-worker wall-clock time to goal, evaluation included; speedup = baseline / time(W)."
        )
        return "\n".join(
            [
                render_markdown(self.table_rows()),
                render_markdown(worker_count_rows(summary), DETAIL_COLUMNS),
                *notes,
                "",
            ]
        )

    def write(self) -> None:
        """Write results.json, table.md and table.csv, each atomically."""
        document = {**self.header, "summary": self.summary(), "trials": self.trials}
        files = {
            RESULTS_FILE: json.dumps(_json_safe(document), indent=2) + "\n",
            TABLE_MARKDOWN: self.render_markdown(),
            TABLE_CSV: render_csv(self.table_rows()),
        }
        for name, text in files.items():
            write_atomically(self.output_dir / name, text)
        # A copy on cloud storage, where the output is there; each object is replaced whole.
        job = self.header.get("job", {})
        if "output" in job:
            output = OutputSpec.model_validate(job["output"])
            upload_results(output, str(job["name"]), files, self.storage_filesystem)

    def ping(self) -> bool:
        return True


class SummarizerActor(ResultStore):
    """ResultStore as the sweep's long-lived actor, which also exports the dashboard metrics.

    Ray exports each metric to Prometheus as `ray_<name>`, with the job, task and worker count (and
    seed, per trial) as tags. Short-lived processes lose their metrics, so the trial-level ones are
    set here, where they live as long as the sweep.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from ray.util.metrics import Gauge

        header = self.header

        job_tags = ("job", "task")
        trial_tags = (*job_tags, "workers", "seed")
        self._job_tags = {"job": str(header["job"]["name"]), "task": str(header["job"]["task"])}
        self._gauges = {
            "total": Gauge("mlbench_trials_total", "Trials in the sweep.", job_tags),
            "finished": Gauge("mlbench_trials_finished", "Trials with a result.", job_tags),
            "epoch": Gauge("mlbench_trial_epoch", "Last evaluated epoch of a trial.", trial_tags),
            "metric": Gauge("mlbench_trial_metric", "Task metric at a trial's last evaluation.", trial_tags),
            "throughput": Gauge(
                "mlbench_trial_samples_per_second",
                "Training samples (images, tokens or sequences) per second, all workers, last epoch.",
                trial_tags,
            ),
            "time_to_goal": Gauge(
                "mlbench_time_to_goal_seconds",
                "Time to goal of a worker count (median over seeds).",
                (*job_tags, "workers"),
            ),
            "speedup": Gauge("mlbench_best_speedup", "Best speedup over the 1-worker baseline.", job_tags),
        }
        self._export_summary()

    def _export_summary(self) -> None:
        gauges = self._gauges
        gauges["total"].set(float(self.header.get("planned_trials", len(self.trials))), tags=self._job_tags)
        gauges["finished"].set(float(len(self.trials)), tags=self._job_tags)
        summary = self.summary()
        for row in summary["per_worker_count"]:
            if row["time_to_goal_s"] is not None:
                tags = {**self._job_tags, "workers": str(row["workers"])}
                gauges["time_to_goal"].set(float(row["time_to_goal_s"]), tags=tags)
        if summary["best_speedup"] is not None:
            gauges["speedup"].set(float(summary["best_speedup"]), tags=self._job_tags)

    def record_epoch(self, trial_key: dict[str, int], record: dict[str, Any]) -> None:
        super().record_epoch(trial_key, record)
        tags = {**self._job_tags, "workers": str(trial_key["workers"]), "seed": str(trial_key["seed"])}
        self._gauges["epoch"].set(float(record.get("epoch_progress", record["epoch"])), tags=tags)
        if math.isfinite(record["metric"]):
            self._gauges["metric"].set(float(record["metric"]), tags=tags)
        self._gauges["throughput"].set(float(record["samples_per_s"]), tags=tags)

    def record_trial(self, result: dict[str, Any]) -> None:
        super().record_trial(result)
        self._export_summary()


# Trial drivers and rank 0 of each trial look the actor up by name. It reserves no CPU.
Summarizer = ray.remote(num_cpus=0, max_restarts=0)(SummarizerActor)
