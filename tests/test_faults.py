"""Faults and interruptions: failed, hung and diverged trials, the output lock, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mlbench_ray.config import ConfigError, load_job
from mlbench_ray.sweep import main, output_lock
from tests.test_config import REPO, write_job


def test_fault_rank_must_exist(tmp_path: Path) -> None:
    """A fault on rank 2 of a 2-worker trial is rejected."""
    with pytest.raises(ConfigError, match=r"faults\.0: rank 2 does not exist in a trial of 2 workers"):
        load_job(write_job(tmp_path, faults=[{"kind": "raise", "workers": 2, "rank": 2}]))


def test_unwritable_output_dir_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An output folder that cannot be created is rejected before Ray starts."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["--job", str(write_job(tmp_path)), "--output-dir", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert f"output folder {blocker / 'out'} cannot be written" in err


def test_output_dir_that_is_a_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An --output-dir naming an existing file is rejected with that reason."""
    existing = tmp_path / "results.txt"
    existing.write_text("")
    assert main(["--job", str(write_job(tmp_path)), "--output-dir", str(existing)]) == 2
    assert f"output folder {existing} is a file, not a folder" in capsys.readouterr().err


def test_second_sweep_on_same_output_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """While one sweep locks the output folder, a second one exits 2 and names the lock owner."""
    output = tmp_path / "out"
    output.mkdir()
    with output_lock(output):
        assert main(["--job", str(write_job(tmp_path)), "--output-dir", str(output)]) == 2
    err = capsys.readouterr().err
    assert f"another sweep (pid {os.getpid()} on" in err
    assert "--output-dir with another folder" in err
    assert not (output / "results.json").exists()


def test_failed_hung_and_diverged_trials_recorded(
    ray_session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A raising worker, a hung collective and NaN weights each end their trial; the sweep goes on."""
    faults = [
        {"kind": "nan", "workers": 1, "rank": 0, "epoch": 1},
        {"kind": "raise", "workers": 2, "rank": 1, "epoch": 1},
        {"kind": "hang", "workers": 3, "rank": 2, "epoch": 1, "hang_s": 300},
    ]
    job = write_job(
        tmp_path,
        workers=[1, 2, 3],
        faults=faults,
        resources={"cpus_per_worker": 1, "collective_timeout_s": 10},
    )
    output = tmp_path / "out"
    started = time.monotonic()
    assert main(["--job", str(job), "--output-dir", str(output)]) == 1
    assert time.monotonic() - started < 240

    trials = {t["workers"]: t for t in json.loads((output / "results.json").read_text())["trials"]}
    assert trials[1]["status"] == "diverged"
    assert trials[2]["status"] == "failed"
    assert trials[2]["error"] == "InjectedFault: injected fault on rank 1 at epoch 1"
    assert "[Rank 1 Error Snippet]" in trials[2]["error_details"]
    assert trials[3]["status"] == "failed"
    # The rank that waited times out; its peer may report the closed connection instead, last.
    assert "Timed out" in trials[3]["error_details"] or "Connection closed" in trials[3]["error_details"]
    table = (output / "table.md").read_text()
    assert "| 1 | 0 | diverged |" in table
    assert "| 2 | 0 | failed |" in table
    assert "| 3 | 0 | failed |" in table
    assert "| diverged | n/a | n/a |" in capsys.readouterr().out


def test_sigterm_keeps_results_and_prints_resume(ray_session, tmp_path: Path) -> None:
    """SIGTERM during the second trial exits 130, keeps the first trial and prints the resume command."""
    job = yaml.safe_load((REPO / "jobs" / "quickstart.yaml").read_text())
    job["faults"] = [{"kind": "hang", "workers": 2, "rank": 0, "epoch": 1, "hang_s": 300}]
    job_path = tmp_path / "job.yaml"
    job_path.write_text(yaml.safe_dump(job))
    output = tmp_path / "out"
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    process = subprocess.Popen(
        [sys.executable, "-m", "mlbench_ray.sweep", "--job", str(job_path), "--output-dir", str(output)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            results = output / "results.json"
            if results.exists() and json.loads(results.read_text())["trials"]:
                break
            assert process.poll() is None, process.communicate()
            time.sleep(1)
        else:
            pytest.fail("the first trial did not finish within 180 s")
        time.sleep(3)  # let the second, hanging trial start
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert "interrupted (SIGTERM)" in err
    assert "--resume" in err
    trials = json.loads((output / "results.json").read_text())["trials"]
    assert [(t["workers"], t["status"]) for t in trials] == [(1, "converged")]


def test_local_ray_binds_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep without an address starts Ray on 127.0.0.1 with the dashboard on loopback only."""
    import ray

    from mlbench_ray.sweep import PREEMPTION_WATCHER_ENV_VAR, connect_ray

    calls = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # Set, then removed, so that monkeypatch also removes the value connect_ray sets after the test.
    monkeypatch.setenv(PREEMPTION_WATCHER_ENV_VAR, "1")
    monkeypatch.delenv(PREEMPTION_WATCHER_ENV_VAR)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    assert connect_ray(None) is True
    assert calls[0]["_node_ip_address"] == "127.0.0.1"
    assert calls[0]["dashboard_host"] == "127.0.0.1"
    assert calls[0]["address"] == "local"
    # A local instance has no node to drain, so the preemption watcher is off unless the user set it.
    assert os.environ[PREEMPTION_WATCHER_ENV_VAR] == "0"
    monkeypatch.setenv(PREEMPTION_WATCHER_ENV_VAR, "1")
    assert connect_ray(None) is True
    assert os.environ[PREEMPTION_WATCHER_ENV_VAR] == "1"


def test_cluster_keeps_preemption_watcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster's nodes can be drained, so joining one leaves Ray Train's preemption watcher unset."""
    import ray

    from mlbench_ray.sweep import PREEMPTION_WATCHER_ENV_VAR, connect_ray

    monkeypatch.setenv(PREEMPTION_WATCHER_ENV_VAR, "1")
    monkeypatch.delenv(PREEMPTION_WATCHER_ENV_VAR)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: None)
    assert connect_ray("ray://127.0.0.1:10001") is False
    assert PREEMPTION_WATCHER_ENV_VAR not in os.environ


def test_environment_records_allow_list_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recorded environments keep performance settings and drop credentials."""
    from mlbench_ray.environment import collect_environment

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-record")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "do-not-record")
    recorded = collect_environment()
    assert recorded["env"]["OMP_NUM_THREADS"] == "3"
    assert "do-not-record" not in json.dumps(recorded)


def test_overwrite_replaces_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--overwrite starts from no kept trials, --resume keeps finished ones and drops failed ones."""
    from mlbench_ray.sweep import SweepError, check_output_dir

    output = tmp_path / "out"
    output.mkdir()
    trials = [{"workers": 1, "seed": 0, "status": "converged"}, {"workers": 2, "seed": 0, "status": "failed"}]
    (output / "results.json").write_text(json.dumps({"trials": trials}))
    assert check_output_dir(output, overwrite=True, resume=False) == []
    assert check_output_dir(output, overwrite=False, resume=True) == trials[:1]
    (output / "results.json").write_text("{not json")
    with pytest.raises(SweepError, match="not readable JSON"):
        check_output_dir(output, overwrite=False, resume=True)
