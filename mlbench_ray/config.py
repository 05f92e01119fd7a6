"""Job configuration: pydantic models, YAML loading and command-line overrides.

A job file describes one row of the benchmark table: the task, its dataset, the aggregation scheme,
the worker counts to sweep and the quality goal. Everything is validated here, before Ray starts, and
every error names the dotted key, the value received and how to fix it.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

AggregationName = Literal["allreduce", "ddp"]
DatasetName = Literal["cifar10", "fashion_mnist", "synthetic", "wikitext2", "wikitext2_raw", "wmt16", "wmt17"]


class ConfigError(ValueError):
    """A job file or command-line value that cannot be used; the message names the key and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Section):
    """Dataset selection, location and checks."""

    dataset: DatasetName = Field(
        "cifar10",
        description="Dataset name: `cifar10`, `fashion_mnist` (torchvision's FashionMNIST layout), "
        "`synthetic` (random images for smoke runs; labelled as synthetic in every output), `wikitext2` "
        "(tokenized WikiText-2, for `language_modeling`), `wikitext2_raw` (raw WikiText-2, for "
        "`masked_language_modeling`), `wmt16` or `wmt17` (English-German parallel text, for the "
        "translation tasks). Each task names the datasets it accepts.",
    )
    root: Path = Field(
        Path("data"),
        description="Data root. CIFAR-10 is read from `<root>/cifar-10-batches-py/`, Fashion-MNIST from "
        "`<root>/FashionMNIST/raw/`, WikiText-2 from `<root>/wikitext-2/wiki.{train,valid,test}.tokens`, "
        "raw WikiText-2 from `<root>/wikitext-2-raw/wiki.{train,valid,test}.raw`, WMT16 and WMT17 from "
        "`<root>/wmt16-en-de/` and `<root>/wmt17-en-de/` (`{train,valid,test}.{en,de}`). Must be "
        "readable on every node that runs a worker.",
    )
    download: bool = Field(
        False,
        description="Download the dataset into `root` when it is missing (images with torchvision, "
        "WikiText-2 from its public archive, WMT training text from statmt.org and newstest2013/2014 "
        "through sacrebleu).",
    )
    verify_checksums: bool = Field(
        True,
        description="Verify the dataset files' published checksums (torchvision's MD5 for images, "
        "GluonNLP's SHA-1 for WikiText-2; WMT text has no published checksums, so there the test "
        "split's line count is checked). Turn off for your own data in the same layout; results then "
        "record the dataset as not verified.",
    )
    synthetic_train_samples: int = Field(
        2048, gt=0, description="Training images generated when `dataset` is `synthetic`."
    )
    synthetic_test_samples: int = Field(
        512, gt=0, description="Test images generated when `dataset` is `synthetic`."
    )


class GoalSpec(_Section):
    """The quality goal that ends a trial."""

    value: float = Field(
        description="Goal on the task's metric, in the metric's own unit (a fraction for accuracy)."
    )
    light_value: float | None = Field(
        None, description="Lighter goal used when `use_light` is true or `--light-goal` is given."
    )
    use_light: bool = Field(False, description="Train to `light_value` instead of `value`.")

    @model_validator(mode="after")
    def _light_value_present(self) -> GoalSpec:
        if self.use_light and self.light_value is None:
            raise ValueError(
                "use_light is true but light_value is not set; set goal.light_value or drop use_light"
            )
        return self

    @property
    def active(self) -> float:
        """Goal value in force for this run."""
        return self.light_value if self.use_light and self.light_value is not None else self.value


