"""Machine translation, English to German: GNMT on WMT16 and a Transformer on WMT17, scored by BLEU.

Both tasks share the data, the batching and the evaluation; they differ in model, optimizer and
schedule (see `GNMTOptions` and `TransformerOptions`).

Batching. The global batch is fixed (GNMT: 2,048 sentences; Transformer: 2^17 tokens), whatever the
worker count: each epoch, all ranks draw the same permutation of the training pairs (seeded by seed and
epoch) and cut it into the same global batches. A global batch is sorted by length and dealt round-robin
to the ranks. Each rank splits its share into micro-batches that fit in memory and accumulates their
gradients, so only the last backward pass communicates. The loss of a micro-batch is its summed
token loss times W over the global batch's target tokens, so that after gradient averaging the update
is that of the mean token loss over the global batch, for any W. The last, smaller global batch of an
epoch is trained like the others; a rank whose share of it is empty runs one zero-weighted micro-batch,
so that every rank takes part in the same collectives.

Evaluation. About every 30% of an epoch and at its end, every rank translates its contiguous part of
the test set (newstest2014) with beam search; the detokenized hypotheses are gathered in the original
order and rank 0 computes one corpus BLEU with sacrebleu, whose signature the results record.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mlbench_ray.data.errors import DataError
from mlbench_ray.data.sharding import eval_range
from mlbench_ray.data.translation import (
    BOS_ID,
    EOS_ID,
    LAYOUTS,
    NEWSTEST2014_LINES,
    PAD_ID,
    EncodedPairs,
    bpe_merges,
    bpe_tokenizer,
    encode_split,
    prepare_parallel_corpus,
    read_lines,
    split_files,
    vocabulary_digest,
)
from mlbench_ray.distributed.metrics import check_same_on_all_ranks
from mlbench_ray.models.decoding import decode
from mlbench_ray.models.gnmt import GNMT
from mlbench_ray.models.transformer import Transformer
from mlbench_ray.tasks.base import Evaluation, TableLabels, Task, WorkerContext

if TYPE_CHECKING:
    from mlbench_ray.config import JobSpec


class _TranslationOptions(BaseModel):
    """Options both translation tasks share."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: Literal["official", "tiny"] = Field(
        "official", description="Model preset: `official` (the benchmark's size) or `tiny` for CPU runs."
    )
    layers: int | None = Field(None, ge=2, description="Override of the preset's encoder and decoder layers.")
    dropout: float | None = Field(None, ge=0, lt=1, description="Override of the preset's dropout.")
    merges: int = Field(
        32000, gt=0, description="BPE merges of the shared English-German subword vocabulary."
    )
    lr: float | None = Field(None, gt=0, description="Override of the peak learning rate.")
    warmup_steps: int | None = Field(None, ge=0, description="Override of the warmup steps.")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="Label smoothing of the training loss.")
    beam_size: int | None = Field(None, ge=1, description="Override of the beam width; 1 decodes greedily.")
    length_penalty: float = Field(
        0.6, ge=0, description="Alpha of GNMT's length penalty ((5 + length) / 6) ** alpha in beam search."
    )
    max_decode_length: int = Field(
        150, gt=0, description="Most subwords of a translation (also at most 2 x source length + 10)."
    )
    eval_batch_size: int = Field(128, gt=0, description="Test sentences decoded at once per worker.")
    eval_interval: float | None = Field(
        0.3,
        gt=0,
        le=1,
        description="Evaluate after every this fraction of an epoch, and at each epoch's end; null: only at "
        "epoch ends.",
    )
    eval_split: Literal["test", "valid"] = Field(
        "test", description="Split scored for the goal: `test` (newstest2014) or `valid` (newstest2013)."
    )
    test_lines: int | None = Field(
        NEWSTEST2014_LINES,
        gt=0,
        description="Line count the test split must have (the full newstest2014: 3,003); null accepts any "
        "count and the table labels the test set as custom.",
    )
    bleu_tokenize: Literal["13a", "intl", "none", "zh", "char"] | None = Field(
        None, description="sacrebleu tokenizer of the BLEU score; default `intl` for GNMT, `13a` otherwise."
    )
    bleu_lowercase: bool | None = Field(
        None, description="Lowercase before scoring BLEU; default true for GNMT (as MLPerf), false otherwise."
    )
    autocast: Literal["auto", "off", "bf16"] = Field(
        "auto", description="bf16 autocast of forward passes; `auto`: bf16 on GPU, off on CPU."
    )


