"""Job configuration: loading, overrides and every rejected value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlbench_ray.config import ConfigError, load_job
from mlbench_ray.sweep import main

REPO = Path(__file__).resolve().parents[1]
SUITE_FILE = REPO / "jobs" / "suite.yaml"
JOB_FILES = sorted(path for path in (REPO / "jobs").glob("*.yaml") if path != SUITE_FILE)


def write_job(tmp_path: Path, **changes: object) -> Path:
    job = yaml.safe_load((REPO / "jobs" / "quickstart.yaml").read_text())
    job.update(changes)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


@pytest.mark.parametrize("path", JOB_FILES, ids=lambda p: p.name)
def test_shipped_job_files_validate(path: Path) -> None:
    """Every job file in jobs/ passes validation."""
    job = load_job(path)
    assert job.workers == sorted(job.workers)


def test_suite_lists_every_seed_row() -> None:
    """jobs/suite.yaml names existing job files, each valid, with distinct names."""
    from mlbench_ray.sweep import load_suite

    jobs = load_suite(SUITE_FILE, {})
    assert [job.task for job in jobs] == [
        "image_classification",
        "image_classification",
        "language_modeling",
        "masked_language_modeling",
        "translation_gnmt",
        "translation_transformer",
    ]
    assert len({job.name for job in jobs}) == len(jobs)


def test_suite_output_dir_is_parent(tmp_path: Path) -> None:
    from mlbench_ray.sweep import load_suite

    jobs = load_suite(SUITE_FILE, {"output.output_dir": str(tmp_path)})
    assert [job.resolved_output_dir for job in jobs] == [tmp_path / job.name for job in jobs]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("jobs: []\n", "non-empty list of job files"),
        ("jobs: [missing.yaml]\n", "suite.yaml: job file missing.yaml not found next to it"),
        ("jobs: [a.yaml, a.yaml]\n", "job names must differ"),
    ],
)
def test_bad_suite_rejected_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    (tmp_path / "a.yaml").write_text((REPO / "jobs" / "quickstart.yaml").read_text())
    suite = tmp_path / "suite.yaml"
    suite.write_text(text)
    assert main(["--suite", str(suite), "--output-dir", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_suite_and_job_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--suite", str(SUITE_FILE), "--job", str(REPO / "jobs" / "quickstart.yaml")])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_unknown_fault_key_gets_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_job(tmp_path, faults=[{"kind": "exit", "attmept": 1}])
    assert main(["--job", str(path)]) == 2
    assert "faults.0.attmept: unknown key; did you mean 'attempt'?" in capsys.readouterr().err


def test_suite_checks_data_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing dataset of the second job stops the suite before the first job runs."""
    (tmp_path / "a.yaml").write_text((REPO / "jobs" / "quickstart.yaml").read_text())
    job = yaml.safe_load((REPO / "jobs" / "quickstart.yaml").read_text())
    job.update(name="second", data={"dataset": "cifar10", "root": str(tmp_path / "no-data")})
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(job))
    (tmp_path / "suite.yaml").write_text("jobs: [a.yaml, b.yaml]\n")
    assert main(["--suite", str(tmp_path / "suite.yaml"), "--output-dir", str(tmp_path / "out")]) == 2
    assert "no-data does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_seed_rows_match_mlbench() -> None:
    """The CIFAR-10 job files carry MLBench's goal, epochs and optimizer settings."""
    for scheme in ("allreduce", "ddp"):
        job = load_job(REPO / "jobs" / f"cifar10-resnet20-{scheme}.yaml")
        assert job.aggregation == scheme
        assert job.goal.value == 0.80
        assert job.goal.light_value == 0.70
        assert job.max_epochs == 164
        assert job.task_options["batch_size_per_worker"] == 128
        assert job.task_options["lr_per_worker"] == 0.02
        assert job.task_options["momentum"] == 0.9
        assert job.task_options["weight_decay"] == 1e-4
        assert job.data.verify_checksums is True


def test_overrides_apply_dotted_keys(tmp_path: Path) -> None:
    """Dotted overrides replace nested values and workers are sorted."""
    job = load_job(write_job(tmp_path), {"workers": [4, 1, 2], "data.root": "/data", "goal.use_light": True})
    assert job.workers == [1, 2, 4]
    assert job.data.root == Path("/data")
    assert job.goal.active == 0.70


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"wokers": [1]}, ["wokers: unknown key", "did you mean 'workers'"]),
        ({"workers": []}, ["workers: invalid value []", "at least one worker count"]),
        ({"workers": [0, 2]}, ["workers: invalid value [0, 2]", "remove [0]"]),
        ({"workers": [-1]}, ["workers: invalid value [-1]", "positive"]),
        ({"workers": [1, 2, 2]}, ["workers", "remove the repeats of [2]"]),
        ({"workers": "1,2"}, ["workers: invalid value '1,2'", "write a YAML list, for example [1, 2]"]),
        ({"task": "image_clasification"}, ["task: invalid value 'image_clasification'", "did you mean"]),
        ({"goal": {"value": 80}}, ["goal.value: invalid value 80", "write 80% as 0.80"]),
        ({"goal": {"value": 0.0}}, ["goal.value: invalid value 0.0", "(0.0, 1.0]"]),
        ({"max_epochs": -3}, ["max_epochs: invalid value -3", "positive"]),
        ({"aggregation": "ring"}, ["aggregation: invalid value 'ring'", "allreduce", "ddp"]),
        ({"data": {"dataset": "mnist"}}, ["data.dataset: invalid value 'mnist'", "cifar10"]),
        ({"resources": {"backend": "nccl"}}, ["resources", "gpus_per_worker"]),
        ({"task_options": {"lr": 0.1}}, ["task_options.lr: unknown key", "lr_per_worker"]),
        ({"name": "a/b"}, ["name: invalid value 'a/b'"]),
    ],
)
def test_bad_value_names_key_and_fix(tmp_path: Path, changes: dict, expected: list[str]) -> None:
    """Each bad value is rejected with a message that names the key and the fix."""
    with pytest.raises(ConfigError) as caught:
        load_job(write_job(tmp_path, **changes))
    for fragment in expected:
        assert fragment in str(caught.value)


