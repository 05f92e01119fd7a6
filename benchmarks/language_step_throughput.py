"""Step throughput of the language-modelling tasks against plain PyTorch loops, and their data share.

    python benchmarks/language_step_throughput.py [--steps 20] [--repeats 3] [--threads 1]

Both tasks run their `tiny` CPU presets on one process with `--threads` torch threads, on a corpus of
random words (a Zipf-like draw from 10,000 words, fixed seed) written in WikiText-2's layout to a
temporary folder:

- AWD-LSTM (embedding 128, hidden 256, 3 layers, weight-drop and the other dropouts, AR/TAR, clipping
  0.25), 20 columns. The project's side runs `run_training`, whose sequence lengths vary around 70;
  the plain loop always uses 70. Throughput is in target tokens per second.
- BERT (2 layers, hidden 128, WordPiece vocabulary of 8,192), 32 blocks of 128 tokens, masking drawn
  for every batch on both sides, AdamW and clipping 1.0. Throughput is in blocks per second.

The project's figure covers its training steps only (evaluation excluded), from the loop's step
timer, which also gives the data share: data / (data + compute + communication). The sides alternate,
`--repeats` times each, and the table shows medians.
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
from mlbench_ray.data.text import (
    SPECIAL_TOKENS,
    corpus_files,
    encode_blocks,
    load_token_corpus,
    mask_tokens,
    wordpiece_tokenizer,
)
from mlbench_ray.models.awd_lstm import AWDLSTM
from mlbench_ray.models.bert import BertMLM, weight_decay_groups
from mlbench_ray.tasks.base import WorkerContext
from mlbench_ray.training.loop import run_training

REPO = Path(__file__).resolve().parents[1]
COLUMNS, BPTT = 20, 70
BLOCKS, BLOCK_LENGTH = 32, 128


def write_corpus(root: Path, words: int = 400_000) -> None:
    """Write random words in both WikiText-2 layouts, one 100-word paragraph a line."""
    rng = np.random.default_rng(0)
    vocabulary = [f"w{index}" for index in range(10_000)]
    draws = np.minimum(rng.zipf(1.2, size=words) - 1, len(vocabulary) - 1)
    lines = [" ".join(vocabulary[i] for i in draws[start : start + 100]) for start in range(0, words, 100)]
    splits = {"train": lines[: len(lines) * 8 // 10], "valid": lines[-len(lines) // 10 :]}
    splits["test"] = splits["valid"]
    for folder, suffix in (("wikitext-2", "tokens"), ("wikitext-2-raw", "raw")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for split, split_lines in splits.items():
            text = "".join(f" {line} \n" for line in split_lines)
            (root / folder / f"wiki.{split}.{suffix}").write_text(text, encoding="utf-8")


def job(task: str, root: Path, steps: int) -> JobSpec:
    name = "wikitext2-awdlstm-allreduce.yaml" if task == "awd" else "wikitext2-bert.yaml"
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
            "goal.value": 0.999 if task == "bert" else 1.01,
        },
    )


def project(task: str, root: Path, steps: int) -> tuple[float, float]:
    """Return samples per second and the data share of the project's training step."""
    result = run_training(job(task, root, steps), WorkerContext(1, 0, 0, torch.device("cpu"), seed=0))
    step = result["step_time"]
    total = step["data_s"] + step["compute_s"] + (step["communication_s"] or 0.0)
    return float(result["samples_per_s"]), step["data_s"] / total


def plain_awd(root: Path, steps: int) -> float:
    corpus = load_token_corpus(job("awd", root, steps).data)
    rows = corpus.train.numel() // COLUMNS
    data = corpus.train[: rows * COLUMNS].view(COLUMNS, rows).t().contiguous()
    torch.manual_seed(0)
    model = AWDLSTM(len(corpus.vocabulary), 128, 256, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=15.0, weight_decay=1.2e-6)
    hidden = model.init_hidden(COLUMNS)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        inputs = data[step * BPTT : (step + 1) * BPTT]
        targets = data[step * BPTT + 1 : (step + 1) * BPTT + 1]
        logits, hidden, raw, dropped = model(inputs, hidden)
        hidden = [(h.detach(), c.detach()) for h, c in hidden]
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        loss = loss + 2.0 * dropped.pow(2).mean() + 1.0 * (raw[1:] - raw[:-1]).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimizer.step()
    return COLUMNS * BPTT * steps / (time.perf_counter() - start)


def plain_bert(root: Path, steps: int) -> float:
    spec = job("bert", root, steps).data
    tokenizer = wordpiece_tokenizer(spec, 8192, lowercase=True)
    blocks = torch.stack(
        encode_blocks(tokenizer, corpus_files(spec)["train"], BLOCK_LENGTH, keep_partial=False)
    )
    vocab = tokenizer.get_vocab_size()
    torch.manual_seed(0)
    model = BertMLM(vocab, 128, 2, 2, 512, BLOCK_LENGTH)
    optimizer = torch.optim.AdamW(weight_decay_groups(model, 0.01), lr=1e-4, eps=1e-6)
    generator = torch.Generator().manual_seed(0)
    mask_id = tokenizer.token_to_id("[MASK]")
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        ids = blocks[step * BLOCKS : (step + 1) * BLOCKS]
        inputs, labels = mask_tokens(ids, generator, mask_id, len(SPECIAL_TOKENS), vocab)
        predict = labels >= 0
        loss = F.cross_entropy(model(inputs, predict), labels[predict])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return BLOCKS * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per side")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_corpus(root)
        print(f"{args.steps} steps, {args.threads} thread(s), {args.repeats} repeats, CPU")
        print("| Task | Project | Plain loop | Ratio project / plain | Ratios | Data share |")
        print("|---|---|---|---|---|---|")
        for task, label, plain in (
            ("awd", "AWD-LSTM tiny, tokens/s", plain_awd),
            ("bert", "BERT tiny, blocks/s", plain_bert),
        ):
            plain(root, 2)  # warm-up, and the tokenizer's training, outside the figures
            project_rates, plain_rates, shares = [], [], []
            for _ in range(args.repeats):
                rate, share = project(task, root, args.steps)
                project_rates.append(rate)
                shares.append(share)
                plain_rates.append(plain(root, args.steps))
            ratios = [p / q for p, q in zip(project_rates, plain_rates, strict=True)]
            print(
                f"| {label} | {statistics.median(project_rates):.1f} | {statistics.median(plain_rates):.1f} "
                f"| {statistics.median(ratios):.3f} | {[round(r, 3) for r in ratios]} "
                f"| {statistics.median(shares):.2%} |"
            )


if __name__ == "__main__":
    main()
