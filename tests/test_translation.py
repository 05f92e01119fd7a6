"""Translation tasks: corpus BLEU and its gathering, fixed global batches, data checks, decoding."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import torch
from sacrebleu.metrics import BLEU

from mlbench_ray.config import ConfigError, load_job
from mlbench_ray.data.ding_corpus import main as ding_main
from mlbench_ray.data.ding_corpus import parse_pairs
from mlbench_ray.data.errors import DataError
from mlbench_ray.data.translation import (
    BOS_ID,
    EOS_ID,
    TrainingArchive,
    bpe_key,
    extract_training_text,
    prepare_parallel_corpus,
)
from mlbench_ray.distributed.aggregation import make_aggregator
from mlbench_ray.models.decoding import beam_search, greedy_decode
from mlbench_ray.tasks.base import WorkerContext
from mlbench_ray.tasks.translation import (
    GNMTTask,
    TransformerTask,
    corpus_bleu,
    gather_in_order,
    global_batches,
    rank_share,
    split_micro,
)
from tests.helpers import run_ranks, write_parallel
from tests.test_config import REPO

GNMT_SMALL = {
    "data.verify_checksums": False,
    "data.download": False,
    "resources.gpus_per_worker": 0,
    "task_options.size": "tiny",
    "task_options.hidden_size": 16,
    "task_options.merges": 40,
    "task_options.test_lines": None,
    "task_options.dropout": 0.0,
    "task_options.beam_size": 2,
    "task_options.eval_batch_size": 8,
}
TRANSFORMER_SMALL = {
    "data.verify_checksums": False,
    "data.download": False,
    "resources.gpus_per_worker": 0,
    "task_options.size": "tiny",
    "task_options.d_model": 16,
    "task_options.ffn_size": 32,
    "task_options.heads": 2,
    "task_options.merges": 40,
    "task_options.test_lines": None,
    "task_options.dropout": 0.0,
}

HYPOTHESES = [
    "The cat sat on the mat.",
    "A dog barked at the mailman loudly.",
    "It was raining in Berlin yesterday.",
    "We have seen this film twice.",
]
REFERENCES = [
    "The cat sat on the mat.",
    "The dog barked loudly at the mailman.",
    "Yesterday it rained in Berlin.",
    "We have seen this movie two times.",
]


def gnmt_job(root: Path, workers: list[int], **overrides: Any) -> Any:
    settings = {**GNMT_SMALL, "data.root": str(root), "workers": workers, **overrides}
    return load_job(REPO / "jobs" / "wmt16-gnmt-allreduce.yaml", settings)


def transformer_job(root: Path, workers: list[int], **overrides: Any) -> Any:
    settings = {**TRANSFORMER_SMALL, "data.root": str(root), "workers": workers, **overrides}
    return load_job(REPO / "jobs" / "wmt17-transformer-allreduce.yaml", settings)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("parallel")
    write_parallel(root, "wmt16", train_lines=97, test_lines=12)
    write_parallel(root, "wmt17", train_lines=97, test_lines=12)
    return root


# ---------------------------------------------------------------------------------------------------
# BLEU


def test_corpus_bleu_not_batch_mean() -> None:
    """One corpus BLEU over all sentences equals sacrebleu's; the mean of per-batch BLEU differs."""
    metric = BLEU(tokenize="13a", lowercase=False)
    ours = corpus_bleu(metric, HYPOTHESES, REFERENCES)
    expected = BLEU(tokenize="13a").corpus_score(HYPOTHESES, [REFERENCES]).score
    assert ours == pytest.approx(expected, abs=1e-9)
    batch_mean = (
        sum(
            BLEU(tokenize="13a").corpus_score(HYPOTHESES[i : i + 2], [REFERENCES[i : i + 2]]).score
            for i in (0, 2)
        )
        / 2
    )
    assert abs(batch_mean - ours) > 1.0
    with pytest.raises(ValueError, match="3 hypotheses for 4 references"):
        corpus_bleu(metric, HYPOTHESES[:3], REFERENCES)