def test_missing_required_key(tmp_path: Path) -> None:
    """A job without workers names the missing key."""
    job = yaml.safe_load((REPO / "jobs" / "quickstart.yaml").read_text())
    del job["workers"]
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    with pytest.raises(ConfigError, match="workers: required key is missing"):
        load_job(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "not found"),
        ("", "is empty"),
        ("workers: [1, 2\n", "not valid YAML"),
        ("- 1\n- 2\n", "must contain a mapping"),
    ],
)
def test_unreadable_job_file(tmp_path: Path, content: str | None, expected: str) -> None:
    """Missing, empty, broken and non-mapping job files are rejected with the reason."""
    path = tmp_path / "job.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=expected):
        load_job(path)


def test_cli_bad_input_exits_2_before_ray(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command exits 2 with the message on stderr, and Ray is never started."""
    import ray

    assert main(["--job", str(write_job(tmp_path)), "--workers", "0,1"]) == 2
    assert "workers: invalid value [0, 1]" in capsys.readouterr().err
    assert main(["--job", str(write_job(tmp_path)), "--workers", "1,x"]) == 2
    assert "--workers '1,x'" in capsys.readouterr().err
    assert main(["--job", str(write_job(tmp_path)), "--set", "max_epochs"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert not ray.is_initialized()


def test_cli_missing_data_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A CIFAR-10 job without data on disk and without download fails before Ray with the path."""
    import ray

    job = write_job(tmp_path, data={"dataset": "cifar10", "root": str(tmp_path / "nowhere")})
    assert main(["--job", str(job), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere") in err
    assert "--download" in err
    assert not ray.is_initialized()


def test_cli_too_few_samples_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A dataset smaller than workers x batch size is rejected with the numbers."""
    assert (
        main(["--job", str(write_job(tmp_path)), "--workers", "1,64", "--output-dir", str(tmp_path / "o")])
        == 2
    )
    err = capsys.readouterr().err
    assert "1024 training samples: with 64 workers each rank gets 16, fewer than one batch of 32" in err


def test_readme_documents_every_job_key() -> None:
    """Every job key and every task option appears in the README."""
    from mlbench_ray.config import (
        DataSpec,
        FaultSpec,
        GoalSpec,
        JobSpec,
        OutputSpec,
        ReportSpec,
        ResourcesSpec,
    )
    from mlbench_ray.tasks.image_classification import ImageClassificationOptions
    from mlbench_ray.tasks.language_modeling import LanguageModelingOptions
    from mlbench_ray.tasks.masked_language_modeling import MaskedLanguageModelingOptions
    from mlbench_ray.tasks.translation import GNMTOptions, TransformerOptions

    readme = (REPO / "README.md").read_text()
    sections = {"": JobSpec, "data.": DataSpec, "goal.": GoalSpec, "resources.": ResourcesSpec}
    sections.update({"output.": OutputSpec, "report.": ReportSpec})
    for prefix, model in sections.items():
        for name in model.model_fields:
            if name in {"data", "goal", "resources", "output", "report"}:
                continue
            assert f"`{prefix}{name}`" in readme, f"{prefix}{name} is not documented in README.md"
    for name in FaultSpec.model_fields:
        assert f"`{name}`" in readme, f"faults[].{name} is not documented in README.md"
    every = (
        ImageClassificationOptions,
        LanguageModelingOptions,
        MaskedLanguageModelingOptions,
        GNMTOptions,
        TransformerOptions,
    )
    for options in every:
        for name in options.model_fields:
            assert f"`{name}`" in readme, f"task_options.{name} of {options.__name__} is not in README.md"


def test_relative_paths_resolved_for_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative data and output folders become absolute, because Ray workers run elsewhere."""
    from mlbench_ray.sweep import with_absolute_paths

    monkeypatch.chdir(tmp_path)
    job = with_absolute_paths(load_job(write_job(tmp_path, data={"dataset": "cifar10", "root": "data"})))
    assert job.data.root == tmp_path / "data"
    assert job.output.output_dir == tmp_path / "results" / "quickstart"
