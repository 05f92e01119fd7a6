"""Reports from stored result sets: tables, plots, HTML, comparison, MLLOG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlperf_logging.compliance_checker.mlp_parser import parse_file

from mlbench_ray.report.__main__ import main as report_main
from mlbench_ray.report.render import ReportError, comparison_rows, load_result_set, write_report
from mlbench_ray.report.tables import report_row, worker_rows


def make_trial(workers: int, status: str, time_s: float | None, seed: int = 0) -> dict:
    curve = [
        {"epoch": 1, "elapsed_s": 10.0, "metric": 0.5, "val_loss": 1.0, "train_loss": 1.2, "lr": 0.1},
        {"epoch": 2, "elapsed_s": 20.0, "metric": 0.85, "val_loss": 0.5, "train_loss": 0.6, "lr": 0.1},
    ]
    return {
        "workers": workers,
        "seed": seed,
        "status": status,
        "goal": 0.8,
        "start_unix_s": 1_700_000_000.0,
        "time_to_goal_s": time_s,
        "train_time_s": (time_s or 30.0) * 0.8,
        "wall_time_s": time_s or 30.0,
        "epochs": 2,
        "samples_per_s": 100.0 * workers,
        "step_time": {"data_s": 0.01, "compute_s": 0.08, "communication_s": 0.01 * (workers > 1)},
        "task_details": {"global_batch_size": 128 * workers},
        "device_names": ["NVIDIA T4"] * workers,
        "curve": curve,
    }


def make_result_set(
    name: str, trials: list[dict], gpus_per_worker: float = 1, price: float | None = 2.0
) -> dict:
    return {
        "run_id": "test",
        "started_at": "2026-01-01T00:00:00+00:00",
        "job": {
            "name": name,
            "aggregation": "allreduce",
            "resources": {"gpus_per_worker": gpus_per_worker},
            "report": {"price_per_gpu_hour": price, "currency": "USD"},
        },
        "metric_name": "top1_accuracy",
        "labels": {
            "task": "Image Classification",
            "dataset": "CIFAR-10",
            "model": "ResNet-20",
            "metric_name": "Top-1 Accuracy",
            "metric_goal": "80%",
        },
        "framework": "PyTorch 2.14.1, Ray 2.60.0",
        "environment": {"torch": "2.14.1"},
        "dataset": {"label": "CIFAR-10", "root": "/data", "verification": "verified"},
        "trials": trials,
    }


@pytest.fixture
def mixed_results(tmp_path: Path) -> Path:
    """A stored result set with converged, failed, diverged and not-converged trials, 1 to 16 workers."""
    trials = [
        make_trial(1, "converged", 100.0),
        make_trial(16, "converged", 20.0),
        make_trial(2, "converged", 60.0),
        make_trial(2, "converged", 50.0, seed=1),
        make_trial(4, "failed", None),
        make_trial(8, "diverged", None),
        make_trial(32, "not_converged", None),
    ]
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(make_result_set("mixed", trials)))
    return folder


def test_worker_rows_sorted_with_statuses(mixed_results: Path) -> None:
    """Rows sort numerically; runs that did not converge show their status, never a time."""
    rows = worker_rows(load_result_set(str(mixed_results)))
    assert [r["Workers"] for r in rows] == ["1", "2", "4", "8", "16", "32"]
    by_workers = {r["Workers"]: r for r in rows}
    assert by_workers["4"]["Time to Goal"] == "failed"
    assert by_workers["8"]["Time to Goal"] == "diverged"
    assert by_workers["32"]["Time to Goal"] == "not converged"
    assert by_workers["4"]["Speedup"] == "n/a"
    assert by_workers["2"]["Time to Goal"] == "55.0 s (median)"
    assert by_workers["2"]["Spread"] == "50.0-60.0 s"
    assert by_workers["16"]["Speedup"] == "5.00x"
    assert by_workers["16"]["Scaling Efficiency"] == "31%"


def test_report_row_extras(mixed_results: Path) -> None:
    """The table row adds throughput, efficiency, communication share and cost at the best count."""
    row = report_row(load_result_set(str(mixed_results)))
    assert row["Best Speedup"] == "5.00x"
    assert row["Best Speedup Workers"] == "16"
    assert row["Throughput at Best (samples/s)"] == "1600"
    assert row["Communication Share at Best"] == "10.0%"
    # 16 workers x 1 GPU x 20 s = 0.0889 GPU-hours, at 2 USD per GPU-hour.
    assert row["GPU-hours at Best"] == "0.089"
    assert row["Cost at Best"] == "0.18 USD"


def test_html_is_self_contained(mixed_results: Path, tmp_path: Path) -> None:
    """The HTML page contains the table and four embedded PNG plots and requests nothing from a network."""
    write_report(load_result_set(str(mixed_results)), tmp_path / "out")
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<table>" in page
    assert "Image Classification" in page
    assert page.count('src="data:image/png;base64,') == 4
    for marker in ("http://", "https://", "<script", "<link", "@import", "url("):
        assert marker not in page
    for name in ("speedup", "time_to_goal", "metric_over_time", "step_breakdown"):
        assert (tmp_path / "out" / "plots" / f"{name}.png").read_bytes().startswith(b"\x89PNG")


def test_mllog_parses_with_mlperf_reader(mixed_results: Path, tmp_path: Path) -> None:
    """Every trial's MLLOG file parses with mlperf-logging's own parser and has the standard keys."""
    write_report(load_result_set(str(mixed_results)), tmp_path / "out")
    log = tmp_path / "out" / "mllog" / "w16-seed0.log"
    loglines, errors = parse_file(str(log), ruleset="6.1.0")
    assert errors == []
    keys = [line.key for line in loglines]
    for key in (
        "run_start",
        "run_stop",
        "epoch_start",
        "epoch_stop",
        "eval_accuracy",
        "global_batch_size",
        "seed",
    ):
        assert key in keys
    run_stop = next(line for line in loglines if line.key == "run_stop")
    assert run_stop.value["metadata"]["status"] == "success"
    failed = parse_file(str(tmp_path / "out" / "mllog" / "w8-seed0.log"), ruleset="6.1.0")[0]
    assert next(line for line in failed if line.key == "run_stop").value["metadata"]["status"] == "aborted"
    accuracies = [line.value["value"] for line in loglines if line.key == "eval_accuracy"]
    assert accuracies == [0.5, 0.85]


def test_comparison_ratios(tmp_path: Path) -> None:
    """Two result sets compare side by side with ratios against the first."""
    first = make_result_set("a", [make_trial(1, "converged", 100.0), make_trial(4, "converged", 50.0)])
    second = make_result_set("b", [make_trial(1, "converged", 80.0), make_trial(4, "converged", 20.0)])
    rows = comparison_rows([first, second])
    assert [r["Result set"] for r in rows] == ["a", "b"]
    assert rows[1]["Baseline Ratio"] == "1.25x"
    assert rows[1]["Best Speedup"] == "4.00x"
    assert rows[1]["Best Speedup Ratio"] == "2.00x"


def test_report_command_with_reference(mixed_results: Path, tmp_path: Path) -> None:
    """The command compares a run with MLBench's published numbers, labelled with their source."""
    output = tmp_path / "cmp"
    assert report_main([str(mixed_results), "mlbench-allreduce", "--output-dir", str(output)]) == 0
    markdown = (output / "comparison.md").read_text()
    assert "MLBench published results" in markdown
    assert "| 171.0 s | 6.60x | 16 |" in markdown
    assert (output / "comparison.html").exists()
    assert (output / "0-mixed" / "report.html").exists()


def test_report_command_rerenders_in_place(mixed_results: Path) -> None:
    """With one local result set and no --output-dir, the report lands next to results.json."""
    assert report_main([str(mixed_results / "results.json")]) == 0
    assert (mixed_results / "report.md").exists()


def test_report_reads_uri_locations(mixed_results: Path) -> None:
    """A file:// URI goes through the same pyarrow file-system path as s3:// and gs://."""
    document = load_result_set(mixed_results.as_uri())
    assert document["job"]["name"] == "mixed"


def test_unreadable_result_sets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Missing, broken and foreign files are rejected with the path; the command exits 2."""
    with pytest.raises(ReportError, match="no results at"):
        load_result_set(str(tmp_path / "absent"))
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ReportError, match="is not valid JSON"):
        load_result_set(str(broken))
    foreign = tmp_path / "foreign.json"
    foreign.write_text("{}")
    with pytest.raises(ReportError, match="not an mlbench_ray result set"):
        load_result_set(str(foreign))
    assert report_main([str(tmp_path / "absent")]) == 2
    assert "mlbench-allreduce" in capsys.readouterr().err