def _gathered_bleu(rank: int, world_size: int) -> tuple[list[str], float]:
    start, stop = rank * 2, rank * 2 + 2  # contiguous parts, as eval_range deals them
    gathered = gather_in_order(HYPOTHESES[start:stop])
    return gathered, corpus_bleu(BLEU(tokenize="intl", lowercase=True), gathered, REFERENCES)


def test_bleu_gathered_from_two_ranks_equals_one_process() -> None:
    """Hypotheses gathered from 2 gloo ranks arrive in test-set order and score as in one process."""
    single = corpus_bleu(BLEU(tokenize="intl", lowercase=True), HYPOTHESES, REFERENCES)
    for gathered, score in run_ranks(_gathered_bleu, 2):
        assert gathered == HYPOTHESES
        assert score == pytest.approx(single, abs=1e-9)


# ---------------------------------------------------------------------------------------------------
# Fixed global batch by accumulation


@pytest.mark.parametrize("unit,size,micro", [("sentences", 32, 5), ("tokens", 200, 40)])
def test_global_batches_same_for_any_w(unit: str, size: int, micro: int) -> None:
    """The micro-batches of all ranks together are exactly the global batch, whatever W."""
    lengths = torch.randint(2, 12, (97,), generator=torch.Generator().manual_seed(3))
    batches = global_batches(lengths, unit, size, seed=0, epoch=1)
    assert sorted(torch.cat(batches).tolist()) == list(range(97))  # nothing dropped, nothing twice
    if unit == "tokens":
        assert all(int(lengths[b].sum()) <= size or b.numel() == 1 for b in batches)
    for batch in batches:
        for world_size in (1, 2, 3):
            parts = [
                part
                for rank in range(world_size)
                for part in split_micro(rank_share(batch, world_size, rank), lengths, unit, micro)
            ]
            assert sorted(torch.cat(parts).tolist()) == sorted(batch.tolist())
            limit = (
                [p.numel() for p in parts]
                if unit == "sentences"
                else [p.numel() * int(lengths[p].max()) for p in parts if p.numel() > 1]
            )
            assert all(value <= micro for value in limit)


def test_micro_batch_contains_its_pairs(corpus: Path) -> None:
    """A rank's micro-batches pad exactly its pairs: `</s>` after the source, `<s>` before the target."""
    job = gnmt_job(corpus, [2], **{"task_options.global_batch_size": 8, "task_options.micro_batch_size": 3})
    GNMTTask.prepare_data(job)
    task = GNMTTask(job, WorkerContext(2, 1, 1, torch.device("cpu"), seed=0))
    batch = task._batches(1)[0]
    share = rank_share(batch, 2, 1).tolist()
    micro_batches = task.rank_micro_batches(batch)
    assert [m.sentences for m in micro_batches] == [3, 1]
    rows = [(m, row) for m in micro_batches for row in range(m.sentences)]
    for index, (micro, row) in zip(share, rows, strict=True):
        source, target = (part.long() for part in task.train.pair(index))
        length = int(micro.source_lengths[row])
        assert length == source.numel() + 1
        assert micro.source[row, :length].tolist() == [*source.tolist(), EOS_ID]
        assert micro.target_input[row, : target.numel() + 1].tolist() == [BOS_ID, *target.tolist()]
        assert micro.target_output[row, : target.numel() + 1].tolist() == [*target.tolist(), EOS_ID]
    global_tokens = int((task.train_target_lengths[batch] + 1).sum())
    assert micro_batches[0].weight == pytest.approx(2 / global_tokens)


