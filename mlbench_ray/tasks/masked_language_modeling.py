"""Masked language modelling: a BERT-style encoder pre-trained on raw WikiText-2.

MLBench listed this row but never specified it; this project defines it as follows. Text is segmented
into WordPiece subwords by Hugging Face `tokenizers` (vocabulary trained on the training split),
concatenated, and cut into blocks of `max_length` tokens framed by [CLS] and [SEP]. Training masks
15% of the tokens afresh for every batch (80% [MASK], 10% a random token, 10% unchanged). The
learning rate of AdamW (weight decay 0.01) rises linearly, then decays linearly to zero at
`max_epochs`. Gradients are clipped to norm 1 after they are averaged over ranks.

The metric is masked-token accuracy on the validation split: correct predictions and masked tokens
are summed over ranks before dividing. The validation blocks are masked once, with a fixed seed, so
every trial and every worker count scores the same positions, each exactly once. The goal is
provisional until a GPU run calibrates it; the job file and the table say so.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mlbench_ray.data.errors import DataError
from mlbench_ray.data.sharding import eval_range, steps_per_epoch, train_shard
from mlbench_ray.data.text import (
    LAYOUTS,
    SPECIAL_TOKENS,
    corpus_files,
    encode_blocks,
    mask_tokens,
    prepare_text_corpus,
    vocabulary_digest,
    wordpiece_tokenizer,
)
from mlbench_ray.distributed.metrics import check_same_on_all_ranks
from mlbench_ray.models.bert import BertMLM, weight_decay_groups
from mlbench_ray.tasks.base import Evaluation, TableLabels, Task, WorkerContext

if TYPE_CHECKING:
    from mlbench_ray.config import JobSpec

# (vocabulary, hidden size, layers, heads, feed-forward size). `base` is BERT-base (110 M
# parameters); `tiny` is the 2-layer, 128-wide model of Turc et al. (2019) with a smaller vocabulary.
SIZES = {"base": (30522, 768, 12, 12, 3072), "tiny": (8192, 128, 2, 2, 512)}
EVAL_MASK_SEED = 20_190_524  # fixed: the same validation positions for every trial


class MaskedLanguageModelingOptions(BaseModel):
    """`task_options` of the BERT masked-language-modelling task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: Literal["base", "tiny"] = Field(
        "base", description="Model preset: `base` (BERT-base, 12 x 768) or `tiny` (2 x 128) for CPU."
    )
    vocab_size: int | None = Field(None, ge=64, description="Override of the preset's WordPiece vocabulary.")
    hidden_size: int | None = Field(None, gt=0, description="Override of the preset's hidden size.")
    layers: int | None = Field(None, gt=0, description="Override of the preset's encoder layers.")
    heads: int | None = Field(None, gt=0, description="Override of the preset's attention heads.")
    ffn_size: int | None = Field(None, gt=0, description="Override of the preset's feed-forward size.")
    lowercase: bool = Field(True, description="Lowercase text before WordPiece (as bert-base-uncased).")
    max_length: int = Field(128, ge=8, description="Tokens per block, [CLS] and [SEP] included.")
    mask_prob: float = Field(0.15, gt=0, lt=1, description="Share of tokens the model must predict.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout of embeddings, attention and layers.")
    batch_size_per_worker: int = Field(32, gt=0, description="Blocks per batch per worker.")
    lr: float = Field(1e-4, gt=0, description="Peak learning rate of one worker.")
    lr_scaling: Literal["none", "sqrt", "linear"] = Field(
        "sqrt", description="How the peak rate grows with W workers: unchanged, x sqrt(W) or x W."
    )
    warmup_steps: int = Field(1000, ge=0, description="Steps of linear warmup to the peak rate.")
    decay: Literal["linear", "none"] = Field(
        "linear", description="After warmup: decay linearly to zero at max_epochs, or hold the peak."
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not on biases and norms).")
    clip: float | None = Field(1.0, gt=0, description="Clip the averaged gradient to this norm; null: no.")
    eval_batch_size: int = Field(64, gt=0, description="Blocks per evaluation batch.")
    autocast: Literal["auto", "off", "bf16"] = Field(
        "auto", description="bf16 autocast of forward passes; `auto`: bf16 on GPU, off on CPU."
    )


def masked_totals(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, float]:
    """Correct predictions, summed NLL and count over the labels of masked positions."""
    logits = logits.float()
    correct = float((logits.argmax(dim=-1) == labels).sum())
    nll = float(F.cross_entropy(logits, labels, reduction="sum"))
    return correct, nll, float(labels.numel())