class GNMTOptions(_TranslationOptions):
    """`task_options` of `translation_gnmt`."""

    hidden_size: int | None = Field(None, gt=0, description="Override of the preset's LSTM width (1024).")
    max_train_length: int = Field(75, gt=0, description="Drop training pairs with more subwords on a side.")
    global_batch_size: int = Field(
        2048, gt=0, description="Sentences per optimizer step over all workers, fixed for every W."
    )
    micro_batch_size: int = Field(
        128, gt=0, description="Maximum sentences per forward-backward pass per worker."
    )
    clip: float | None = Field(5.0, gt=0, description="Clip the averaged gradient to this norm; null: no.")
    decay_start: float = Field(
        0.4, ge=0, le=1, description="Share of training after which the rate starts halving."
    )
    decay_steps: int = Field(
        4, ge=0, description="Times the rate is halved, evenly over the rest of training."
    )


class TransformerOptions(_TranslationOptions):
    """`task_options` of `translation_transformer`."""

    d_model: int | None = Field(None, gt=0, description="Override of the preset's model width (1024).")
    ffn_size: int | None = Field(None, gt=0, description="Override of the preset's feed-forward size (4096).")
    heads: int | None = Field(None, gt=0, description="Override of the preset's attention heads (16).")
    max_train_length: int = Field(80, gt=0, description="Drop training pairs with more subwords on a side.")
    global_batch_tokens: int = Field(
        2**17,
        gt=0,
        description="Tokens (the longer side of each pair, with `</s>`) per optimizer step over all "
        "workers, fixed for every W.",
    )
    micro_batch_tokens: int = Field(
        8192, gt=0, description="Most padded tokens per forward-backward pass per worker."
    )
    clip: float | None = Field(None, gt=0, description="Clip the averaged gradient to this norm; null: no.")


@dataclass
class MicroBatch:
    """Padded tensors of one micro-batch and the weight of its summed token loss."""

    source: torch.Tensor
    source_lengths: torch.Tensor
    target_input: torch.Tensor
    target_output: torch.Tensor
    weight: float
    sentences: int
    tokens: int


def global_batches(lengths: torch.Tensor, unit: str, size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """Cut one epoch's permutation of the pairs into global batches, each sorted by length.

    `unit` "sentences": `size` pairs per batch; "tokens": as many pairs as fit in `size` tokens (at
    least one). The result depends on the seed and the epoch, never on the worker count; the last batch
    contains the rest of the epoch.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(lengths.numel(), generator=generator)
    if unit == "sentences":
        chunks = list(order.split(size))
    else:
        cumulative = lengths[order].cumsum(0)
        chunks = []
        start = 0
        while start < order.numel():
            before = int(cumulative[start - 1]) if start else 0
            stop = int(torch.searchsorted(cumulative, before + size, right=True))
            stop = max(stop, start + 1)
            chunks.append(order[start:stop])
            start = stop
    # Sorted by length (stable, so ties keep the permutation's order): shares and micro-batches then
    # hold sentences of similar length and little padding.
    return [chunk[torch.sort(lengths[chunk], stable=True, descending=True).indices] for chunk in chunks]


def rank_share(batch: torch.Tensor, world_size: int, world_rank: int) -> torch.Tensor:
    """This rank's part of a length-sorted global batch: every W-th pair, so shares are alike."""
    return batch[world_rank::world_size]


def split_micro(share: torch.Tensor, lengths: torch.Tensor, unit: str, size: int) -> list[torch.Tensor]:
    """Cut a share into micro-batches of at most `size` sentences, or `size` padded tokens."""
    if unit == "sentences":
        return list(share.split(size))
    parts: list[torch.Tensor] = []
    start = 0
    while start < share.numel():
        stop = start + 1
        longest = int(lengths[share[start]])
        while stop < share.numel() and max(longest, int(lengths[share[stop]])) * (stop - start + 1) <= size:
            longest = max(longest, int(lengths[share[stop]]))
            stop += 1
        parts.append(share[start:stop])
        start = stop
    return parts


def pad(sequences: list[torch.Tensor]) -> torch.Tensor:
    return nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=PAD_ID).long()