class ResourcesSpec(_Section):
    """Cluster resources requested per worker and per trial."""

    cpus_per_worker: float = Field(
        1.0, gt=0, description="Logical CPUs reserved per training worker; also sets its torch threads."
    )
    set_torch_threads: bool = Field(
        True,
        description="Set each worker's torch intra-op threads to cpus_per_worker (at least 1), so that "
        "co-located workers do not oversubscribe cores; false keeps torch's default.",
    )
    gpus_per_worker: float = Field(
        0.0, ge=0, description="GPUs reserved per training worker; 0 trains on CPU."
    )
    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto",
        description="torch.distributed backend: `auto` picks nccl with GPUs and gloo without.",
    )
    trial_driver_cpus: float = Field(
        0.1,
        ge=0.01,
        description="CPUs held by each trial's driver, the Tune function that launches the TorchTrainer.",
    )
    max_concurrent_trials: int = Field(
        1,
        ge=1,
        description="Trials run at once. Keep 1 for timing runs, so that trials do not share hardware.",
    )
    collective_timeout_s: int = Field(
        1800,
        gt=0,
        description="Seconds a torch.distributed collective may wait for the other ranks; a worker that "
        "hangs longer fails its trial.",
    )
    max_failures: int = Field(
        0,
        ge=0,
        description="Worker failures a trial survives: the worker group restarts from the last checkpoint "
        "(see `checkpoint`). 0 fails the trial at the first failure.",
    )
    checkpoint: bool = Field(
        True,
        description="Save a checkpoint (rank 0: weights, optimizer, schedule, epoch, clock) after every "
        "evaluation, for restarts after a failure. It counts toward time to goal.",
    )
    worker_env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables of the training workers (for example NCCL settings), passed "
        "through their Ray runtime environment.",
    )
    check_resources: bool = Field(
        True,
        description="Before launching, check that the cluster can place the largest worker count and fail "
        "at once if not. Turn off on autoscaling clusters whose worker nodes start from zero.",
    )

    @model_validator(mode="after")
    def _nccl_needs_gpus(self) -> ResourcesSpec:
        if self.backend == "nccl" and self.gpus_per_worker == 0:
            raise ValueError(
                "backend nccl needs GPUs but gpus_per_worker is 0; set gpus_per_worker (--gpus-per-worker) "
                "or use backend gloo or auto"
            )
        return self


class FaultSpec(_Section):
    """A fault to inject into one trial, for testing how the sweep handles it."""

    kind: Literal["raise", "hang", "nan", "exit"] = Field(
        description="`raise` an exception, `hang` (sleep past the collective timeout), set the weights "
        "to `nan`, or `exit` the worker process at once."
    )
    workers: int | None = Field(
        None, gt=0, description="Worker count of the trial to break; null breaks every trial."
    )
    rank: int = Field(0, ge=0, description="World rank that fails.")
    epoch: int = Field(1, gt=0, description="Epoch at whose start the fault happens.")
    hang_s: float = Field(3600.0, gt=0, description="Seconds a `hang` fault sleeps.")
    delay_s: float = Field(0.0, ge=0, description="Seconds into the epoch before the fault happens.")
    attempt: int | None = Field(
        0,
        ge=0,
        description="Restart count at which the fault happens: 0 in the first run of the trial, 1 after "
        "the first restart from a checkpoint; null in every run.",
    )

    @model_validator(mode="after")
    def _rank_exists(self) -> FaultSpec:
        if self.workers is not None and self.rank >= self.workers:
            raise ValueError(
                f"rank {self.rank} does not exist in a trial of {self.workers} workers; "
                f"use a rank below {self.workers}"
            )
        return self


class OutputSpec(_Section):
    """Output folder and Ray storage."""

    output_dir: Path | None = Field(
        None,
        description="Folder for results.json and the table files; default `results/<job name>`. "
        "It is written on the node that runs the sweep command.",
    )
    storage_path: str | None = Field(
        None,
        description="Ray Train and Tune storage for run data and checkpoints: a local folder on one node, "
        "cloud storage (`s3://`, `gs://`) or a shared file system on several. With cloud storage the "
        "result files are also copied to `<storage_path>/<name>/`. Default: Ray's own (`~/ray_results`).",
    )
    storage_endpoint: str | None = Field(
        None,
        description="Address of an S3-compatible server (MinIO, Ceph, moto) for an `s3://` storage_path, "
        "for example http://127.0.0.1:9000; null uses AWS. Credentials come from AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY where the sweep runs.",
    )
    storage_region: str = Field("us-east-1", description="Region passed to the S3-compatible server.")
    shared_storage: bool = Field(
        False,
        description="Declare that a local storage_path is a shared file system mounted at the same path "
        "on every node; otherwise a multi-node cluster rejects a local path.",
    )

    @model_validator(mode="after")
    def _endpoint_needs_s3(self) -> OutputSpec:
        if self.shared_storage and self.storage_path is None:
            raise ValueError(
                "output.shared_storage is true but output.storage_path is not set; set storage_path to "
                "the shared folder, or drop shared_storage"
            )
        if self.storage_endpoint is not None:
            if not (self.storage_path or "").startswith("s3://"):
                raise ValueError(
                    "output.storage_endpoint is set but output.storage_path is not an s3:// path; set "
                    "storage_path to s3://BUCKET/PREFIX or drop storage_endpoint"
                )
            if not self.storage_endpoint.startswith(("http://", "https://")):
                raise ValueError(
                    f"output.storage_endpoint {self.storage_endpoint!r} must start with http:// or "
                    "https://, for example http://127.0.0.1:9000"
                )
        return self


