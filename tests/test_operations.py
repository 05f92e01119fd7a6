"""Cluster operations: cluster.yaml, storage, restarts from checkpoints, resume after a killed driver,
and `ray job submit` to a local head node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlbench_ray.config import ConfigError, load_job
from mlbench_ray.storage import StorageError, check_storage_for_cluster
from mlbench_ray.sweep import check_paths_under_ray_job, main
from tests.helpers import free_port
from tests.test_config import REPO

# A sweep small enough for a test: synthetic images, few steps, a goal it cannot reach.
TINY = [
    "--set", "data.synthetic_train_samples=256",
    "--set", "data.synthetic_test_samples=64",
    "--set", "max_steps_per_epoch=2",
    "--set", "goal.value=0.999",
]  # fmt: skip


def results(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "results.json").read_text())


# ---------------------------------------------------------------------------------------------------
# cluster.yaml


def test_cluster_yaml_passes_ray_schema() -> None:
    """cluster.yaml passes the autoscaler's own schema validation, with Ray's defaults filled in."""
    import ray
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    assert config["docker"]["image"] == f"rayproject/ray:{ray.__version__}-gpu"
    assert config["available_node_types"][config["head_node_type"]]["resources"]["GPU"] == 0
    workers = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
    assert all(t["min_workers"] == 0 and t["resources"]["GPU"] >= 1 for t in workers)
    assert any("pip install -e" in command for command in config["setup_commands"])


def test_cluster_yaml_schema_check_can_fail() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    config["head_node_typo"] = config.pop("head_node_type")
    with pytest.raises(Exception, match="head_node_typo"):
        validate_config(prepare_config(config))


def test_cluster_yaml_has_no_credentials() -> None:
    text = (REPO / "cluster.yaml").read_text().lower()
    for word in ("aws_access_key", "aws_secret", "secret_key", "password", "ssh_private_key"):
        assert word not in text


# ---------------------------------------------------------------------------------------------------
# Storage settings


def test_local_storage_rejected_on_multi_node_cluster() -> None:
    job = load_job(REPO / "jobs" / "quickstart.yaml", {"output.storage_path": "/tmp/runs"})
    with pytest.raises(StorageError, match=r"3 nodes.*/tmp/runs.*s3://BUCKET/PREFIX.*shared_storage: true"):
        check_storage_for_cluster(job, 3)
    with pytest.raises(StorageError, match=r"Ray's default ~/ray_results"):
        check_storage_for_cluster(load_job(REPO / "jobs" / "quickstart.yaml"), 2)


def test_cloud_or_shared_storage_accepted() -> None:
    quickstart = REPO / "jobs" / "quickstart.yaml"
    check_storage_for_cluster(load_job(quickstart, {"output.storage_path": "s3://bucket/runs"}), 4)
    shared = {"output.storage_path": "/mnt/shared/runs", "output.shared_storage": True}
    check_storage_for_cluster(load_job(quickstart, shared), 4)
    check_storage_for_cluster(load_job(quickstart, {"output.storage_path": "/tmp/runs"}), 1)


def test_storage_endpoint_needs_s3_path() -> None:
    quickstart = REPO / "jobs" / "quickstart.yaml"
    with pytest.raises(
        ConfigError, match=r"output: output.storage_endpoint is set but output.storage_path is"
    ):
        load_job(
            quickstart, {"output.storage_path": "/tmp/x", "output.storage_endpoint": "http://127.0.0.1:1"}
        )
    with pytest.raises(ConfigError, match="must start with http:// or https://"):
        load_job(quickstart, {"output.storage_path": "s3://b/x", "output.storage_endpoint": "127.0.0.1:1"})
    with pytest.raises(ConfigError, match="shared_storage is true but output.storage_path is not set"):
        load_job(quickstart, {"output.shared_storage": True})


def test_relative_paths_rejected_under_ray_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a Ray job's temporary working directory, relative output and missing data paths exit 2."""
    package = tmp_path / "runtime_resources" / "_ray_pkg_0123abcd"
    package.mkdir(parents=True)
    monkeypatch.chdir(package)
    job = ["--job", str(REPO / "jobs" / "quickstart.yaml")]
    assert main(job) == 2
    assert "output.output_dir: results/quickstart is relative" in capsys.readouterr().err
    assert main([*job, "--output-dir", str(tmp_path / "out"), "--dataset", "cifar10"]) == 2
    assert "data.root: data is relative and missing" in capsys.readouterr().err
    # Synthetic data reads no files, so its relative root is fine.
    assert (
        check_paths_under_ray_job(load_job(REPO / "jobs" / "quickstart.yaml", {"output.output_dir": "/x"}))
        is None
    )
    assert not (package / "results").exists()


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Any:
    """An S3-compatible server (moto) on 127.0.0.1 with one bucket, and fake credentials."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="bench")
    yield endpoint, client
    server.stop()


def test_results_round_trip_through_s3(ray_session, s3_server: Any, tmp_path: Path) -> None:
    """Run data, checkpoints and results go to an S3-compatible server and come back in the report."""
    from mlbench_ray.report.__main__ import main as report_main

    endpoint, client = s3_server
    args = [
        "--job", str(REPO / "jobs" / "quickstart.yaml"),
        "--workers", "1",
        "--max-epochs", "2",
        "--output-dir", str(tmp_path / "out"),
        "--storage-path", "s3://bench/runs",
        "--set", f"output.storage_endpoint={endpoint}",
        *TINY,
    ]  # fmt: skip
    assert main(args) == 0
    keys = [item["Key"] for item in client.list_objects_v2(Bucket="bench")["Contents"]]
    assert "runs/quickstart/results.json" in keys
    assert "runs/quickstart/table.md" in keys
    # Ray Train's checkpoint of epoch 1, in the trial's run folder.
    assert any(key.startswith("runs/quickstart-") and key.endswith("/trial_state.pt") for key in keys)

    uri = f"s3://bench/runs/quickstart?endpoint_override=127.0.0.1:{endpoint.rsplit(':', 1)[1]}&scheme=http"
    assert report_main([uri, "--output-dir", str(tmp_path / "report")]) == 0
    assert (
        results(tmp_path / "out")["trials"]
        == json.loads(client.get_object(Bucket="bench", Key="runs/quickstart/results.json")["Body"].read())[
            "trials"
        ]
    )
    assert (tmp_path / "report" / "report.md").is_file()


def test_upload_without_filesystem_uses_endpoint(s3_server: Any) -> None:
    """A results copy made without a file system at hand still goes to the configured server."""
    from mlbench_ray.config import OutputSpec
    from mlbench_ray.storage import upload_results

    endpoint, client = s3_server
    output = OutputSpec(storage_path="s3://bench/copies", storage_endpoint=endpoint)
    assert upload_results(output, "job", {"table.md": "| a |\n"}) == "s3://bench/copies/job"
    body = client.get_object(Bucket="bench", Key="copies/job/table.md")["Body"].read()
    assert body == b"| a |\n"


class _BrokenFileSystem:
    def create_dir(self, path: str, recursive: bool = True) -> None:
        raise OSError("simulated outage")


def test_failed_upload_keeps_going(caplog: pytest.LogCaptureFixture) -> None:
    """A storage outage is logged; the sweep and its local results go on."""
    from mlbench_ray.config import OutputSpec
    from mlbench_ray.storage import upload_results

    output = OutputSpec(storage_path="s3://bench/copies")
    assert upload_results(output, "job", {"table.md": "x"}, _BrokenFileSystem()) is None
    assert "could not copy the results to s3://bench/copies/job" in caplog.text
    assert "simulated outage" in caplog.text


# ---------------------------------------------------------------------------------------------------
# Restarts from checkpoints


def test_dead_worker_restarts_from_checkpoint(ray_session, tmp_path: Path) -> None:
    """A worker killed in epoch 2 restarts from epoch 1's checkpoint; without retries left, it fails."""
    job = yaml.safe_load((REPO / "jobs" / "quickstart.yaml").read_text())
    job["resources"]["max_failures"] = 1
    job["faults"] = [
        # W=2: rank 1 dies once, 5 s into epoch 2, after Ray Train has collected epoch 1's checkpoint
        # (it polls the workers every 2 s); the restarted group must go on from epoch 2 and finish.
        {"kind": "exit", "workers": 2, "rank": 1, "epoch": 2, "attempt": 0, "delay_s": 5.0},
        # W=1: rank 0 dies at epoch 2 in every attempt, so the one retry is spent and the trial fails.
        {"kind": "exit", "workers": 1, "rank": 0, "epoch": 2, "attempt": None},
    ]
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    status = main(["--job", str(path), "--max-epochs", "3", "--output-dir", str(tmp_path / "out"), *TINY])
    assert status == 1  # the W=1 trial failed
    by_workers = {t["workers"]: t for t in results(tmp_path / "out")["trials"]}

    restarted = by_workers[2]
    assert restarted["status"] == "not_converged"
    assert restarted["restarts"] == 1
    assert restarted["restart_epochs"] == [1]
    assert [record["epoch"] for record in restarted["curve"]] == [1, 2, 3]
    # The clock ran through the restart: elapsed time keeps growing across it.
    elapsed = [record["elapsed_s"] for record in restarted["curve"]]
    assert elapsed == sorted(elapsed)
    assert restarted["wall_time_s"] >= elapsed[-1]

    failed = by_workers[1]
    assert failed["status"] == "failed"
    assert failed["error"]