class TranslationTask(Task):
    """English-to-German translation; BLEU on the test set. Subclasses set the model and optimizer."""

    datasets: ClassVar[tuple[str, ...]]
    metric_name = "bleu"
    higher_is_better = True
    metric_min = 0.0
    metric_max = 100.0
    options_model: ClassVar[type[_TranslationOptions]]
    model_label: ClassVar[str]
    batch_unit: ClassVar[str]  # "sentences" or "tokens"
    default_beam: ClassVar[int]
    default_bleu_tokenize: ClassVar[str]
    default_bleu_lowercase: ClassVar[bool]

    def __init__(self, job: JobSpec, context: WorkerContext) -> None:
        self.options = options = self.options_model.model_validate(job.task_options)
        self.context = context
        self.job = job
        device = context.device
        self.tokenizer = bpe_tokenizer(job.data, options.merges)
        self._check_same_vocabulary()
        self.vocab_size = self.tokenizer.get_vocab_size()
        self.train = encode_split(job.data, self.tokenizer, "train", options.max_train_length)
        if len(self.train) == 0:
            raise DataError(f"no training pair has at most {options.max_train_length} subwords on each side")
        # Batch budget per pair: the longer side with its end symbol.
        self.train_target_lengths = self.train.target_lengths()
        self.train_lengths = torch.maximum(self.train.source_lengths(), self.train_target_lengths) + 1

        evaluation = encode_split(job.data, self.tokenizer, options.eval_split, None)
        references = read_lines(split_files(job.data)[options.eval_split]["de"])
        start, stop = eval_range(len(evaluation), context.world_size, context.world_rank)
        self.eval_references = references  # every rank keeps them, and rank 0 scores
        self.eval_pairs = evaluation.select(list(range(start, stop)))
        self.bleu = self._bleu_metric()

        torch.manual_seed(context.seed)
        self.model: nn.Module = self.build_model().to(device)
        self.optimizer = self.build_optimizer()
        self.peak_lr = float(self.optimizer.param_groups[0]["lr"])
        self.beam = options.beam_size or self.default_beam
        self._epoch_batches: tuple[int, list[torch.Tensor]] | None = None
        self._steps = self.epoch_steps(1)
        # The schedule's length; token batching may vary the steps of later epochs by a few.
        self.total_steps = self._steps * job.max_epochs
        use_bf16 = options.autocast == "bf16" or (options.autocast == "auto" and device.type == "cuda")
        # NOTE: bf16 autocast is on by default on GPU, where these tasks have not yet run.
        self._autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

    # ---------------------------------------------------------------------------------------------
    # Per-model parts

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def build_optimizer(self) -> torch.optim.Optimizer:
        raise NotImplementedError

    def lr_factor(self, step: int) -> float:
        """Return the multiplier of the peak rate at optimizer step `step` (from 1)."""
        raise NotImplementedError

    @property
    def global_batch(self) -> int:
        raise NotImplementedError

    @property
    def micro_batch(self) -> int:
        raise NotImplementedError

    # ---------------------------------------------------------------------------------------------

    def _check_same_vocabulary(self) -> None:
        check_same_on_all_ranks(
            vocabulary_digest(self.tokenizer),
            "ranks built different BPE vocabularies from the same corpus; put the data root on "
            "storage that every node shares, so that all ranks read one cached vocabulary",
        )

    @classmethod
    def bleu_settings(cls, options: _TranslationOptions) -> tuple[str, bool]:
        """Return sacrebleu's tokenizer and lowercasing for these options."""
        tokenize = options.bleu_tokenize or cls.default_bleu_tokenize
        lowercase = cls.default_bleu_lowercase if options.bleu_lowercase is None else options.bleu_lowercase
        return tokenize, lowercase

    def _bleu_metric(self) -> Any:
        from sacrebleu.metrics import BLEU

        tokenize, lowercase = self.bleu_settings(self.options)
        return BLEU(tokenize=tokenize, lowercase=lowercase)

    @classmethod
    def signature_of(cls, options: _TranslationOptions) -> str:
        """Return sacrebleu's signature of the BLEU settings (one reference per sentence)."""
        from sacrebleu.metrics import BLEU

        tokenize, lowercase = cls.bleu_settings(options)
        probe = BLEU(tokenize=tokenize, lowercase=lowercase)
        probe.corpus_score(["a"], [["a"]])  # sacrebleu fills in the signature's reference count here
        return str(probe.get_signature())

    def bleu_signature(self) -> str:
        return self.signature_of(self.options)

    def _batches(self, epoch: int) -> list[torch.Tensor]:
        if self._epoch_batches is None or self._epoch_batches[0] != epoch:
            batches = global_batches(
                self.train_lengths, self.batch_unit, self.global_batch, self.context.seed, epoch
            )
            self._epoch_batches = (epoch, batches)
        return self._epoch_batches[1]

    def epoch_steps(self, epoch: int) -> int:
        steps = len(self._batches(epoch))
        if self.job.max_steps_per_epoch is not None:
            steps = min(steps, self.job.max_steps_per_epoch)
        return steps

    @classmethod
    def table_labels(cls, job: JobSpec) -> TableLabels:
        options = cls.options_model.model_validate(job.task_options)
        label = LAYOUTS[job.data.dataset].label
        # The table adds "(not verified)" itself when checksums are off.
        custom = options.eval_split != "test" or options.test_lines != NEWSTEST2014_LINES
        if job.data.verify_checksums and custom:
            label += " (custom test set)"
        tokenize, lowercase = cls.bleu_settings(options)
        return TableLabels(
            task="Machine Translation",
            dataset=label,
            model=cls.model_label + ("" if options.size == "official" else f" ({options.size})"),
            metric_name=f"BLEU (sacrebleu, tok {tokenize}, {'lowercased' if lowercase else 'cased'})",
            metric_goal=f"{job.goal.active:g}",
            metric_note=f"BLEU: one corpus score by sacrebleu, signature {cls.signature_of(options)}.",
        )

    @classmethod
    def prepare_data(cls, job: JobSpec) -> dict[str, Any]:
        options = cls.options_model.model_validate(job.task_options)
        info = prepare_parallel_corpus(job.data, options.eval_split, options.test_lines)
        # Learned and encoded here once, so that the workers find both in the cache.
        tokenizer = bpe_tokenizer(job.data, options.merges)
        train = encode_split(job.data, tokenizer, "train", options.max_train_length)
        if len(train) == 0:
            raise DataError(
                f"{info['label']}: no training pair has at most {options.max_train_length} subwords on each "
                f"side. Raise task_options.max_train_length or check that train.en and train.de hold text."
            )
        encode_split(job.data, tokenizer, options.eval_split, None)
        return {
            **info,
            "vocabulary": tokenizer.get_vocab_size(),
            "bpe_merges": bpe_merges(tokenizer),
            "train_pairs_kept": len(train),
        }

    @property
    def steps_per_epoch(self) -> int:
        return self._steps

    def evaluation_points(self, epoch: int) -> list[int]:
        interval = self.options.eval_interval
        if interval is None or interval >= 1:
            return []
        steps = self.epoch_steps(epoch)
        return sorted({round(k * interval * steps) for k in range(1, math.ceil(1 / interval))})

    def describe(self) -> dict[str, Any]:
        return {
            "global_batch_size"
            if self.batch_unit == "sentences"
            else "global_batch_tokens": self.global_batch,
            "micro_batch": self.micro_batch,
            "peak_lr": self.peak_lr,
            "vocabulary": self.vocab_size,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "steps_per_epoch": self._steps,
            "train_pairs": len(self.train),
            "eval_sentences_this_rank": len(self.eval_pairs),
            "beam_size": self.beam,
            "bleu_signature": self.bleu_signature(),
        }

    def before_step(self, global_step: int) -> None:
        factor = self.lr_factor(global_step + 1)
        for group in self.optimizer.param_groups:
            group["lr"] = self.peak_lr * factor

    def before_optimizer_step(self) -> None:
        clip = getattr(self.options, "clip", None)
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)

    def _micro_batch(self, pairs: EncodedPairs, indices: list[int], weight: float) -> MicroBatch:
        """Pad the pairs at `indices` into a micro-batch whose summed token loss counts `weight` times."""
        device = self.context.device
        sources, targets_in, targets_out = [], [], []
        for index in indices:
            source, target = pairs.pair(index)
            source, target = source.long(), target.long()
            sources.append(torch.cat([source, torch.tensor([EOS_ID])]))
            targets_in.append(torch.cat([torch.tensor([BOS_ID]), target]))
            targets_out.append(torch.cat([target, torch.tensor([EOS_ID])]))
        lengths = torch.tensor([s.numel() for s in sources])
        return MicroBatch(
            source=pad(sources).to(device),
            source_lengths=lengths.to(device),
            target_input=pad(targets_in).to(device),
            target_output=pad(targets_out).to(device),
            weight=weight,
            sentences=len(indices) if weight else 0,
            tokens=sum(t.numel() for t in targets_out) if weight else 0,
        )

    def rank_micro_batches(self, batch: torch.Tensor) -> list[MicroBatch]:
        """This rank's micro-batches of a global batch, each weighted for the global mean token loss."""
        world_size = self.context.world_size
        global_tokens = int((self.train_target_lengths[batch] + 1).sum())
        weight = world_size / global_tokens
        share = rank_share(batch, world_size, self.context.world_rank)
        if share.numel() == 0:
            # Fewer pairs than ranks in this batch: take part with a zero-weighted pair.
            return [self._micro_batch(self.train, batch[:1].tolist(), 0.0)]
        parts = split_micro(share, self.train_lengths, self.batch_unit, self.micro_batch)
        return [self._micro_batch(self.train, part.tolist(), weight) for part in parts]

    def train_batches(self, epoch: int) -> Iterator[list[MicroBatch]]:
        for batch in self._batches(epoch)[: self.epoch_steps(epoch)]:
            yield self.rank_micro_batches(batch)

    def micro_batches(self, batch: list[MicroBatch]) -> list[MicroBatch]:
        return batch

    def batch_samples(self, batch: list[MicroBatch]) -> int:
        return sum(m.sentences if self.sample_unit == "sentences" else m.tokens for m in batch)

    def training_loss(self, model: nn.Module, batch: MicroBatch) -> torch.Tensor:
        with self._autocast:
            logits = model(batch.source, batch.source_lengths, batch.target_input)
        loss = F.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)),
            batch.target_output.reshape(-1),
            ignore_index=PAD_ID,
            label_smoothing=self.options.label_smoothing,
            reduction="sum",
        )
        return loss * batch.weight

    @torch.no_grad()
    def translate(self, model: nn.Module) -> tuple[list[str], float, float]:
        """Translate this rank's test sentences in order; return them and the summed NLL and tokens."""
        pairs = self.eval_pairs
        source_lengths = pairs.source_lengths().tolist()
        order = sorted(range(len(pairs)), key=lambda i: -source_lengths[i])
        hypotheses: list[list[int]] = [[] for _ in range(len(pairs))]
        nll = tokens = 0.0
        for start in range(0, len(order), self.options.eval_batch_size):
            chunk = order[start : start + self.options.eval_batch_size]
            batch = self._micro_batch(pairs, chunk, 1.0)
            with self._autocast:
                logits = model(batch.source, batch.source_lengths, batch.target_input)
                limits = [
                    min(self.options.max_decode_length, 2 * int(length) + 10)
                    for length in batch.source_lengths.tolist()
                ]
                outputs = decode(
                    model,  # type: ignore[arg-type]
                    batch.source,
                    batch.source_lengths,
                    limits,
                    self.beam,
                    self.options.length_penalty,
                )
            nll += float(
                F.cross_entropy(
                    logits.float().reshape(-1, logits.size(-1)),
                    batch.target_output.reshape(-1),
                    ignore_index=PAD_ID,
                    reduction="sum",
                )
            )
            tokens += float(batch.target_output.ne(PAD_ID).sum())
            for index, output in zip(chunk, outputs, strict=True):
                hypotheses[index] = output
        return self.tokenizer.decode_batch(hypotheses), nll, tokens

    def corpus_bleu(self, hypotheses: list[str]) -> float:
        """Score all test hypotheses, in test-set order, as one corpus BLEU against the references."""
        return corpus_bleu(self.bleu, hypotheses, self.eval_references)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        model.eval()
        texts, nll, tokens = self.translate(model)
        model.train()
        hypotheses = gather_in_order(texts)
        bleu = self.corpus_bleu(hypotheses) if self.context.world_rank == 0 else 0.0
        # Rank 0 alone contributes the score, so the sum over ranks is that score.
        return {"bleu": bleu, "nll_sum": nll, "target_tokens": tokens, "sentences": float(len(texts))}

    def metric_from_totals(self, totals: dict[str, float]) -> Evaluation:
        return Evaluation(
            metric=totals["bleu"],
            loss=totals["nll_sum"] / max(totals["target_tokens"], 1.0),
            samples=int(totals["sentences"]),
        )


