"""Test helpers: tiny datasets in the real on-disk layouts, and gloo rank groups on loopback."""

from __future__ import annotations

import gzip
import io
import pickle
import socket
import struct
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def write_cifar10(root: Path, train_per_batch: int = 64, test_samples: int = 100, seed: int = 0) -> Path:
    """Write a tiny CIFAR-10 in torchvision's `cifar-10-batches-py` layout; return the folder.

    Images are class-coloured blocks with noise, so a model can learn them in a few steps.
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(10, 3), dtype=np.int64)

    def batch(count: int, label: str) -> dict[str, Any]:
        labels = rng.integers(0, 10, size=count)
        images = colours[labels][:, :, None, None] + rng.normal(0, 20, size=(count, 3, 32, 32))
        data = np.clip(images, 0, 255).astype(np.uint8).reshape(count, 3072)
        return {"batch_label": label, "labels": labels.tolist(), "data": data, "filenames": []}

    for index in range(1, 6):
        with (folder / f"data_batch_{index}").open("wb") as handle:
            pickle.dump(batch(train_per_batch, f"training batch {index} of 5"), handle)
    with (folder / "test_batch").open("wb") as handle:
        pickle.dump(batch(test_samples, "testing batch 1 of 1"), handle)
    with (folder / "batches.meta").open("wb") as handle:
        names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        pickle.dump({"label_names": names, "num_cases_per_batch": train_per_batch}, handle)
    return folder


def _idx_bytes(array: np.ndarray) -> bytes:
    # IDX format: magic (0, 0, type 0x08 = uint8, number of dimensions), then big-endian sizes.
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def write_fashion_mnist_gz(root: Path, train: int = 64, test: int = 32, seed: int = 0) -> Path:
    """Write a tiny Fashion-MNIST as gzipped IDX files in `FashionMNIST/raw`; return that folder."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, size=count)
        images = rng.integers(0, 256, size=(count, 28, 28))
        (raw / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images)))
        (raw / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels)))
    return raw


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank_entry(rank: int, world_size: int, port: int, fn: Callable, args: tuple, queue: Any) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        # Serialised with torch.save: tensors sent as-is would live in shared memory that the
        # exiting child process takes with it.
        buffer = io.BytesIO()
        torch.save(fn(rank, world_size, *args), buffer)
        queue.put((rank, buffer.getvalue(), None))
    except Exception:  # report it to the parent instead of leaving it waiting on the queue
        queue.put((rank, None, traceback.format_exc()))
    finally:
        dist.destroy_process_group()


def run_ranks(fn: Callable, world_size: int, *args: Any) -> list[Any]:
    """Run `fn(rank, world_size, *args)` on `world_size` real gloo ranks; return results by rank.

    `fn` must be a module-level function (it is pickled into spawned processes).
    """
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    port = free_port()
    processes = [
        context.Process(target=_rank_entry, args=(rank, world_size, port, fn, args, queue))
        for rank in range(world_size)
    ]
    for process in processes:
        process.start()
    results: dict[int, Any] = {}
    for _ in processes:
        rank, value, error = queue.get()
        if error is not None:
            for process in processes:
                process.terminate()
            raise AssertionError(f"rank {rank} raised:\n{error}")
        results[rank] = torch.load(io.BytesIO(value), weights_only=False)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0, f"rank process exited with {process.exitcode}"
    return [results[rank] for rank in range(world_size)]


def _sentences(count: int, seed: int) -> list[str]:
    """Sentences of a small, regular language: the determiner, noun and verb patterns are learnable."""
    rng = np.random.default_rng(seed)
    nouns = ["cat", "dog", "bird", "fish", "horse", "cow"]
    verbs = ["sees", "likes", "follows", "feeds"]
    adjectives = ["small", "big", "red", "old"]
    sentences = []
    for _ in range(count):
        subject, obj = rng.choice(nouns, 2)
        words = [
            "the",
            str(rng.choice(adjectives)),
            str(subject),
            str(rng.choice(verbs)),
            "the",
            str(obj),
            ".",
        ]
        sentences.append(" ".join(words))
    return sentences


def write_wikitext(root: Path, train_lines: int = 120, eval_lines: int = 20, seed: int = 0) -> Path:
    """Write a tiny corpus in both WikiText-2 layouts (tokenized and raw) under `root`; return `root`.

    Each line is a paragraph of 4 sentences, as in WikiText. The files do not match WikiText-2's
    checksums, so the sweep must run with checksum verification off.
    """
    counts = {"train": train_lines, "valid": eval_lines, "test": eval_lines}
    for offset, (split, lines) in enumerate(counts.items()):
        sentences = _sentences(4 * lines, seed * 10 + offset)
        text = "".join(f" {' '.join(sentences[4 * i : 4 * i + 4])} \n" for i in range(lines))
        for folder, suffix in (("wikitext-2", "tokens"), ("wikitext-2-raw", "raw")):
            (root / folder).mkdir(parents=True, exist_ok=True)
            (root / folder / f"wiki.{split}.{suffix}").write_text(text, encoding="utf-8")
    return root


WORDS = ["ka", "lo", "mu", "ri", "so", "ta", "ne", "pi", "du", "fe", "go", "hu", "ji", "ze", "wa", "yo"]


def write_parallel(
    root: Path,
    dataset: str = "wmt16",
    train_lines: int = 600,
    test_lines: int = 40,
    reverse: bool = True,
    seed: int = 0,
) -> Path:
    """Write a tiny parallel corpus in the WMT layout: the German side reverses (or copies) the English.

    Sentences are 3 to 7 words from a 16-word vocabulary; a small model learns the mapping. Returns
    the corpus folder (`<root>/wmt16-en-de`).
    """
    folder = root / f"{dataset}-en-de"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_lines), ("valid", test_lines), ("test", test_lines)):
        english, german = [], []
        for _ in range(count):
            words = [str(w) for w in rng.choice(WORDS, size=int(rng.integers(3, 8)))]
            english.append(" ".join(words))
            german.append(" ".join(reversed(words) if reverse else words))
        (folder / f"{split}.en").write_text("\n".join(english) + "\n", encoding="utf-8")
        (folder / f"{split}.de").write_text("\n".join(german) + "\n", encoding="utf-8")
    return folder
