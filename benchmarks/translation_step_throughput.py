"""Step throughput of the translation tasks against plain PyTorch loops, and their data share.

    python benchmarks/translation_step_throughput.py [--steps 20] [--repeats 3] [--threads 1]

Both tasks run their `tiny` CPU presets on one process with `--threads` torch threads, on a parallel
corpus of random words (a Zipf-like draw from 5,000 words, 4 to 30 words a sentence, the German side the
English reversed, fixed seed) written in the WMT layout to a temporary folder, with 4,000 BPE merges:

- GNMT (2+2 LSTM layers of 128 units, attention, dropout 0.2), 64 sentences a step in one micro-batch,
  Adam, label smoothing 0.1, clipping 5. Throughput is in sentences per second.
- Transformer (2+2 layers, d_model 128, 4 heads), 2,048 tokens a step in one micro-batch, Adam,
  label smoothing 0.1. Throughput is in target tokens per second.

The plain loops train the same models with the same optimizers, learning-rate schedules and loss on the
same global batches, padding each batch when it is drawn, as a DataLoader's collate function would. The
project's figure covers its training steps only (evaluation excluded), from the loop's step timer, which
also gives the data share: data / (data + compute + communication). The sides alternate, `--repeats`
times each, the plain loop first in every second repeat, and the table shows medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mlbench_ray.config import JobSpec, load_job
from mlbench_ray.data.translation import BOS_ID, EOS_ID, PAD_ID
from mlbench_ray.tasks.base import WorkerContext
from mlbench_ray.tasks.translation import GNMTTask, TransformerTask, TranslationTask, pad
from mlbench_ray.training.loop import run_training

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {
    "gnmt": {"task_options.global_batch_size": 64, "task_options.micro_batch_size": 64},
    "transformer": {"task_options.global_batch_tokens": 2048, "task_options.micro_batch_tokens": 4096},
}


def write_corpus(root: Path, pairs: int = 20_000) -> None:
    """Write random-word sentence pairs in the WMT layout for both datasets."""
    rng = np.random.default_rng(0)
    vocabulary = [f"w{index}" for index in range(5_000)]
    lines = []
    for _ in range(pairs):
        draws = np.minimum(rng.zipf(1.2, size=int(rng.integers(4, 31))) - 1, len(vocabulary) - 1)
        lines.append([vocabulary[i] for i in draws])
    for dataset in ("wmt16", "wmt17"):
        folder = root / f"{dataset}-en-de"
        folder.mkdir(parents=True, exist_ok=True)
        for split, part in (("train", lines), ("valid", lines[:50]), ("test", lines[:50])):
            (folder / f"{split}.en").write_text("".join(" ".join(w) + "\n" for w in part), encoding="utf-8")
            (folder / f"{split}.de").write_text(
                "".join(" ".join(reversed(w)) + "\n" for w in part), encoding="utf-8"
            )


def job(task: str, root: Path, steps: int) -> JobSpec:
    name = "wmt16-gnmt-allreduce.yaml" if task == "gnmt" else "wmt17-transformer-allreduce.yaml"
    return load_job(
        REPO / "jobs" / name,
        {
            "workers": [1],
            "max_epochs": 1,
            "max_steps_per_epoch": steps,
            "data.root": str(root),
            "data.download": False,
            "data.verify_checksums": False,
            "resources.gpus_per_worker": 0,
            "task_options.size": "tiny",
            "task_options.merges": 4000,
            "task_options.test_lines": None,
            "task_options.eval_interval": None,
            "task_options.beam_size": 1,
            "goal.value": 100.0,
            **SETTINGS[task],
        },
    )


def project(task: str, root: Path, steps: int) -> tuple[float, float]:
    """Return samples per second and the data share of the project's training step."""
    result = run_training(job(task, root, steps), WorkerContext(1, 0, 0, torch.device("cpu"), seed=0))
    step = result["step_time"]
    total = step["data_s"] + step["compute_s"] + (step["communication_s"] or 0.0)
    return float(result["samples_per_s"]), step["data_s"] / total


def plain(task: str, root: Path, steps: int) -> float:
    """Train the same model, optimizer, loss and batches in a plain loop and return samples per second."""
    spec = job(task, root, steps)
    task_class: type[TranslationTask] = GNMTTask if task == "gnmt" else TransformerTask
    # The task builds the model, the optimizer and the epoch's batches exactly as the project does.
    reference = task_class(spec, WorkerContext(1, 0, 0, torch.device("cpu"), seed=0))
    model, optimizer = reference.model, reference.optimizer
    batches = reference._batches(1)[:steps]
    pairs = reference.train
    clip = getattr(reference.options, "clip", None)
    model.train()
    samples = 0
    start = time.perf_counter()
    for step, indices in enumerate(batches):
        # The task's learning-rate schedule, as the project's loop applies it before each step.
        for group in optimizer.param_groups:
            group["lr"] = reference.peak_lr * reference.lr_factor(step + 1)
        sources, inputs, outputs = [], [], []
        for index in indices.tolist():
            source, target = (part.long() for part in pairs.pair(index))
            sources.append(torch.cat([source, torch.tensor([EOS_ID])]))
            inputs.append(torch.cat([torch.tensor([BOS_ID]), target]))
            outputs.append(torch.cat([target, torch.tensor([EOS_ID])]))
        lengths = torch.tensor([s.numel() for s in sources])
        target_output = pad(outputs)
        logits = model(pad(sources), lengths, pad(inputs))
        tokens = int(target_output.ne(PAD_ID).sum())
        loss = (
            F.cross_entropy(
                logits.reshape(-1, logits.size(-1)),
                target_output.reshape(-1),
                ignore_index=PAD_ID,
                label_smoothing=0.1,
                reduction="sum",
            )
            / tokens
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        samples += len(indices) if task == "gnmt" else tokens
    return samples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per side")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--tasks", default="gnmt,transformer", help="comma-separated tasks to measure (default both)"
    )
    args = parser.parse_args()
    unknown = set(args.tasks.split(",")) - {"gnmt", "transformer"}
    if unknown:
        parser.error(f"--tasks: unknown task(s) {', '.join(sorted(unknown))}; use gnmt, transformer or both")
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_corpus(root)
        print(f"{args.steps} steps, {args.threads} thread(s), {args.repeats} repeats, CPU")
        print("| Task | Project | Plain loop | Ratio project / plain | Ratios | Data share |")
        print("|---|---|---|---|---|---|")
        labels = {"gnmt": "GNMT tiny, sentences/s", "transformer": "Transformer tiny, tokens/s"}
        for task in args.tasks.split(","):
            label = labels[task]
            task_class = GNMTTask if task == "gnmt" else TransformerTask
            task_class.prepare_data(job(task, root, args.steps))  # BPE and encoding, outside the figures
            plain(task, root, 2)  # warm-up
            project_rates, plain_rates, shares = [], [], []
            for repeat in range(args.repeats):
                # Alternating which side runs first cancels any advantage of running second.
                if repeat % 2:
                    plain_rates.append(plain(task, root, args.steps))
                rate, share = project(task, root, args.steps)
                project_rates.append(rate)
                shares.append(share)
                if not repeat % 2:
                    plain_rates.append(plain(task, root, args.steps))
            ratios = [p / q for p, q in zip(project_rates, plain_rates, strict=True)]
            print(
                f"| {label} | {statistics.median(project_rates):.1f} | {statistics.median(plain_rates):.1f} "
                f"| {statistics.median(ratios):.3f} | {[round(r, 3) for r in ratios]} "
                f"| {statistics.median(shares):.2%} |"
            )


if __name__ == "__main__":
    main()
