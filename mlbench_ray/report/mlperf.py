"""MLPerf-style logs (`:::MLLOG` lines) of each trial, written through the mlperf-logging package.

The lines are made from a stored trial result: times come from the trial's recorded start and the
elapsed time of each evaluation, so the log can be written again from results.json at any time.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from mlperf_logging import mllog
from mlperf_logging.mllog import constants

STATUS = {"converged": constants.SUCCESS}


def _file_logger(path: Path) -> tuple[logging.Logger, logging.Handler]:
    logger = logging.getLogger(f"mlbench_ray.mllog.{path}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    return logger, handler


def _start_unix_s(document: dict[str, Any], trial: dict[str, Any]) -> float:
    """Return the trial's recorded start, or else the sweep's start (results written before it existed)."""
    if trial.get("start_unix_s"):
        return float(trial["start_unix_s"])
    started_at = document.get("started_at")
    return dt.datetime.fromisoformat(started_at).timestamp() if started_at else 0.0


def write_trial_log(document: dict[str, Any], trial: dict[str, Any], path: Path) -> None:
    """Write one trial's run start and stop, epochs, evaluations, batch size and seed as MLLOG lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logger, handler = _file_logger(path)
    try:
        ml_logger = mllog.mllog.MLLogger(logger=logger, default_stack_offset=1)
        start_ms = int(_start_unix_s(document, trial) * 1000)
        details = trial.get("task_details") or {}
        metadata = {"workers": trial["workers"]}

        ml_logger.event(constants.SUBMISSION_BENCHMARK, document["job"]["name"], time_ms=start_ms)
        ml_logger.event(constants.SEED, trial["seed"], time_ms=start_ms)
        if "global_batch_size" in details:  # in sentences or images; the Transformer's is in tokens
            ml_logger.event(constants.GLOBAL_BATCH_SIZE, details["global_batch_size"], time_ms=start_ms)
        ml_logger.start(constants.RUN_START, time_ms=start_ms, metadata=metadata)

        previous_ms = start_ms
        for point in trial.get("curve") or []:
            eval_ms = start_ms + int(point["elapsed_s"] * 1000)
            # Evaluations within an epoch (translation) log their fractional epoch and no epoch block.
            progress = point.get("epoch_progress", point["epoch"])
            epoch_end = progress == point["epoch"]
            epoch = {"epoch_num": point["epoch"]}
            if epoch_end:
                ml_logger.start(constants.EPOCH_START, time_ms=previous_ms, metadata=epoch)
            ml_logger.event(
                constants.EVAL_ACCURACY, point["metric"], time_ms=eval_ms, metadata={"epoch_num": progress}
            )
            if epoch_end:
                ml_logger.end(constants.EPOCH_STOP, time_ms=eval_ms, metadata=epoch)
                previous_ms = eval_ms

        status = STATUS.get(trial.get("status", ""), constants.ABORTED)
        stop_ms = start_ms + int(float(trial.get("wall_time_s") or 0.0) * 1000)
        ml_logger.end(
            constants.RUN_STOP,
            time_ms=max(stop_ms, previous_ms),
            metadata={**metadata, "status": status, "mlbench_status": trial.get("status")},
        )
    finally:
        logger.removeHandler(handler)
        handler.close()
