"""A prepared check for a GPU machine: ResNet-20 throughput and time to 80% top-1, in one process.

    python benchmarks/gpu_check.py [--data-root data] [--output gpu_check.json]

Meant to finish in under 5 minutes on one current GPU. It reports:

1. ResNet-20 training images/s at batch 128 through the project's loop (`run_training`), with the GPU
   fast paths at their defaults (dataset in device memory, channels-last, bf16 autocast), after a
   warm-up epoch that is not counted.
2. Time to 80% top-1 with the CIFAR-10 job's settings on one worker, on CIFAR-10 from `--data-root`
   when `cifar-10-batches-py/` is there (checksums verified), else on synthetic data, labelled as such.
   `--max-epochs` caps the run; a capped run is reported as not converged.

3. AWD-LSTM tokens/s and BERT blocks/s through `run_training`, at `--lm-size` (`official`: AWD-LSTM
   400/1150/3 and BERT-base; `tiny` for CPU), on a corpus of random words in WikiText-2's layout
   written to a temporary folder, the second of two epochs of `--lm-steps` steps.

4. GNMT sentences/s and Transformer tokens/s through `run_training`, at the same `--lm-size`
   (`official`: GNMT 4+4 x 1024 and Transformer big), on random-word sentence pairs in the WMT layout,
   the second of two epochs of `--lm-steps` steps of 256 sentences (GNMT) or 16,384 tokens
   (Transformer) in micro-batches of the job files' default size.

With `--device cpu`, `--lm-size tiny` and small `--steps`, `--lm-steps`, `--max-epochs` and
`--synthetic-samples` the script also runs on a CPU, as a smoke test of the script itself.

NOTE: this script has run only on a CPU so far; the 5-minute budget on a GPU is an estimate.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from language_step_throughput import write_corpus
from translation_step_throughput import write_corpus as write_parallel_corpus

from mlbench_ray.config import load_job
from mlbench_ray.tasks.base import WorkerContext
from mlbench_ray.training.loop import run_training

REPO = Path(__file__).resolve().parents[1]


def images_per_second(device: torch.device, steps: int) -> float:
    """Measure ResNet-20 training throughput on synthetic data after one unmeasured warm-up epoch."""
    overrides = {
        "workers": [1],
        "max_epochs": 2,
        "goal.value": 1.0,
        "max_steps_per_epoch": steps,
        "data.dataset": "synthetic",
        "data.synthetic_train_samples": 128 * steps,
        "data.synthetic_test_samples": 128,
        "task_options.batch_size_per_worker": 128,
    }
    job = load_job(REPO / "jobs" / "quickstart.yaml", overrides)
    result = run_training(job, WorkerContext(1, 0, 0, device, seed=0))
    # The second epoch's throughput: the first paid for allocation and kernel selection.
    return float(result["curve"][-1]["samples_per_s"])


def time_to_goal(device: torch.device, data_root: Path, max_epochs: int, synthetic_samples: int) -> dict:
    """Train the CIFAR-10 job's settings on one worker; return status, times and dataset label."""
    real = (data_root / "cifar-10-batches-py").is_dir()
    overrides: dict = {"workers": [1], "max_epochs": max_epochs, "data.root": str(data_root)}
    if not real:
        overrides.update(
            {
                "data.dataset": "synthetic",
                "data.synthetic_train_samples": synthetic_samples,
                "data.synthetic_test_samples": max(synthetic_samples // 5, 128),
            }
        )
    job = load_job(REPO / "jobs" / "cifar10-resnet20-allreduce.yaml", overrides)
    if real:
        from mlbench_ray.tasks.image_classification import ImageClassificationTask

        ImageClassificationTask.prepare_data(job)  # verifies checksums before the clock starts
    result = run_training(job, WorkerContext(1, 0, 0, device, seed=0))
    return {
        "dataset": "CIFAR-10 (verified)" if real else "SYNTHETIC (no CIFAR-10 under --data-root)",
        "status": result["status"],
        "time_to_goal_s": result["time_to_goal_s"],
        "train_time_s": result["train_time_s"],
        "epochs": result["epochs"],
        "final_top1": result["final_metric"],
    }


def second_epoch_rate(job_file: str, device: torch.device, root: Path, steps: int, overrides: dict) -> float:
    """Train a job for two epochs of `steps` steps on one worker and return the second epoch's throughput."""
    common = {
        "workers": [1],
        "max_epochs": 2,
        "max_steps_per_epoch": steps,
        "data.root": str(root),
        "data.download": False,
        "data.verify_checksums": False,
    }
    job = load_job(REPO / "jobs" / job_file, {**common, **overrides})
    result = run_training(job, WorkerContext(1, 0, 0, device, seed=0))
    return float(result["curve"][-1]["samples_per_s"])


def language_model_rate(task: str, device: torch.device, root: Path, steps: int, size: str) -> float:
    """Measure a language-modelling task's training throughput in its second epoch."""
    if task == "awd":
        overrides = {"goal.value": 1.01, "task_options.size": size}
        return second_epoch_rate("wikitext2-awdlstm-allreduce.yaml", device, root, steps, overrides)
    overrides = {"goal.value": 0.999, "task_options.size": "base" if size == "official" else "tiny"}
    return second_epoch_rate("wikitext2-bert.yaml", device, root, steps, overrides)


def translation_rate(task: str, device: torch.device, root: Path, steps: int, size: str) -> float:
    """Measure a translation task's training throughput in its second epoch."""
    overrides = {
        "goal.value": 100.0,
        "task_options.size": size,
        "task_options.test_lines": None,
        "task_options.eval_interval": None,
        "task_options.beam_size": 1,
    }
    if task == "gnmt":
        overrides["task_options.global_batch_size"] = 256
        return second_epoch_rate("wmt16-gnmt-allreduce.yaml", device, root, steps, overrides)
    overrides["task_options.global_batch_tokens"] = 16384
    return second_epoch_rate("wmt17-transformer-allreduce.yaml", device, root, steps, overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument(
        "--data-root", type=Path, default=Path("data"), help="folder with cifar-10-batches-py/"
    )
    parser.add_argument("--steps", type=int, default=100, help="steps per epoch of the throughput run")
    parser.add_argument("--max-epochs", type=int, default=30, help="epoch cap of the time-to-goal run")
    parser.add_argument(
        "--synthetic-samples", type=int, default=50_000, help="training images when CIFAR-10 is absent"
    )
    parser.add_argument(
        "--lm-steps", type=int, default=50, help="steps per epoch of the language-model and translation runs"
    )
    parser.add_argument(
        "--lm-size",
        choices=("official", "tiny"),
        default="official",
        help="language-model and translation presets",
    )
    parser.add_argument("--output", type=Path, default=Path("gpu_check.json"), help="where to write the JSON")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device is visible; pass --device cpu for a smoke run of this script")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    started = time.perf_counter()
    report = {
        "device": name,
        "torch": torch.__version__,
        "resnet20_images_per_s": images_per_second(device, args.steps),
        "time_to_80_percent": time_to_goal(
            device, args.data_root.resolve(), args.max_epochs, args.synthetic_samples
        ),
    }
    with tempfile.TemporaryDirectory() as folder:
        write_corpus(Path(folder))
        report[f"awd_lstm_{args.lm_size}_tokens_per_s"] = language_model_rate(
            "awd", device, Path(folder), args.lm_steps, args.lm_size
        )
        report[f"bert_{args.lm_size}_blocks_per_s"] = language_model_rate(
            "bert", device, Path(folder), args.lm_steps, args.lm_size
        )
    with tempfile.TemporaryDirectory() as folder:
        write_parallel_corpus(Path(folder))
        report[f"gnmt_{args.lm_size}_sentences_per_s"] = translation_rate(
            "gnmt", device, Path(folder), args.lm_steps, args.lm_size
        )
        report[f"transformer_{args.lm_size}_tokens_per_s"] = translation_rate(
            "transformer", device, Path(folder), args.lm_steps, args.lm_size
        )
    report["wall_time_s"] = time.perf_counter() - started
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