def corpus_bleu(metric: Any, hypotheses: list[str], references: list[str]) -> float:
    """Score detokenized hypotheses against one reference each, in order, with sacrebleu's corpus BLEU."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    return float(metric.corpus_score(hypotheses, [references]).score)


def gather_in_order(texts: list[str]) -> list[str]:
    """Concatenate every rank's translations in rank order (contiguous parts: the test-set order)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(texts)
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, texts)
    return [text for part in parts for text in part]


# (hidden size, layers); `tiny` for CPU runs.
GNMT_SIZES = {"official": (1024, 4), "tiny": (128, 2)}
# (d_model, feed-forward, heads, layers)
TRANSFORMER_SIZES = {"official": (1024, 4096, 16, 6), "tiny": (128, 256, 4, 2)}


class GNMTTask(TranslationTask):
    """GNMT on WMT16 en-de: Adam 2e-3, exponential warmup, four halvings, clip 5 (MLPerf's recipe)."""

    name = "translation_gnmt"
    datasets = ("wmt16", "wmt17")
    sample_unit = "sentences"
    options_model = GNMTOptions
    model_label = "GNMT"
    batch_unit = "sentences"
    default_beam = 5
    default_bleu_tokenize = "intl"
    default_bleu_lowercase = True
    options: GNMTOptions

    @property
    def global_batch(self) -> int:
        return self.options.global_batch_size

    @property
    def micro_batch(self) -> int:
        return self.options.micro_batch_size

    def build_model(self) -> nn.Module:
        hidden, layers = GNMT_SIZES[self.options.size]
        return GNMT(
            self.vocab_size,
            hidden_size=self.options.hidden_size or hidden,
            layers=self.options.layers or layers,
            dropout=0.2 if self.options.dropout is None else self.options.dropout,
        )

    def build_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self.options.lr or 2e-3, betas=(0.9, 0.999))

    def lr_factor(self, step: int) -> float:
        warmup = 200 if self.options.warmup_steps is None else self.options.warmup_steps
        if warmup and step <= warmup:
            # Exponential warmup from 1% of the peak rate.
            return 0.01 ** ((warmup - step) / warmup)
        decay_start = self.options.decay_start * self.total_steps
        if self.options.decay_steps == 0 or step < decay_start:
            return 1.0
        interval = max(1.0, (self.total_steps - decay_start) / self.options.decay_steps)
        halvings = min(self.options.decay_steps, 1 + int((step - decay_start) // interval))
        return 0.5**halvings


class TransformerTask(TranslationTask):
    """Transformer big on WMT17 en-de: Adam (0.9, 0.98), linear warmup, inverse square root decay."""

    name = "translation_transformer"
    datasets = ("wmt17", "wmt16")
    sample_unit = "tokens"
    options_model = TransformerOptions
    model_label = "Transformer"
    batch_unit = "tokens"
    default_beam = 4
    default_bleu_tokenize = "13a"
    default_bleu_lowercase = False
    options: TransformerOptions

    @property
    def global_batch(self) -> int:
        return self.options.global_batch_tokens

    @property
    def micro_batch(self) -> int:
        return self.options.micro_batch_tokens

    def build_model(self) -> nn.Module:
        d_model, ffn, heads, layers = TRANSFORMER_SIZES[self.options.size]
        return Transformer(
            self.vocab_size,
            d_model=self.options.d_model or d_model,
            ffn_size=self.options.ffn_size or ffn,
            heads=self.options.heads or heads,
            layers=self.options.layers or layers,
            dropout=0.1 if self.options.dropout is None else self.options.dropout,
            max_positions=max(self.options.max_train_length, self.options.max_decode_length) + 2,
        )

    def build_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            self.model.parameters(), lr=self.options.lr or 1.976e-3, betas=(0.9, 0.98), eps=1e-9
        )

    def lr_factor(self, step: int) -> float:
        warmup = 1000 if self.options.warmup_steps is None else self.options.warmup_steps
        if warmup and step <= warmup:
            return step / warmup
        return math.sqrt(max(warmup, 1) / step)
