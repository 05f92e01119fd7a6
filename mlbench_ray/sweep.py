"""The sweep command: validate a job, start or join Ray, run the trials, print the table.

    python -m mlbench_ray.sweep --job jobs/cifar10-resnet20-allreduce.yaml
    python -m mlbench_ray.sweep --job jobs/quickstart.yaml --workers 1,2 --light-goal --data-root /data

Without RAY_ADDRESS (or --address) it starts a local Ray instance; under `ray job submit`
it joins the cluster. Exit status: 0 when every trial finished (converged or not), 1 when a trial
failed, 2 for bad input (job file, data, output folder, resources), reported before any training.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import re
import shlex
import signal
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from mlbench_ray.config import (
    ConfigError,
    JobSpec,
    load_job,
    load_job_dict,
    parse_int_list,
    parse_override,
)
from mlbench_ray.data.errors import DataError
from mlbench_ray.storage import (
    StorageError,
    check_storage_for_cluster,
    ray_storage_path,
    storage_filesystem,
)
from mlbench_ray.summarizer import RESULTS_FILE, TABLE_CSV, TABLE_MARKDOWN

logger = logging.getLogger("mlbench_ray.sweep")

NAMESPACE = "mlbench_ray"
DEFAULT_JOB = Path("jobs/quickstart.yaml")
LOCK_FILE = ".sweep.lock"
EXIT_INTERRUPTED = 130


class SweepError(RuntimeError):
    """Bad input found before training (output folder, resources); exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlbench_ray.sweep",
        description="Train a benchmark task to its goal for each worker count and print the speedup table.",
    )
    job_or_suite = parser.add_mutually_exclusive_group()
    job_or_suite.add_argument(
        "--job", type=Path, default=DEFAULT_JOB, help="job file (YAML); default %(default)s"
    )
    job_or_suite.add_argument(
        "--suite",
        type=Path,
        help="suite file (YAML list of job files, e.g. jobs/suite.yaml): run each job in turn; the other "
        "options apply to every job, and --output-dir becomes the parent of one folder per job",
    )
    parser.add_argument(
        "--workers", help="worker counts to sweep, comma-separated, e.g. 1,2,4 (job: workers)"
    )
    parser.add_argument("--seeds", help="seeds, comma-separated, e.g. 0,1,2 (job: seeds)")
    parser.add_argument(
        "--light-goal", action="store_true", help="train to the light goal (job: goal.use_light)"
    )

    parser.add_argument(
        "--max-epochs", type=int, help="epochs before a trial counts as not converged (job: max_epochs)"
    )
    parser.add_argument(
        "--dataset",
        help="dataset (job: data.dataset): cifar10, fashion_mnist, synthetic, wikitext2, wikitext2_raw, "
        "wmt16 or wmt17",
    )
    parser.add_argument("--data-root", help="folder that contains the dataset (job: data.root)")
    parser.add_argument(
        "--download",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="download missing data (job: data.download)",
    )
    parser.add_argument(
        "--verify-checksums",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="verify dataset checksums (job: data.verify_checksums)",
    )

    parser.add_argument("--aggregation", help="allreduce or ddp (job: aggregation)")
    parser.add_argument(
        "--cpus-per-worker", type=float, help="logical CPUs per worker (job: resources.cpus_per_worker)"
    )
    parser.add_argument(
        "--gpus-per-worker", type=float, help="GPUs per worker (job: resources.gpus_per_worker)"
    )

    parser.add_argument("--output-dir", help="folder for results.json and tables (job: output.output_dir)")
    parser.add_argument("--storage-path", help="Ray Train storage path (job: output.storage_path)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any job key by its dotted name, e.g. --set task_options.lr_per_worker=0.05",
    )

    parser.add_argument("--address", help="Ray cluster address; default RAY_ADDRESS, or a new local instance")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument(
        "--overwrite", action="store_true", help="replace results already in the output folder"
    )
    existing.add_argument(
        "--resume", action="store_true", help="keep results in the output folder; run only missing trials"
    )
    return parser


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Map command-line flags to dotted job keys."""
    overrides: dict[str, Any] = {}
    if args.workers is not None:
        overrides["workers"] = parse_int_list(args.workers, "--workers")
    if args.seeds is not None:
        overrides["seeds"] = parse_int_list(args.seeds, "--seeds")
    simple = {
        "max_epochs": args.max_epochs,
        "data.dataset": args.dataset,
        "data.root": args.data_root,
        "data.download": args.download,
        "data.verify_checksums": args.verify_checksums,
        "aggregation": args.aggregation,
        "resources.cpus_per_worker": args.cpus_per_worker,
        "resources.gpus_per_worker": args.gpus_per_worker,
        "output.output_dir": args.output_dir,
        "output.storage_path": args.storage_path,
    }
    overrides.update({key: value for key, value in simple.items() if value is not None})
    if args.light_goal:
        overrides["goal.use_light"] = True
    for text in args.set:
        key, value = parse_override(text)
        overrides[key] = value
    return overrides


def ensure_writable(output_dir: Path) -> None:
    """Create the output folder and check that a file can be written there."""
    if output_dir.exists() and not output_dir.is_dir():
        raise SweepError(f"output folder {output_dir} is a file, not a folder; pass another --output-dir")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise SweepError(
            f"output folder {output_dir} cannot be written ({exc.strerror}); pass --output-dir with a "
            f"writable folder"
        ) from exc


@contextlib.contextmanager
def output_lock(output_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the output folder for the whole sweep, so that two sweeps never mix.

    NOTE: flock is reliable on local file systems; on some network file systems it is not enforced.
    """
    with (output_dir / LOCK_FILE).open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown process"
            raise SweepError(
                f"another sweep ({owner}) is writing to {output_dir}; wait for it to finish, or pass "
                f"--output-dir with another folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# Job keys that may change between a sweep and its resumption: they do not change what a trial does.
RESUMABLE_KEYS = ("workers", "seeds", "output", "report", "resources.check_resources")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def job_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Return the dotted keys whose values differ, ignoring the keys a resumed sweep may change."""
    old, new = _flatten(saved), _flatten(current)
    differences = []
    for key in sorted(set(old) | set(new)):
        if any(key == k or key.startswith(k + ".") for k in RESUMABLE_KEYS):
            continue
        if old.get(key) != new.get(key):
            differences.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return differences


def check_output_dir(
    output_dir: Path, overwrite: bool, resume: bool, job: JobSpec | None = None
) -> list[dict[str, Any]]:
    """Check that the output folder has no results to lose; return the trials to keep.

    With `resume`, the saved job must match `job` except for worker counts, seeds, output and report
    settings, so that kept and new trials measure the same thing.
    """
    results_path = output_dir / RESULTS_FILE
    if not results_path.exists():
        return []
    if overwrite:
        return []
    if not resume:
        raise SweepError(
            f"output folder {output_dir} already contains results ({results_path}); pass --resume to run "
            f"only the missing trials, --overwrite to replace them, or --output-dir for a new folder"
        )
    try:
        document = json.loads(results_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SweepError(f"cannot resume: {results_path} is not readable JSON ({exc})") from exc
    if job is not None and "job" in document:
        differences = job_differences(document["job"], job.model_dump(mode="json"))
        if differences:
            raise SweepError(
                f"cannot resume: the results in {results_path} come from a different job configuration ("
                + "; ".join(differences)
                + "). Resume with the same job file and options, or pass --overwrite or another --output-dir"
            )
    # Failed trials run again; converged, not converged and diverged ones are results.
    return [t for t in document.get("trials", []) if t.get("status") != "failed"]


# Ray Train's switch for its preemption watcher, which polls the node's drain state while a run trains.
PREEMPTION_WATCHER_ENV_VAR = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"


def connect_ray(address: str | None) -> bool:
    """Join the given or RAY_ADDRESS cluster, or start a local Ray on loopback; True if started here."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        logger.info("joining Ray cluster at %s", address)
        ray.init(address=address, namespace=NAMESPACE)
        return False
    # Nothing drains a local node, so Ray Train's preemption watcher is turned off unless the user set it.
    # Set before ray.init, because the raylet it starts and every Ray worker inherit this environment.
    os.environ.setdefault(PREEMPTION_WATCHER_ENV_VAR, "0")
    # NOTE: only the dashboard is certainly bound to 127.0.0.1. Ray 2.60 may still report the
    # machine's own address for the node and its workers, and its GCS and raylet ports listen on all
    # interfaces, guarded by token authentication (on by default).
    logger.info("starting a local Ray instance (dashboard on 127.0.0.1)")
    ray.init(
        address="local",
        namespace=NAMESPACE,
        _node_ip_address="127.0.0.1",
        dashboard_host="127.0.0.1",
    )
    return True


def check_resources(job: JobSpec) -> None:
    """Fail at once when the cluster cannot place the largest trial, instead of waiting forever."""
    import ray

    resources = job.resources
    if not resources.check_resources:
        return
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    total_cpus = sum(node["Resources"].get("CPU", 0.0) for node in nodes)
    total_gpus = sum(node["Resources"].get("GPU", 0.0) for node in nodes)
    largest = max(job.workers)
    concurrent = resources.max_concurrent_trials
    need_cpus = largest * resources.cpus_per_worker + resources.trial_driver_cpus
    need_gpus = largest * resources.gpus_per_worker
    problems = []
    if need_cpus > total_cpus + 1e-9:
        problems.append(
            f"the largest trial needs {need_cpus:g} CPUs ({largest} workers x {resources.cpus_per_worker:g} "
            f"+ {resources.trial_driver_cpus:g} for the trial driver) but the cluster has {total_cpus:g}; "
            f"lower --workers or --cpus-per-worker, or add nodes"
        )
    if need_gpus > total_gpus + 1e-9:
        problems.append(
            f"the largest trial needs {need_gpus:g} GPUs ({largest} workers x {resources.gpus_per_worker:g}) "
            f"but the cluster has {total_gpus:g}; lower --workers or --gpus-per-worker, or add GPU nodes"
        )
    fits_one_node = any(
        node["Resources"].get("CPU", 0.0) >= resources.cpus_per_worker
        and node["Resources"].get("GPU", 0.0) >= resources.gpus_per_worker
        for node in nodes
    )
    if not fits_one_node:
        problems.append(
            f"no node has {resources.cpus_per_worker:g} CPUs and {resources.gpus_per_worker:g} GPUs for one "
            f"worker; lower the per-worker resources"
        )
    if concurrent > 1 and need_cpus * concurrent > total_cpus:
        logger.warning(
            "max_concurrent_trials=%d: trials will queue, because only %g CPUs exist", concurrent, total_cpus
        )
    if problems:
        raise SweepError(
            "the cluster cannot place this sweep (set resources.check_resources: false on an autoscaling "
            "cluster that adds nodes on demand):\n  " + "\n  ".join(problems)
        )


MAX_ERROR_DETAILS = 20_000


_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*([A-Z]\w*): (.+)$")


def summarize_error(text: str) -> str:
    """Return the most telling line of a Ray-wrapped error: the last `module.SomeError: message` line.

    Ray Train wraps worker errors in a WorkerGroupError whose text contains each rank's traceback. The
    last exception line is the root cause on the last rank that failed.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        match = _EXCEPTION_LINE.match(line)
        if match:
            return f"{match.group(1)}: {match.group(2)}"[:500]
    return lines[0][:500] if lines else text[:500]


def run_trial(config: dict[str, Any], storage_filesystem: Any = None) -> None:
    """Tune function trainable: run one (worker count, seed) trial as a TorchTrainer.

    `storage_filesystem` is the pyarrow file system of an S3-compatible endpoint, or None.
    """
    import ray
    from ray import tune
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from mlbench_ray.training.loop import train_loop_per_worker

    job = JobSpec.model_validate(config["job"])
    workers = int(config["trial"]["workers"])
    seed = int(config["trial"]["seed"])
    summarizer = ray.get_actor(config["summarizer_name"], namespace=config["namespace"])
    resources = job.resources

    per_worker: dict[str, float] = {"CPU": resources.cpus_per_worker}
    if resources.gpus_per_worker > 0:
        per_worker["GPU"] = resources.gpus_per_worker
    # With no backend given, Ray Train picks nccl when the workers have GPUs and gloo otherwise.
    torch_config = TorchConfig(timeout_s=resources.collective_timeout_s)
    if resources.backend != "auto":
        torch_config = TorchConfig(backend=resources.backend, timeout_s=resources.collective_timeout_s)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "job": config["job"],
            "seed": seed,
            "summarizer_name": config["summarizer_name"],
            "namespace": config["namespace"],
        },
        torch_config=torch_config,
        scaling_config=ScalingConfig(
            num_workers=workers, use_gpu=resources.gpus_per_worker > 0, resources_per_worker=per_worker
        ),
        run_config=RunConfig(
            name=f"{job.name}-{config['run_id']}-w{workers}-s{seed}",
            storage_path=ray_storage_path(job.output),
            storage_filesystem=storage_filesystem,
            failure_config=FailureConfig(max_failures=resources.max_failures),
            # Only the latest checkpoint is needed to restart.
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            worker_runtime_env={"env_vars": dict(resources.worker_env)} if resources.worker_env else None,
        ),
    )
    error: str | None = None
    error_details: str | None = None
    try:
        trainer.fit()
    except Exception as exc:  # a failed trial is a result; the sweep goes on
        error_details = f"{type(exc).__name__}: {exc}"
        error = summarize_error(error_details)
        logger.error("trial W=%d seed=%d failed: %s", workers, seed, error)

    recorded = ray.get(summarizer.has_trial.remote(workers, seed))
    if error is not None or not recorded:
        ray.get(
            summarizer.record_trial.remote(
                {
                    "workers": workers,
                    "seed": seed,
                    "status": "failed",
                    "error": error or "the trial ended without reporting a result",
                    "error_details": error_details[-MAX_ERROR_DETAILS:] if error_details else None,
                    "time_to_goal_s": None,
                    "train_time_s": None,
                    "epochs": None,
                }
            )
        )
    tune.report({"workers": workers, "seed": seed, "failed": error is not None})


def print_results(table: str, output_dir: Path) -> None:
    """Print the table and the paths of the result files, and rewrite the report."""
    from mlbench_ray.report.render import load_result_set, write_report

    print()
    print(table)
    print(f"Results: {output_dir / RESULTS_FILE}, {output_dir / TABLE_MARKDOWN}, {output_dir / TABLE_CSV}")
    # The same code as `python -m mlbench_ray.report`, on the results just written.
    report_files = write_report(load_result_set(str(output_dir)), output_dir)
    print(f"Report: {output_dir / 'report.html'} and {len(report_files) - 1} more files")


def finish_without_ray(output_dir: Path, kept_trials: list[dict[str, Any]]) -> int:
    """Rewrite the table and report of a resumed sweep that has nothing left to run."""
    from mlbench_ray.summarizer import ResultStore

    document = json.loads((output_dir / RESULTS_FILE).read_text(encoding="utf-8"))
    header = {key: value for key, value in document.items() if key not in ("summary", "trials")}
    store = ResultStore(str(output_dir), header, kept_trials)
    store.write()
    print_results(store.render_markdown(), output_dir)
    return 1 if any(t.get("status") == "failed" for t in kept_trials) else 0


def run_sweep(job: JobSpec, args: argparse.Namespace, kept_trials: list[dict[str, Any]]) -> int:
    """Prepare data, connect to Ray, run the Tune sweep and print the table; return the exit status."""
    import ray
    from ray import tune
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from mlbench_ray.environment import collect_environment, framework_label
    from mlbench_ray.summarizer import Summarizer
    from mlbench_ray.tasks import get_task_class

    task_class = get_task_class(job.task)
    output_dir = job.resolved_output_dir
    done = {(int(t["workers"]), int(t["seed"])) for t in kept_trials}
    if all((w, s) in done for w in job.workers for s in job.seeds):
        logger.info("every trial of this job already has a result in %s; nothing to run", output_dir)
        return finish_without_ray(output_dir, kept_trials)

    logger.info("checking the dataset %s under %s", job.data.dataset, job.data.root)
    dataset = task_class.prepare_data(job)

    started_ray = connect_ray(args.address)
    # Ctrl-C and SIGTERM both raise KeyboardInterrupt, which main() reports with the resume command.
    # Installed after ray.init, which sets a SIGTERM handler of its own that exits at once. Tune's
    # SIGINT handler is off, because it would end the sweep quietly, as if it had finished.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    try:
        check_resources(job)
        check_storage_for_cluster(job, len([node for node in ray.nodes() if node.get("Alive")]))
        storage_path, filesystem = storage_filesystem(job.output)
        run_id = uuid.uuid4().hex[:8]
        labels = task_class.table_labels(job)
        dataset_label = labels.dataset
        if dataset["verification"] == "not verified":
            dataset_label += " (not verified)"
        header = {
            "run_id": run_id,
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "job": job.model_dump(mode="json"),
            "metric_name": task_class.metric_name,
            "sample_unit": task_class.sample_unit,
            "planned_trials": len(job.workers) * len(job.seeds),
            "labels": {**labels.__dict__, "dataset": dataset_label},
            "framework": framework_label(),
            "environment": collect_environment(),
            "dataset": dataset,
        }
        summarizer_name = f"mlbench-summarizer-{run_id}"
        summarizer = Summarizer.options(
            name=summarizer_name,
            namespace=NAMESPACE,
            scheduling_strategy=NodeAffinitySchedulingStrategy(
                ray.get_runtime_context().get_node_id(), soft=False
            ),
        ).remote(str(output_dir.resolve()), header, kept_trials, filesystem)
        ray.get(summarizer.write.remote())

        trials = [{"workers": w, "seed": s} for w in job.workers for s in job.seeds if (w, s) not in done]
        logger.info(
            "job %s: task %s, %s, aggregation %s, workers %s, seeds %s, goal %s=%g, %d trial(s) to run "
            "(%d kept from an earlier run); results in %s",
            job.name,
            job.task,
            dataset_label,
            job.aggregation,
            job.workers,
            job.seeds,
            task_class.metric_name,
            job.goal.active,
            len(trials),
            len(done),
            output_dir,
        )
        if trials:
            trainable = tune.with_resources(
                tune.with_parameters(run_trial, storage_filesystem=filesystem),
                {"cpu": job.resources.trial_driver_cpus},
            )
            tuner = tune.Tuner(
                trainable,
                param_space={
                    "trial": tune.grid_search(trials),
                    "job": job.model_dump(mode="json"),
                    "run_id": run_id,
                    "summarizer_name": summarizer_name,
                    "namespace": NAMESPACE,
                },
                tune_config=tune.TuneConfig(max_concurrent_trials=job.resources.max_concurrent_trials),
                run_config=tune.RunConfig(
                    name=f"{job.name}-{run_id}",
                    storage_path=storage_path,
                    storage_filesystem=filesystem,
                    verbose=0,
                ),
            )
            tuner.fit()

        table = ray.get(summarizer.render_markdown.remote())
        trials_done = ray.get(summarizer.summary.remote())
        statuses = [s for row in trials_done["per_worker_count"] for s in row["statuses"]]
        print_results(table, output_dir)
        return 1 if "failed" in statuses else 0
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        if started_ray:
            ray.shutdown()


# Name of the signal that interrupted the sweep; Tune may re-raise KeyboardInterrupt without it.
_received_signal: list[str] = []


def check_paths_under_ray_job(job: JobSpec) -> None:
    """Reject relative paths that a Ray job would resolve inside its temporary working directory.

    `ray job submit --working-dir` runs the command in a copy of that folder, without its git-ignored
    files, which Ray deletes afterwards.
    """
    cwd = Path.cwd()
    if "_ray_pkg_" not in str(cwd):
        return
    problems = []
    if not job.resolved_output_dir.is_absolute():
        problems.append(
            f"output.output_dir: {job.resolved_output_dir} is relative, so the results would be written into "
            f"the job's temporary copy of the working directory ({cwd}) and deleted with it; pass "
            f"--output-dir with an absolute path, for example /home/ray/results/{job.name}"
        )
    reads_files = job.data.dataset != "synthetic"
    if reads_files and not job.data.root.is_absolute() and not job.data.root.exists():
        problems.append(
            f"data.root: {job.data.root} is relative and missing in the job's copy of the working directory "
            f"({cwd}), which leaves out git-ignored folders such as data/; pass --data-root with an "
            f"absolute path on the cluster's nodes"
        )
    if problems:
        raise ConfigError("running as a Ray job:\n  " + "\n  ".join(problems))


def with_absolute_paths(job: JobSpec) -> JobSpec:
    """Resolve local paths against this folder: Ray workers run in folders of their own."""
    data = job.data.model_copy(update={"root": job.data.root.expanduser().resolve()})
    output = job.output.model_copy(update={"output_dir": job.resolved_output_dir.expanduser().resolve()})
    storage = job.output.storage_path
    if storage and "://" not in storage:
        output = output.model_copy(update={"storage_path": str(Path(storage).expanduser().resolve())})
    return job.model_copy(update={"data": data, "output": output})


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _received_signal.append(signal.Signals(signum).name)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def resume_command(argv: list[str]) -> str:
    """Return the command that resumes this sweep: the same arguments with --resume."""
    kept = [arg for arg in argv if arg not in ("--overwrite", "--resume")]
    return shlex.join(["python", "-m", "mlbench_ray.sweep", *kept, "--resume"])


def load_suite(path: Path, overrides: dict[str, Any]) -> list[JobSpec]:
    """Load and validate every job of a suite file before any of them runs."""
    raw = load_job_dict(path)
    files = raw.get("jobs")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise ConfigError(
            f"suite file {path} must contain `jobs:`, a non-empty list of job files relative to it, for "
            f"example jobs: [cifar10-resnet20-allreduce.yaml]"
        )
    parent = overrides.pop("output.output_dir", None)
    jobs = []
    for name in files:
        job_path = path.parent / name
        if not job_path.is_file():
            raise ConfigError(
                f"suite file {path}: job file {name} not found next to it ({job_path}); list job files "
                f"relative to the suite file"
            )
        job = load_job(job_path, overrides)
        if parent is not None:
            job = job.model_copy(
                update={"output": job.output.model_copy(update={"output_dir": Path(parent) / job.name})}
            )
        check_paths_under_ray_job(job)
        jobs.append(with_absolute_paths(job))
    names = [job.name for job in jobs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"suite file {path}: job names must differ, but {repeated} repeat")
    return jobs


def run_job(job: JobSpec, args: argparse.Namespace, output_dirs: list[Path]) -> int:
    """Run one job's sweep under its output lock; return its exit status."""
    output_dir = job.resolved_output_dir
    output_dirs.append(output_dir)
    ensure_writable(output_dir)
    with output_lock(output_dir):
        kept_trials = check_output_dir(output_dir, args.overwrite, args.resume, job)
        return run_sweep(job, args, kept_trials)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    output_dirs: list[Path] = []
    try:
        overrides = overrides_from_args(args)
        if args.suite is None:
            job = load_job(args.job, overrides)
            check_paths_under_ray_job(job)
            return run_job(with_absolute_paths(job), args, output_dirs)
        jobs = load_suite(args.suite, overrides)
        # Every job's data and output folder is checked before the first job runs.
        from mlbench_ray.tasks import get_task_class

        # Data first, so that a missing dataset leaves no empty output folders behind.
        for job in jobs:
            get_task_class(job.task).prepare_data(job)
        for job in jobs:
            ensure_writable(job.resolved_output_dir)
        statuses = []
        for index, job in enumerate(jobs, start=1):
            logger.info("suite %s: job %d of %d, %s", args.suite, index, len(jobs), job.name)
            try:
                statuses.append(run_job(job, args, output_dirs))
            except (DataError, SweepError, StorageError) as exc:
                # One job's bad data or output folder does not stop the other jobs.
                print(f"error: job {job.name}: {exc}", file=sys.stderr)
                statuses.append(2)
        return max(statuses)
    except (ConfigError, DataError, SweepError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        output_dir = output_dirs[-1] if output_dirs else None
        reason = _received_signal[-1] if _received_signal else str(exc) or "SIGINT"
        if output_dir is None or not (output_dir / RESULTS_FILE).exists():
            print(f"\ninterrupted ({reason}) before any result was written", file=sys.stderr)
        else:
            print(
                f"\ninterrupted ({reason}): workers stopped; finished trials are in "
                f"{output_dir / RESULTS_FILE}.\nResume with: {resume_command(argv)}",
                file=sys.stderr,
            )
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