def _epoch_weights(
    rank: int, world_size: int, root: str, task_name: str, scheme: str, overrides: dict[str, Any]
) -> list[torch.Tensor]:
    """Train one epoch (the last global batch partial) and return the weights."""
    job_of = gnmt_job if task_name == "gnmt" else transformer_job
    job = job_of(Path(root), [world_size], aggregation=scheme, **overrides)
    task_class = GNMTTask if task_name == "gnmt" else TransformerTask
    task = task_class(job, WorkerContext(world_size, rank, rank, torch.device("cpu"), seed=5))
    # Plain SGD: Adam would turn gradients that are zero up to rounding (the attention's key biases)
    # into full-size steps of either sign, which no summation order reproduces.
    task.optimizer = torch.optim.SGD(task.model.parameters(), lr=0.5)
    task.peak_lr = 0.5
    aggregator = make_aggregator(scheme, task.model, None)
    steps = 0
    for step, batch in enumerate(task.train_batches(epoch=1)):
        task.before_step(step)
        task.optimizer.zero_grad(set_to_none=True)
        for index, micro in enumerate(batch):
            context = aggregator.no_sync() if index < len(batch) - 1 else _null()
            with context:
                task.training_loss(aggregator.train_model, micro).backward()
        aggregator.reduce_gradients()
        task.before_optimizer_step()
        task.optimizer.step()
        steps += 1
    assert steps == task.epoch_steps(1)
    return [p.detach().clone() for p in task.model.parameters()]


def _null() -> Any:
    from contextlib import nullcontext

    return nullcontext()


def test_accumulation_same_on_1_and_3_ranks(corpus: Path) -> None:
    """An epoch whose last global batch has one pair: the same weights on 1 process and 3 ranks.

    97 pairs and 32 sentences per step make 4 steps, the last with 1 pair: two of three ranks then
    take part with a zero-weighted pair, and the step must still be applied.
    """
    # No warmup: full-size updates, so a wrong accumulation would show.
    settings = {
        "task_options.global_batch_size": 32,
        "task_options.micro_batch_size": 6,
        "task_options.warmup_steps": 0,
    }
    job = gnmt_job(corpus, [1], **settings)
    GNMTTask.prepare_data(job)
    task = GNMTTask(job, WorkerContext(1, 0, 0, torch.device("cpu"), seed=5))
    assert [len(b) for b in task._batches(1)] == [32, 32, 32, 1]
    one = _epoch_weights(0, 1, str(corpus), "gnmt", "allreduce", settings)
    three = run_ranks(_epoch_weights, 3, str(corpus), "gnmt", "allreduce", settings)
    for rank_weights in three:
        for expected, actual in zip(one, rank_weights, strict=True):
            torch.testing.assert_close(actual, expected, rtol=1e-3, atol=1e-5)

    # Without the last, one-pair step the weights differ: that step was applied.
    before_last = _epoch_weights(
        0, 1, str(corpus), "gnmt", "allreduce", {**settings, "max_steps_per_epoch": 3}
    )
    assert any(not torch.equal(a, b) for a, b in zip(one, before_last, strict=True))


def test_token_batches_same_under_ddp(corpus: Path) -> None:
    """The Transformer's token-sized global batches: 1 rank and 2 DDP ranks end an epoch alike."""
    settings = {
        "task_options.global_batch_tokens": 160,
        "task_options.micro_batch_tokens": 48,
        "task_options.warmup_steps": 0,
    }
    TransformerTask.prepare_data(transformer_job(corpus, [1], **settings))
    one = _epoch_weights(0, 1, str(corpus), "transformer", "ddp", settings)
    two = run_ranks(_epoch_weights, 2, str(corpus), "transformer", "ddp", settings)
    for rank_weights in two:
        for expected, actual in zip(one, rank_weights, strict=True):
            torch.testing.assert_close(actual, expected, rtol=1e-3, atol=1e-5)


def test_evaluation_points_fall_every_30_percent(corpus: Path) -> None:
    job = gnmt_job(corpus, [1], **{"task_options.global_batch_size": 8})
    GNMTTask.prepare_data(job)
    task = GNMTTask(job, WorkerContext(1, 0, 0, torch.device("cpu"), seed=0))
    assert task.epoch_steps(1) == 13
    assert task.evaluation_points(1) == [4, 8, 12]


# ---------------------------------------------------------------------------------------------------
# Data


