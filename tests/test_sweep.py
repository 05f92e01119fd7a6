"""The sweep end to end on a real local Ray instance (shared across the session)."""

from __future__ import annotations

import csv
import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from mlbench_ray.report.summary import TABLE_COLUMNS
from mlbench_ray.sweep import main
from tests.helpers import write_cifar10
from tests.test_config import REPO


def sweep_args(root: Path) -> list[str]:
    """Command-line arguments of the CIFAR-10 job on test-written data under `root`, 1 and 2 workers."""
    return [
        "--job", str(REPO / "jobs" / "cifar10-resnet20-allreduce.yaml"),
        "--workers", "1,2",
        "--data-root", str(root / "data"),
        "--no-download",
        "--no-verify-checksums",
        "--gpus-per-worker", "0",
        "--cpus-per-worker", "1",
        "--max-epochs", "4",
        "--set", "goal.value=0.3",
        "--set", "task_options.batch_size_per_worker=32",
        "--output-dir", str(root / "out"),
    ]  # fmt: skip


class MetricsScraper(threading.Thread):
    """Reads the local node's Prometheus endpoint every half second and keeps the mlbench lines."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.lines: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    text = response.read().decode("utf-8")
                self.lines.update(line for line in text.splitlines() if line.startswith("ray_mlbench_"))
            except OSError:
                pass
            self.stop.wait(0.5)


def metrics_url(ray_session) -> str:
    node = next(n for n in ray_session.nodes() if n["Alive"])
    return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"


@pytest.fixture(scope="module")
def finished_sweep(ray_session, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the CIFAR-10 job on test-written data, 1 and 2 workers; return the output folder.

    The dashboard metrics seen during the sweep are saved next to it, in `metrics.txt`.
    """
    root = tmp_path_factory.mktemp("sweep")
    write_cifar10(root / "data", train_per_batch=64, test_samples=100)
    scraper = MetricsScraper(metrics_url(ray_session))
    scraper.start()
    try:
        assert main(sweep_args(root)) == 0
        time.sleep(3)  # one more export of the final values
    finally:
        scraper.stop.set()
        scraper.join()
    (root / "metrics.txt").write_text("\n".join(sorted(scraper.lines)))
    return root / "out"


def test_dashboard_metrics_exported(finished_sweep: Path) -> None:
    """Trial, throughput and speedup metrics reached the node's Prometheus endpoint, with their tags."""
    lines = (finished_sweep.parent / "metrics.txt").read_text().splitlines()
    names = {line.split("{", 1)[0] for line in lines}
    for name in (
        "ray_mlbench_trials_total",
        "ray_mlbench_trials_finished",
        "ray_mlbench_trial_epoch",
        "ray_mlbench_trial_metric",
        "ray_mlbench_trial_samples_per_second",
        "ray_mlbench_time_to_goal_seconds",
        "ray_mlbench_best_speedup",
        "ray_mlbench_worker_samples_per_second",
    ):
        assert name in names, f"{name} not among {sorted(names)}"
    finished = [line for line in lines if line.startswith("ray_mlbench_trials_finished{")]
    assert any('job="cifar10-resnet20-allreduce"' in line and line.endswith(" 2.0") for line in finished)
    per_count = [line for line in lines if line.startswith("ray_mlbench_time_to_goal_seconds{")]
    assert any('workers="2"' in line and 'task="image_classification"' in line for line in per_count)


def test_sweep_writes_table_and_results(finished_sweep: Path) -> None:
    """Both trials reach the goal and the table files carry the seed's columns."""
    document = json.loads((finished_sweep / "results.json").read_text())
    assert [(t["workers"], t["status"]) for t in document["trials"]] == [(1, "converged"), (2, "converged")]
    for trial in document["trials"]:
        assert trial["time_to_goal_s"] > 0
        assert trial["train_time_s"] > 0
        assert len(trial["device_names"]) == trial["workers"]
    assert document["dataset"]["verification"] == "not verified"
    assert document["environment"]["ray"]
    assert document["summary"]["baseline_s"] == document["trials"][0]["time_to_goal_s"]

    with (finished_sweep / "table.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == TABLE_COLUMNS
    assert rows[0]["Dataset"] == "CIFAR-10 (not verified)"
    assert rows[0]["Metric Goal"] == "30%"
    assert rows[0]["Best Speedup Workers"] in {"1", "2"}
    assert "NOT verified" in (finished_sweep / "table.md").read_text()


def test_existing_results_not_overwritten(finished_sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second sweep into the same folder is rejected with exit 2 and leaves the results alone."""
    before = (finished_sweep / "results.json").read_bytes()
    status = main(["--job", str(REPO / "jobs" / "quickstart.yaml"), "--output-dir", str(finished_sweep)])
    assert status == 2
    assert "--resume" in capsys.readouterr().err
    assert (finished_sweep / "results.json").read_bytes() == before


def test_resume_runs_only_missing_trials(finished_sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Resuming keeps finished trials, runs only the missing one, and rejects a changed job."""
    root = finished_sweep.parent
    document = json.loads((finished_sweep / "results.json").read_text())
    document["trials"] = [t for t in document["trials"] if t["workers"] == 1]
    (finished_sweep / "results.json").write_text(json.dumps(document))
    kept_time = document["trials"][0]["time_to_goal_s"]

    assert main([*sweep_args(root), "--resume", "--light-goal"]) == 2
    assert "goal.use_light: False -> True" in capsys.readouterr().err

    assert main([*sweep_args(root), "--resume"]) == 0
    resumed = json.loads((finished_sweep / "results.json").read_text())
    assert [t["workers"] for t in resumed["trials"]] == [1, 2]
    assert resumed["trials"][0]["time_to_goal_s"] == kept_time
    assert resumed["trials"][1]["status"] == "converged"

    # Nothing left to run: the table and report are rewritten without starting trials.
    (finished_sweep / "report.md").unlink()
    assert main([*sweep_args(root), "--resume"]) == 0
    assert (finished_sweep / "report.md").exists()
    assert json.loads((finished_sweep / "results.json").read_text())["trials"] == resumed["trials"]


def test_unplaceable_worker_count_fails_fast(
    ray_session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker count larger than the cluster fails at once with the numbers."""
    status = main(
        [
            "--job",
            str(REPO / "jobs" / "quickstart.yaml"),
            "--workers",
            "1,64",
            "--set",
            "data.synthetic_train_samples=4096",
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert status == 2
    err = capsys.readouterr().err
    assert "needs 57.7 CPUs (64 workers x 0.9 + 0.1 for the trial driver)" in err
    assert "the cluster has 4" in err

    status = main(
        [
            "--job",
            str(REPO / "jobs" / "quickstart.yaml"),
            "--gpus-per-worker",
            "1",
            "--output-dir",
            str(tmp_path / "gpu"),
        ]
    )
    assert status == 2
    assert "needs 2 GPUs (2 workers x 1) but the cluster has 0" in capsys.readouterr().err