class ReportSpec(_Section):
    """Settings of the report made from the results."""

    price_per_gpu_hour: float | None = Field(
        None, ge=0, description="Price of one GPU-hour; when set, the report shows the cost to goal."
    )
    currency: str = Field("USD", description="Currency of `price_per_gpu_hour`.")


class JobSpec(_Section):
    """One benchmark row: a task, trained to a goal, swept over worker counts."""

    name: str = Field(description="Job name; names the output folder and the Ray experiment.")
    task: str = Field(description="Task name from the task registry, for example `image_classification`.")
    aggregation: AggregationName = Field(
        "allreduce",
        description="Gradient aggregation: `allreduce` (one flat buffer all-reduced through "
        "torch.distributed, averaged) or `ddp` (PyTorch DistributedDataParallel).",
    )
    allreduce_bucket_mb: float | None = Field(
        0.25,
        gt=0,
        description="Bucket size of the `allreduce` scheme in MiB: each full bucket is all-reduced while "
        "backward goes on. null all-reduces one flat buffer after backward.",
    )
    compile: bool = Field(
        False,
        description="Train through torch.compile. Compilation happens after the clock starts, so its time "
        "counts toward time to goal.",
    )
    workers: list[int] = Field(
        description="Worker counts to sweep; 1 is the baseline and is required for speedups."
    )
    seeds: list[int] = Field([0], description="Seeds; one trial runs per (worker count, seed).")
    goal: GoalSpec = Field(description="Quality goal on the task's metric.")
    max_epochs: int = Field(description="Epochs after which a trial that missed the goal is not converged.")
    max_steps_per_epoch: int | None = Field(
        None,
        gt=0,
        description="Cap on training steps per epoch (smoke runs, benchmarks); null trains full epochs.",
    )
    data: DataSpec = Field(default_factory=DataSpec, description="Dataset selection and checks.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Per-worker resources.")
    output: OutputSpec = Field(default_factory=OutputSpec, description="Output folder and storage.")
    report: ReportSpec = Field(default_factory=ReportSpec, description="Report settings.")
    faults: list[FaultSpec] = Field(
        default_factory=list,
        description="Faults to inject, for testing failure handling; leave empty for benchmark runs.",
    )
    task_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Task-specific settings (model, optimizer, schedule); each task documents its own.",
    )

    @field_validator("name")
    @classmethod
    def _name_is_path_safe(cls, name: str) -> str:
        if not name or any(ch in name for ch in "/\\ ") or name.startswith("."):
            raise ValueError(
                "must be a non-empty name without '/', '\\' or spaces, for example cifar10-resnet20"
            )
        return name

    @field_validator("workers")
    @classmethod
    def _workers_positive_unique(cls, workers: list[int]) -> list[int]:
        if not workers:
            raise ValueError("must list at least one worker count, for example [1, 2, 4]")
        bad = [w for w in workers if w <= 0]
        if bad:
            raise ValueError(f"worker counts must be positive; remove {bad}")
        repeated = sorted({w for w in workers if workers.count(w) > 1})
        if repeated:
            raise ValueError(f"worker counts must not repeat; remove the repeats of {repeated}")
        return sorted(workers)

    @field_validator("seeds")
    @classmethod
    def _seeds_unique(cls, seeds: list[int]) -> list[int]:
        if not seeds:
            raise ValueError("must list at least one seed, for example [0]")
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must not repeat")
        return seeds

    @field_validator("max_epochs")
    @classmethod
    def _max_epochs_positive(cls, max_epochs: int) -> int:
        if max_epochs <= 0:
            raise ValueError("must be a positive number of epochs")
        return max_epochs

    @property
    def resolved_output_dir(self) -> Path:
        """Output folder, with the default filled in."""
        return self.output.output_dir or Path("results") / self.name


# --------------------------------------------------------------------------------------------------
# Loading and error formatting