def test_wrong_test_set_line_count_is_rejected(tmp_path: Path) -> None:
    """The default expects the full newstest2014; a 2,737-line file is named as the filtered set."""
    folder = write_parallel(tmp_path, "wmt16", train_lines=20, test_lines=12)
    job = load_job(REPO / "jobs" / "wmt16-gnmt-allreduce.yaml", {"data.root": str(tmp_path)})
    with pytest.raises(DataError) as error:
        GNMTTask.prepare_data(job)
    message = str(error.value)
    assert "test.en has 12 lines" in message
    assert "the full newstest2014 has 3003" in message
    assert "task_options.test_lines" in message

    for language in ("en", "de"):
        (folder / f"test.{language}").write_text("x\n" * 2737, encoding="utf-8")
    with pytest.raises(DataError, match="sacrebleu's filtered wmt14 set; use wmt14/full"):
        GNMTTask.prepare_data(job)

    job = load_job(REPO / "jobs" / "wmt16-gnmt-allreduce.yaml", {"data.root": str(tmp_path), **GNMT_SMALL})
    assert prepare_parallel_corpus(job.data, "test", None)["custom_test_set"] is True


def test_corpus_file_errors_name_the_file(tmp_path: Path) -> None:
    folder = write_parallel(tmp_path, "wmt17", train_lines=20, test_lines=5)
    job = load_job(
        REPO / "jobs" / "wmt17-transformer-allreduce.yaml", {"data.root": str(tmp_path), **TRANSFORMER_SMALL}
    )

    (folder / "train.de").write_text("eins\nzwei\n", encoding="utf-8")
    with pytest.raises(DataError, match="train.en has 20 lines but .*train.de has 2"):
        prepare_parallel_corpus(job.data, "test", None)

    (folder / "train.de").write_bytes(b"\xff\xfe bad\n" * 20)
    with pytest.raises(DataError, match="train.de is not UTF-8"):
        prepare_parallel_corpus(job.data, "test", None)

    (folder / "train.de").unlink()
    with pytest.raises(DataError, match="1 file\\(s\\) missing: .*train.de"):
        prepare_parallel_corpus(job.data, "test", None)

    missing_root = load_job(
        REPO / "jobs" / "wmt17-transformer-allreduce.yaml",
        {"data.root": str(tmp_path / "nowhere"), "data.download": False},
    )
    with pytest.raises(DataError, match="does not exist. Pass --data-root"):
        prepare_parallel_corpus(missing_root.data, "test", 3003)


def test_job_errors_name_the_key_and_the_fix() -> None:
    job_file = REPO / "jobs" / "wmt16-gnmt-allreduce.yaml"
    with pytest.raises(
        ConfigError,
        match="data.dataset: invalid value 'wikitext2': task translation_gnmt trains on wmt16 or wmt17",
    ):
        load_job(job_file, {"data.dataset": "wikitext2"})
    # The Transformer's batch key on the GNMT task.
    with pytest.raises(
        ConfigError, match="task_options.global_batch_tokens: unknown key; did you mean 'global_batch_size'"
    ):
        load_job(job_file, {"task_options.global_batch_tokens": 4096})
    with pytest.raises(ConfigError, match="goal.value: invalid value 240.0"):
        load_job(job_file, {"goal.value": 240.0})


def test_bpe_cache_key_follows_corpus_and_merges(tmp_path: Path) -> None:
    folder = write_parallel(tmp_path, "wmt16", train_lines=30, test_lines=5)
    job = load_job(REPO / "jobs" / "wmt16-gnmt-allreduce.yaml", {"data.root": str(tmp_path)})
    first = bpe_key(job.data, 100)
    assert bpe_key(job.data, 100) == first
    assert bpe_key(job.data, 200) != first
    with (folder / "train.de").open("a", encoding="utf-8") as handle:
        handle.write("neu\n")
    assert bpe_key(job.data, 100) != first