class MaskedLanguageModelingTask(Task):
    """BERT-style masked LM on raw text; masked-token accuracy."""

    name = "masked_language_modeling"
    datasets = ("wikitext2_raw",)
    sample_unit = "sequences"
    metric_name = "masked_token_accuracy"
    higher_is_better = True
    metric_min = 0.0
    metric_max = 1.0
    options_model = MaskedLanguageModelingOptions

    def __init__(self, job: JobSpec, context: WorkerContext) -> None:
        self.options = options = MaskedLanguageModelingOptions.model_validate(job.task_options)
        self.context = context
        self.job = job
        device = context.device
        vocab, hidden, layers, heads, ffn = SIZES[options.size]
        self.tokenizer = wordpiece_tokenizer(job.data, options.vocab_size or vocab, options.lowercase)
        self._check_same_vocabulary()
        self.vocab_size = self.tokenizer.get_vocab_size()
        self.mask_id = self.tokenizer.token_to_id("[MASK]")
        self.first_regular_id = len(SPECIAL_TOKENS)

        files = corpus_files(job.data)
        train_blocks = encode_blocks(self.tokenizer, files["train"], options.max_length, keep_partial=False)
        # On the host: masking draws from a CPU generator, and only the masked batch goes to the device.
        self.train_ids = torch.stack(train_blocks)
        valid_blocks = encode_blocks(self.tokenizer, files["valid"], options.max_length, keep_partial=True)
        start, stop = eval_range(len(valid_blocks), context.world_size, context.world_rank)
        self.valid_inputs, self.valid_labels = self._mask_validation(valid_blocks, start, stop)
        self.valid_batches = self._evaluation_batches()

        torch.manual_seed(context.seed)
        self.model: nn.Module = BertMLM(
            self.vocab_size,
            hidden_size=options.hidden_size or hidden,
            layers=options.layers or layers,
            heads=options.heads or heads,
            ffn_size=options.ffn_size or ffn,
            max_length=options.max_length,
            dropout=options.dropout,
        ).to(device)
        scale = {"none": 1.0, "sqrt": math.sqrt(context.world_size), "linear": float(context.world_size)}
        self.peak_lr = options.lr * scale[options.lr_scaling]
        self.optimizer = torch.optim.AdamW(
            weight_decay_groups(self.model, options.weight_decay),
            lr=self.peak_lr,
            betas=(0.9, 0.999),
            eps=1e-6,
        )
        self.samples_per_step = options.batch_size_per_worker
        self._steps = steps_per_epoch(len(train_blocks), context.world_size, options.batch_size_per_worker)
        if job.max_steps_per_epoch is not None:
            self._steps = min(self._steps, job.max_steps_per_epoch)
        self.total_steps = self._steps * job.max_epochs
        use_bf16 = options.autocast == "bf16" or (options.autocast == "auto" and device.type == "cuda")
        # NOTE: bf16 autocast is on by default on GPU, where this task has not yet run.
        self._autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)
        # Masks differ per rank and per step, like independent data-loader workers.
        self._mask_generator = torch.Generator().manual_seed(context.seed * 1000 + context.world_rank)

    def _check_same_vocabulary(self) -> None:
        check_same_on_all_ranks(
            vocabulary_digest(self.tokenizer),
            "ranks built different WordPiece vocabularies from the same corpus; put the data root on "
            "storage that every node shares, so that all ranks read one cached tokenizer",
        )

    def _evaluation_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Stack this rank's validation blocks into batches of equal-length blocks, once.

        The split's last, shorter block forms a batch of its own.
        """
        groups: list[list[int]] = []
        for index, block in enumerate(self.valid_inputs):
            last = groups[-1] if groups else []
            fits = len(last) < self.options.eval_batch_size
            if last and fits and self.valid_inputs[last[0]].numel() == block.numel():
                last.append(index)
            else:
                groups.append([index])
        batches = []
        for group in groups:
            inputs = torch.stack([self.valid_inputs[i] for i in group])
            labels = torch.stack([self.valid_labels[i] for i in group])
            batches.append((inputs, labels))
        return batches

    def _mask_validation(
        self, blocks: list[torch.Tensor], start: int, stop: int
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Mask every validation block with one fixed generator, then keep this rank's blocks."""
        generator = torch.Generator().manual_seed(EVAL_MASK_SEED)
        inputs, labels = [], []
        for index, block in enumerate(blocks):
            masked, block_labels = mask_tokens(
                block,
                generator,
                self.mask_id,
                self.first_regular_id,
                self.tokenizer.get_vocab_size(),
                self.options.mask_prob,
            )
            if start <= index < stop:
                inputs.append(masked.to(self.context.device))
                labels.append(block_labels.to(self.context.device))
        return inputs, labels

    @classmethod
    def table_labels(cls, job: JobSpec) -> TableLabels:
        options = MaskedLanguageModelingOptions.model_validate(job.task_options)
        return TableLabels(
            task="Language Modelling",
            dataset=LAYOUTS[job.data.dataset].label,
            model=f"BERT-{options.size}",
            metric_name="Masked-Token Accuracy",
            metric_goal=f"{job.goal.active * 100:g}% (provisional)",
        )

    @classmethod
    def prepare_data(cls, job: JobSpec) -> dict[str, Any]:
        info = prepare_text_corpus(job.data)
        options = MaskedLanguageModelingOptions.model_validate(job.task_options)
        vocab = options.vocab_size or SIZES[options.size][0]
        # Trained here once, so that the workers find it in the cache.
        tokenizer = wordpiece_tokenizer(job.data, vocab, options.lowercase)
        files = corpus_files(job.data)
        blocks = len(encode_blocks(tokenizer, files["train"], options.max_length, keep_partial=False))
        largest = max(job.workers)
        if blocks // largest < options.batch_size_per_worker:
            raise DataError(
                f"{info['label']} makes {blocks} training blocks of {options.max_length} tokens: with "
                f"{largest} workers each rank gets {blocks // largest}, fewer than one batch of "
                f"{options.batch_size_per_worker}. Lower the largest worker count (--workers), "
                f"task_options.batch_size_per_worker or task_options.max_length, or use more text."
            )
        valid = encode_blocks(tokenizer, files["valid"], options.max_length, keep_partial=True)
        if not valid:
            raise DataError(f"{info['label']}: the validation split has no text.")
        return {
            **info,
            "vocabulary": tokenizer.get_vocab_size(),
            "train_blocks": blocks,
            "valid_blocks": len(valid),
        }

    @property
    def steps_per_epoch(self) -> int:
        return self._steps

    def describe(self) -> dict[str, Any]:
        return {
            "global_batch_size": self.options.batch_size_per_worker * self.context.world_size,
            "peak_lr": self.peak_lr,
            "vocabulary": self.vocab_size,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "steps_per_epoch": self._steps,
            "train_blocks": int(self.train_ids.size(0)),
            "valid_blocks_this_rank": len(self.valid_inputs),
        }

    def before_step(self, global_step: int) -> None:
        step = global_step + 1
        warmup = self.options.warmup_steps
        if warmup and step <= warmup:
            factor = step / warmup
        elif self.options.decay == "linear":
            factor = max(0.0, (self.total_steps - step) / max(1, self.total_steps - warmup))
        else:
            factor = 1.0
        for group in self.optimizer.param_groups:
            group["lr"] = self.peak_lr * factor

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices = train_shard(
            self.train_ids.size(0), self.context.world_size, self.context.world_rank, self.context.seed, epoch
        )
        batch = self.options.batch_size_per_worker
        for step in range(self._steps):
            ids = self.train_ids[indices[step * batch : (step + 1) * batch]]
            inputs, labels = mask_tokens(
                ids,
                self._mask_generator,
                self.mask_id,
                self.first_regular_id,
                self.vocab_size,
                self.options.mask_prob,
            )
            yield inputs.to(self.context.device), labels.to(self.context.device)

    def training_loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, labels = batch
        predict = labels >= 0
        with self._autocast:
            logits = model(inputs, predict)
        return F.cross_entropy(logits.float(), labels[predict])

    def before_optimizer_step(self) -> None:
        if self.options.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.options.clip)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        model.eval()
        correct = nll = count = 0.0
        for inputs, labels in self.valid_batches:
            predict = labels >= 0
            with self._autocast:
                logits = model(inputs, predict)
            batch_correct, batch_nll, batch_count = masked_totals(logits, labels[predict])
            correct += batch_correct
            nll += batch_nll
            count += batch_count
        model.train()
        return {"correct": correct, "nll_sum": nll, "masked_tokens": count}

    def metric_from_totals(self, totals: dict[str, float]) -> Evaluation:
        count = max(totals["masked_tokens"], 1.0)
        return Evaluation(
            metric=totals["correct"] / count,
            loss=totals["nll_sum"] / count,
            samples=int(totals["masked_tokens"]),
        )