def test_restart_without_checkpoint_keeps_clock(ray_session, tmp_path: Path) -> None:
    """With no checkpoint to go back to, a restart trains from epoch 1 again, on the same clock."""
    job = yaml.safe_load((REPO / "jobs" / "quickstart.yaml").read_text())
    job["resources"].update(max_failures=1, checkpoint=False)
    job["faults"] = [{"kind": "exit", "workers": 1, "rank": 0, "epoch": 2, "attempt": 0}]
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    args = ["--job", str(path), "--workers", "1", "--max-epochs", "3", "--output-dir", str(tmp_path / "out")]
    assert main([*args, *TINY]) == 0
    (trial,) = results(tmp_path / "out")["trials"]
    assert trial["status"] == "not_converged"
    assert trial["restarts"] == 1
    assert trial["restart_epochs"] == [0]
    assert [record["epoch"] for record in trial["curve"]] == [1, 2, 3]
    # Epoch 1 of the second attempt ends after the first attempt's epoch and the restart (seconds),
    # not 0.6 s after a fresh start.
    assert trial["curve"][0]["elapsed_s"] > 2.0


# ---------------------------------------------------------------------------------------------------
# A driver killed after its first trial, then resumed


def test_killed_driver_resume_runs_missing(ray_session, tmp_path: Path) -> None:
    output = tmp_path / "out"
    args = [
        "--job",
        str(REPO / "jobs" / "quickstart.yaml"),
        "--max-epochs",
        "2",
        "--output-dir",
        str(output),
        *TINY,
    ]
    address = ray_session.get_runtime_context().gcs_address
    driver = subprocess.Popen(
        [sys.executable, "-m", "mlbench_ray.sweep", *args, "--address", address],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if (output / "results.json").exists() and results(output)["trials"]:
                break
            assert driver.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.5)
        else:
            pytest.fail("the first trial did not finish in time")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    first = results(output)["trials"]
    assert [t["workers"] for t in first] == [1]

    assert main([*args, "--resume"]) == 0
    trials = results(output)["trials"]
    assert [t["workers"] for t in trials] == [1, 2]
    assert trials[0] == first[0]