def _tarball(path: Path, members: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_training_text_is_assembled_from_archives(tmp_path: Path) -> None:
    """The downloaded archives' files are concatenated into train.en/train.de, in archive order."""
    first = TrainingArchive("https://example.invalid/a.tgz", "a.de-en.en", "a.de-en.de")
    second = TrainingArchive("https://example.invalid/b.tgz", "b.de-en.en", "b.de-en.de")
    a = _tarball(tmp_path / "a.tgz", {"x/a.de-en.en": "one\ntwo\n", "x/a.de-en.de": "eins\nzwei\n"})
    b = _tarball(tmp_path / "b.tgz", {"b.de-en.en": "three\r\n", "b.de-en.de": "drei\r\n"})
    extract_training_text([(first, a), (second, b)], tmp_path)
    assert (tmp_path / "train.en").read_text() == "one\ntwo\nthree\n"
    assert (tmp_path / "train.de").read_text() == "eins\nzwei\ndrei\n"

    broken = _tarball(tmp_path / "c.tgz", {"b.de-en.en": "x\n"})
    with pytest.raises(
        DataError, match="c.tgz \\(from https://example.invalid/b.tgz\\) has no file b.de-en.de"
    ):
        extract_training_text([(second, broken)], tmp_path)
    # The complete files of the earlier run stay; no partial file is left behind.
    assert (tmp_path / "train.en").read_text() == "one\ntwo\nthree\n"
    assert not list(tmp_path.glob("*.partial"))


def test_ding_corpus_tool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        "# comment line",
        "Leidenschaft {f} | aus reiner Leidenschaft | Er hat eine Leidenschaft für Musik. :: passion | "
        "from sheer passion | He has a passion for music.",
        "blank; pur {adj} | Das ist blanker Unsinn. :: sheer | That is sheer nonsense.",
        "zwei | drei :: only one side",
    ]
    pairs = parse_pairs(lines, min_words=3)
    assert pairs == [
        ("from sheer passion", "aus reiner Leidenschaft"),
        ("He has a passion for music.", "Er hat eine Leidenschaft für Musik."),
        ("That is sheer nonsense.", "Das ist blanker Unsinn."),
    ]
    source = tmp_path / "de-en"
    source.write_text(
        "\n".join(f"Satz Nummer {i} hier. :: Sentence number {i} here." for i in range(300)), encoding="utf-8"
    )
    assert ding_main([str(source), "--output", str(tmp_path / "out")]) == 0
    folder = tmp_path / "out" / "wmt16-en-de"
    counts = {
        split: len((folder / f"{split}.en").read_text().splitlines()) for split in ("train", "valid", "test")
    }
    assert counts == {"train": 288, "valid": 6, "test": 6}
    assert ding_main([str(source), "--output", str(tmp_path / "fixed"), "--held-out", "20"]) == 0
    fixed = tmp_path / "fixed" / "wmt16-en-de"
    assert len((fixed / "test.de").read_text().splitlines()) == 20
    assert len((fixed / "train.de").read_text().splitlines()) == 260
    assert ding_main([str(source), "--output", str(tmp_path / "o"), "--held-out", "150"]) == 2
    assert "--held-out 150 leaves no training pairs of 300" in capsys.readouterr().err
    assert ding_main([str(source), "--output", str(tmp_path / "o"), "--held-out", "0"]) == 2
    assert "--held-out 0.0 must be positive" in capsys.readouterr().err
    assert ding_main([str(tmp_path / "missing"), "--output", str(tmp_path / "o")]) == 2
    assert "install Debian's trans-de-en" in capsys.readouterr().err
    source.write_text("a :: b\n", encoding="utf-8")
    assert ding_main([str(source), "--output", str(tmp_path / "o")]) == 2
    assert "gave 0 pairs of at least 3 words" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# Decoding