def _suggest_key(key: str, model: type[BaseModel]) -> str:
    close = difflib.get_close_matches(key, list(model.model_fields), n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return "valid keys: " + ", ".join(sorted(model.model_fields))


def _model_at(path: tuple[str | int, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """Return the pydantic model that contains the last key of `path`, for key suggestions."""
    model = root
    for part in path[:-1]:
        if isinstance(part, int):
            continue  # an index into a list of models, such as faults.0
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None) if field else None
        for candidate in (annotation, *typing.get_args(annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
        else:
            return None
    return model


def format_validation_error(
    error: ValidationError, source: str, root: type[BaseModel] | None = None, prefix: str = ""
) -> str:
    """Turn a pydantic error into lines that name the dotted key, the value and the fix."""
    root = root or JobSpec
    lines = [f"invalid job configuration in {source}:"]
    for item in error.errors():
        location = tuple(item["loc"])
        key = prefix + (".".join(str(part) for part in location) or "(top level)")
        value = item.get("input")
        if item["type"] == "extra_forbidden":
            model = _model_at(location, root)
            hint = _suggest_key(str(location[-1]), model) if model else "remove it"
            lines.append(f"  {key}: unknown key; {hint}")
            continue
        if item["type"] == "missing":
            lines.append(f"  {key}: required key is missing; add it to the job file")
            continue
        message = item["msg"].removeprefix("Value error, ")
        if isinstance(value, dict):
            # A check across a section's keys: its message names them, and the section is too long to echo.
            lines.append(f"  {key}: {message}")
            continue
        if item["type"] == "list_type":
            message += "; write a YAML list, for example [1, 2] (on the command line: --set 'workers=[1, 2]')"
        lines.append(f"  {key}: invalid value {value!r}: {message}")
    return "\n".join(lines)


def load_job_dict(path: Path) -> dict[str, Any]:
    """Read a job file as a mapping; raise ConfigError naming what is wrong with the file."""
    if not path.exists():
        raise ConfigError(
            f"job file {path} not found; pass an existing file with --job, e.g. jobs/quickstart.yaml"
        )
    if path.is_dir():
        raise ConfigError(f"job file {path} is a directory; pass a YAML file with --job")
    try:
        with path.open(encoding="utf-8") as handle:  # a named stream: YAML errors then cite the file
            raw = yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        raise ConfigError(f"job file {path} is not valid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"job file {path} is not UTF-8 text: {exc}") from exc
    if raw is None:
        raise ConfigError(f"job file {path} is empty; see jobs/quickstart.yaml for a complete example")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"job file {path} must contain a mapping of keys (name, task, workers, ...), "
            f"not a {type(raw).__name__}"
        )
    return raw


def _set_dotted(raw: dict[str, Any], dotted_key: str, value: Any) -> None:
    target = raw
    parts = dotted_key.split(".")
    for part in parts[:-1]:
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted_key}: {part} is not a section")
        target = child
    target[parts[-1]] = value


def build_job(raw: dict[str, Any], overrides: dict[str, Any], source: str) -> JobSpec:
    """Apply dotted-key overrides to a raw job mapping and validate it."""
    if overrides:
        source += " with the command-line options"
    merged = yaml.safe_load(yaml.safe_dump(raw))  # deep copy of plain data
    for dotted_key, value in overrides.items():
        _set_dotted(merged, dotted_key, value)
    try:
        job = JobSpec.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc
    problems = validate_task_settings(job)
    if problems:
        raise ConfigError(
            "\n".join([f"invalid job configuration in {source}:", *("  " + p for p in problems)])
        )
    return job


def validate_task_settings(job: JobSpec) -> list[str]:
    """Check the task name, its `task_options` and the goal's range against the task's metric."""
    # Imported here because the task modules import this one.
    from mlbench_ray.tasks import get_task_class

    try:
        task_class = get_task_class(job.task)
    except ValueError as exc:
        return [f"task: invalid value {job.task!r}: {exc}"]
    problems = []
    try:
        task_class.parse_options(job.task_options)
    except ValidationError as exc:
        formatted = format_validation_error(exc, "", task_class.options_model, "task_options.")
        problems.extend(line.strip() for line in formatted.splitlines()[1:])
    problems.extend(task_class.validate_job(job))
    return problems


def load_job(path: Path | str, overrides: dict[str, Any] | None = None) -> JobSpec:
    """Load, override and validate a job file."""
    path = Path(path)
    return build_job(load_job_dict(path), overrides or {}, str(path))


def parse_override(text: str) -> tuple[str, Any]:
    """Parse `dotted.key=value` from `--set`; the value is read as YAML (numbers, lists, booleans)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, for example --set max_epochs=10")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML: {exc}") from exc


def parse_int_list(text: str, flag: str) -> list[int]:
    """Parse `1,2,4` from a command-line flag."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated integers, for example 1,2,4") from exc