# ---------------------------------------------------------------------------------------------------
# `ray job submit` to a local head node


def test_ray_job_submit_to_local_head(ray_session, tmp_path: Path) -> None:
    """The quickstart, submitted as a Ray job to a head node on 127.0.0.1, succeeds and writes the table."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    ray_cli = str(Path(sys.executable).with_name("ray"))
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    if not (Path.home() / ".ray" / "auth_token").exists():
        subprocess.run([ray_cli, "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    gcs_port, dashboard_port = free_port(), free_port()
    head_command = [
        ray_cli, "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1",
        "--port", str(gcs_port),
        "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(dashboard_port),
        "--num-cpus", "2",
        "--include-dashboard", "true",
        # Fixed by default (52365 and 10001), and the test session's own Ray may hold them.
        "--dashboard-agent-listen-port", str(free_port()),
        "--ray-client-server-port", str(free_port()),
    ]  # fmt: skip
    head = subprocess.Popen(
        head_command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard_port}"
    output = tmp_path / "out"
    try:
        token = (Path.home() / ".ray" / "auth_token").read_text().strip()
        deadline = time.monotonic() + 120
        while True:
            try:
                client = JobSubmissionClient(address, headers={"Authorization": f"Bearer {token}"})
                client.list_jobs()
                break
            except Exception:
                assert time.monotonic() < deadline, "the head node's job server did not come up"
                assert head.poll() is None, "ray start --head exited"
                time.sleep(1)
        # The command exactly as the README shows it, with the options of a small run. Right after
        # start-up the head may not have a job agent yet, which it reports as "No available agent".
        command = [
            ray_cli, "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
            "python", "-m", "mlbench_ray.sweep", "--job", "jobs/quickstart.yaml",
            "--workers", "1", "--max-epochs", "1", "--output-dir", str(output), *TINY,
        ]  # fmt: skip
        for _ in range(30):
            submit = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
            if "No available agent" not in submit.stderr:
                break
            time.sleep(2)
        assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
        job_id = next(job.submission_id for job in client.list_jobs() if job.submission_id)
        assert client.get_job_status(job_id) == JobStatus.SUCCEEDED
        # The README's commands to watch a job.
        status = subprocess.run(
            [ray_cli, "job", "status", "--address", address, job_id], env=env, capture_output=True, text=True
        )
        assert "succeeded" in (status.stdout + status.stderr).lower()
        logs = subprocess.run(
            [ray_cli, "job", "logs", "--address", address, job_id], env=env, capture_output=True, text=True
        )
        assert "[quickstart W=1 seed=0] epoch 1/1" in logs.stdout
        assert "| Image Classification | synthetic | ResNet-20 |" in (output / "table.md").read_text()
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        # `ray start` records its address for later `ray.init()` calls; that cluster is gone now.
        address_file = Path("/tmp/ray/ray_current_cluster")
        if address_file.exists() and address_file.read_text().strip().endswith(f":{gcs_port}"):
            address_file.unlink()