class _Chain:
    """A decoder with fixed next-token probabilities, where greedy decoding misses the best sentence.

    After `<s>`: token 4 (p 0.5) or 5 (p 0.4). After 4 the model is unsure (five tokens at 0.2,
    `</s>` among them); after 5 it is sure of `</s>` (0.9). Greedy takes 4 then `</s>`: 0.5 x 0.2;
    the best sentence is 5 `</s>`: 0.4 x 0.9.
    """

    vocab = 10

    def start(self, source: torch.Tensor, source_lengths: torch.Tensor) -> dict[str, Any]:
        return {"last": torch.full((source.size(0),), 2)}

    def step(self, cache: dict[str, Any], tokens: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        probs = torch.full((tokens.numel(), self.vocab), 1e-6)
        for row, token in enumerate(tokens.tolist()):
            if token == 2:
                probs[row, 4], probs[row, 5] = 0.5, 0.4
            elif token == 4:
                probs[row, [EOS_ID, 6, 7, 8, 9]] = 0.2
            else:
                probs[row, EOS_ID] = 0.9
        return probs.log(), {"last": tokens}

    def reorder(self, cache: dict[str, Any], index: torch.Tensor) -> dict[str, Any]:
        return {"last": cache["last"].index_select(0, index)}


def test_beam_search_finds_what_greedy_misses() -> None:
    source = torch.ones(2, 3, dtype=torch.long)
    lengths = torch.tensor([3, 3])
    assert greedy_decode(_Chain(), source, lengths, [5, 5]) == [[4], [4]]
    assert beam_search(_Chain(), source, lengths, [5, 5], beam=3, alpha=0.0) == [[5], [5]]
    # A length limit of 0 ends every hypothesis at once, empty.
    assert beam_search(_Chain(), source, lengths, [0, 5], beam=2, alpha=0.0) == [[], [5]]


# ---------------------------------------------------------------------------------------------------
# Through the sweep, on a real local Ray instance


def test_sweep_learns_reversal_to_bleu_above_90(ray_session, tmp_path: Path) -> None:
    """A tiny Transformer learns to reverse word order through the sweep, on 1 and 2 workers."""
    from mlbench_ray.sweep import main

    write_parallel(tmp_path, "wmt17", train_lines=2000, test_lines=60)
    options = {
        "task_options.d_model": 64,
        "task_options.ffn_size": 128,
        "task_options.heads": 4,
        "task_options.merges": 50,
        "task_options.test_lines": "null",
        "task_options.dropout": 0.0,
        "task_options.lr": 0.003,
        "task_options.warmup_steps": 10,
        "task_options.global_batch_tokens": 640,
        "task_options.micro_batch_tokens": 320,
        "task_options.eval_batch_size": 64,
        "max_epochs": 20,
        "goal.value": 90,
    }
    args = [
        "--job", str(REPO / "jobs" / "wmt17-transformer-allreduce.yaml"),
        "--workers", "1,2",
        "--data-root", str(tmp_path),
        "--no-download",
        "--no-verify-checksums",
        "--gpus-per-worker", "0",
        "--cpus-per-worker", "1",
        "--set", "task_options.size=tiny",
        "--output-dir", str(tmp_path / "out"),
    ]  # fmt: skip
    for key, value in options.items():
        args += ["--set", f"{key}={value}"]
    assert main(args) == 0
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    trials = document["trials"]
    assert [(t["workers"], t["status"]) for t in trials] == [(1, "converged"), (2, "converged")]
    assert all(t["final_metric"] > 90 for t in trials)
    assert all(
        t["task_details"]["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a") for t in trials
    )
    assert all(t["task_details"]["global_batch_tokens"] == 640 for t in trials)
    # Evaluations within epochs: the goal may be reached before an epoch ends.
    assert any(record["epoch_progress"] % 1 for record in trials[0]["curve"])
    table = (tmp_path / "out" / "table.md").read_text()
    assert (
        "| Machine Translation | WMT17 en-de (not verified) | Transformer (tiny) | All-Reduce | "
        "BLEU (sacrebleu, tok 13a, cased) | 90 |" in table
    )
    note = "BLEU: one corpus score by sacrebleu, signature nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|"
    assert note in table
    assert note in (tmp_path / "out" / "report.md").read_text()


def test_cached_transformer_step_equals_full_decoder() -> None:
    """One incremental step with cached layer inputs gives the logits of the full decoder run."""
    from mlbench_ray.models.transformer import Transformer

    torch.manual_seed(0)
    model = Transformer(50, d_model=32, ffn_size=64, heads=4, layers=2, dropout=0.1).eval()
    source = torch.randint(4, 50, (3, 7))
    source[0, 5:] = 0  # padding
    with torch.no_grad():
        cache = model.start(source, torch.tensor([5, 7, 7]))
        memory, padding = model.encode(source)
        prefix = torch.full((3, 1), 2)
        for _ in range(6):
            logits, cache = model.step(cache, prefix[:, -1])
            full = model.decode(prefix, memory, padding)[:, -1]
            torch.testing.assert_close(logits, full, rtol=1e-5, atol=1e-5)
            prefix = torch.cat([prefix, torch.randint(4, 50, (3, 1))], dim=1)
