"""Language modelling: AWD-LSTM on WikiText-2, goal validation perplexity 70 (MLBench task 3a).

Training follows the AWD-LSTM reference code as MLBench ran it. Each rank trains on its own
contiguous part of the training stream, cut into 20 columns (`batch_size_per_worker`). Sequence
lengths are drawn per batch around 70 (95% of batches) or 35, with the learning rate scaled by
length / 70; every rank draws the same lengths, so every rank runs the same number of batches. SGD
starts at 15 x sqrt(W) with weight decay 1.2e-6; gradients are clipped to norm 0.25 after they are
averaged over ranks. When the validation loss has not improved on the best of the evaluations before
the last 5, the optimizer switches to averaged SGD, and evaluation then uses the averaged weights.

Perplexity is exp(total token negative log-likelihood / total tokens), both totals summed over ranks.
Validation cuts the stream of predictions into `eval_segments` contiguous segments (10 by default, the
reference's evaluation batch). Ranks get whole segments, so every validation token is scored exactly
once, and the perplexity does not depend on the worker count.
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
from mlbench_ray.data.sharding import eval_range
from mlbench_ray.data.text import LAYOUTS, load_token_corpus, prepare_text_corpus
from mlbench_ray.models.awd_lstm import AWDLSTM, Hidden
from mlbench_ray.tasks.base import Evaluation, TableLabels, Task, WorkerContext

if TYPE_CHECKING:
    from mlbench_ray.config import JobSpec

# Model sizes: (embedding, hidden, layers). `official` is the AWD-LSTM of MLBench (33 M parameters
# on WikiText-2); `tiny` keeps the architecture at a size a CPU trains in minutes.
SIZES = {"official": (400, 1150, 3), "tiny": (128, 256, 3)}


class LanguageModelingOptions(BaseModel):
    """`task_options` of the AWD-LSTM language-modelling task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: Literal["official", "tiny"] = Field(
        "official", description="Model preset: `official` (400/1150/3 layers) or `tiny` (128/256/3) for CPU."
    )
    embedding_size: int | None = Field(None, gt=0, description="Override of the preset's embedding size.")
    hidden_size: int | None = Field(None, gt=0, description="Override of the preset's hidden size.")
    layers: int | None = Field(None, gt=0, description="Override of the preset's number of LSTM layers.")
    dropout_output: float = Field(0.4, ge=0, lt=1, description="Dropout on the last layer's output.")
    dropout_between: float = Field(0.2, ge=0, lt=1, description="Dropout between LSTM layers.")
    dropout_input: float = Field(0.65, ge=0, lt=1, description="Dropout on the embedded input.")
    dropout_embedding: float = Field(0.1, ge=0, lt=1, description="Dropout of whole words (embedding rows).")
    weight_drop: float = Field(0.5, ge=0, lt=1, description="DropConnect on hidden-to-hidden weights.")
    batch_size_per_worker: int = Field(20, gt=0, description="Columns of each rank's training stream.")
    bptt: int = Field(70, ge=10, description="Mean sequence length of truncated backpropagation.")
    lr_per_worker: float = Field(
        15.0, gt=0, description="Learning rate of one worker; W workers use this x sqrt(W)."
    )
    weight_decay: float = Field(1.2e-6, ge=0, description="L2 weight decay.")
    clip: float | None = Field(
        0.25, gt=0, description="Clip the averaged gradient to this norm; null does not clip."
    )
    nonmono: int = Field(
        5, gt=0, description="Evaluations without improvement after which averaged SGD takes over."
    )
    ar_alpha: float = Field(2.0, ge=0, description="Activation regularization weight (AWD-LSTM's alpha).")
    tar_beta: float = Field(1.0, ge=0, description="Temporal activation regularization weight (beta).")
    eval_segments: int = Field(
        10, gt=0, description="Contiguous validation segments, evaluated as the columns of one batch."
    )


def token_nll_totals(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """Sum of token negative log-likelihoods and number of tokens, over the positions in `mask`."""
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), reduction="none")
    keep = mask.reshape(-1)
    return float(nll[keep].double().sum()), float(keep.sum())


def perplexity_from_totals(nll_sum: float, tokens: float) -> float:
    """exp(total NLL / total tokens); an overflow is infinite, not an error."""
    try:
        return math.exp(nll_sum / tokens)
    except OverflowError:
        return math.inf


def segment_ranges(
    predictions: int, segments: int, world_size: int, world_rank: int
) -> list[tuple[int, int]]:
    """Return the prediction ranges [start, stop) that this rank evaluates: its whole segments.

    The `predictions` positions are cut into `segments` contiguous segments, and the segments are
    shared out to ranks in contiguous groups, so that every position is scored once for any W.
    """
    first, last = eval_range(segments, world_size, world_rank)
    return [eval_range(predictions, segments, s) for s in range(first, last)]


class LanguageModelingTask(Task):
    """AWD-LSTM on a word-level corpus; validation perplexity."""

    name = "language_modeling"
    datasets = ("wikitext2",)
    sample_unit = "tokens"
    metric_name = "perplexity"
    higher_is_better = False
    metric_min = 1.0
    metric_max = math.inf
    options_model = LanguageModelingOptions

    def __init__(self, job: JobSpec, context: WorkerContext) -> None:
        self.options = LanguageModelingOptions.model_validate(job.task_options)
        self.context = context
        self.job = job
        device = context.device
        corpus = load_token_corpus(job.data)
        self.vocab_size = len(corpus.vocabulary)

        # This rank's contiguous part of the training stream, cut into columns: (rows, columns).
        columns = self.options.batch_size_per_worker
        part = corpus.train.numel() // context.world_size
        stream = corpus.train[context.world_rank * part : (context.world_rank + 1) * part]
        self.rows = part // columns
        self.train_data = stream[: self.rows * columns].view(columns, self.rows).t().contiguous().to(device)
        self.valid = corpus.valid.to(device)
        self.valid_columns = self._validation_columns(self.valid)

        embedding, hidden, layers = SIZES[self.options.size]
        torch.manual_seed(context.seed)
        self.model: nn.Module = AWDLSTM(
            self.vocab_size,
            embedding_size=self.options.embedding_size or embedding,
            hidden_size=self.options.hidden_size or hidden,
            layers=self.options.layers or layers,
            dropout_output=self.options.dropout_output,
            dropout_between=self.options.dropout_between,
            dropout_input=self.options.dropout_input,
            dropout_embedding=self.options.dropout_embedding,
            weight_drop=self.options.weight_drop,
        ).to(device)
        self.peak_lr = self.options.lr_per_worker * math.sqrt(context.world_size)
        self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
            self.model.parameters(), lr=self.peak_lr, weight_decay=self.options.weight_decay
        )
        self.averaging = False
        self.switched_at_epoch: int | None = None
        self._val_losses: list[float] = []
        self._epoch = 0
        self._schedules: dict[int, list[int]] = {}
        self._hidden: Hidden = []
        self.samples_per_step = self.options.bptt * columns  # nominal; batches vary in length
        # Dropout draws differ per rank, like independent workers.
        torch.manual_seed(context.seed * 1000 + context.world_rank)

    @classmethod
    def table_labels(cls, job: JobSpec) -> TableLabels:
        options = LanguageModelingOptions.model_validate(job.task_options)
        model = "AWD-LSTM" if options.size == "official" else f"AWD-LSTM ({options.size})"
        return TableLabels(
            task="Language Modelling",
            dataset=LAYOUTS[job.data.dataset].label,
            model=model,
            metric_name="Perplexity",
            metric_goal=f"{job.goal.active:g}",
        )

    @classmethod
    def prepare_data(cls, job: JobSpec) -> dict[str, Any]:
        info = prepare_text_corpus(job.data)
        options = LanguageModelingOptions.model_validate(job.task_options)
        corpus = load_token_corpus(job.data)
        largest = max(job.workers)
        rows = corpus.train.numel() // largest // options.batch_size_per_worker
        if rows <= options.bptt:
            raise DataError(
                f"{info['label']} has {corpus.train.numel()} training tokens: with {largest} workers and "
                f"{options.batch_size_per_worker} columns each, a column holds {rows} tokens, but one "
                f"sequence of bptt {options.bptt} needs more. Lower the largest worker count (--workers), "
                f"task_options.batch_size_per_worker or task_options.bptt, or use a larger corpus."
            )
        if corpus.valid.numel() < 2:
            raise DataError(
                f"{info['label']}: the validation split contains fewer than 2 tokens; add text to "
                f"wiki.valid.tokens under {job.data.root}"
            )
        return {**info, "vocabulary": len(corpus.vocabulary), "train_tokens": int(corpus.train.numel())}

    # ---------------------------------------------------------------------------------------------
    # Training

    def _schedule(self, epoch: int) -> list[int]:
        """Sequence lengths of the epoch's batches; the same on every rank (seeded by seed and epoch)."""
        if epoch not in self._schedules:
            generator = torch.Generator().manual_seed(self.context.seed * 100_003 + epoch)
            bptt = self.options.bptt
            lengths = []
            position = 0
            while position < self.rows - 2:
                base = bptt if torch.rand((), generator=generator) < 0.95 else bptt / 2
                length = max(5, int(torch.normal(float(base), 5.0, (), generator=generator)))
                length = min(length, self.rows - 1 - position)
                lengths.append(length)
                position += length
            if self.job.max_steps_per_epoch is not None:
                lengths = lengths[: self.job.max_steps_per_epoch]
            self._schedules = {epoch: lengths}
        return self._schedules[epoch]

    @property
    def steps_per_epoch(self) -> int:
        return len(self._schedule(max(self._epoch, 1)))

    def epoch_steps(self, epoch: int) -> int:
        return len(self._schedule(epoch))

    def describe(self) -> dict[str, Any]:
        return {
            "global_batch_size": self.options.batch_size_per_worker * self.context.world_size,
            "peak_lr": self.peak_lr,
            "vocabulary": self.vocab_size,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "train_tokens_per_rank": int(self.train_data.numel()),
            "valid_tokens": int(self.valid.numel()),
        }

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        self._epoch = epoch
        self._hidden = self.model.init_hidden(self.options.batch_size_per_worker)  # type: ignore[operator]
        position = 0
        for length in self._schedule(epoch):
            inputs = self.train_data[position : position + length]
            targets = self.train_data[position + 1 : position + 1 + length]
            position += length
            # The rate follows the length, so that every token has the same weight in the update.
            for group in self.optimizer.param_groups:
                group["lr"] = self.peak_lr * length / self.options.bptt
            yield inputs, targets, length

    def batch_samples(self, batch: tuple[torch.Tensor, torch.Tensor, int]) -> int:
        return int(batch[1].numel())

    def training_loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, int]) -> torch.Tensor:
        inputs, targets, _ = batch
        logits, hidden, raw_output, dropped_output = model(inputs, self._hidden)
        # Truncated backpropagation: the state carries over, its history does not.
        self._hidden = [(h.detach(), c.detach()) for h, c in hidden]
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        if self.options.ar_alpha:
            loss = loss + self.options.ar_alpha * dropped_output.pow(2).mean()
        if self.options.tar_beta:
            loss = loss + self.options.tar_beta * (raw_output[1:] - raw_output[:-1]).pow(2).mean()
        return loss

    def before_optimizer_step(self) -> None:
        if self.options.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.options.clip)

    def current_lr(self) -> float:
        return self.peak_lr

    def epoch_details(self) -> dict[str, Any]:
        return {"averaged_sgd": self.averaging}

    # ---------------------------------------------------------------------------------------------
    # Evaluation

    def _swap_in_averages(self) -> list[torch.Tensor] | None:
        """After the switch to averaged SGD, load the averaged weights; return the current ones."""
        if not self.averaging:
            return None
        current = [p.detach().clone() for p in self.model.parameters()]
        with torch.no_grad():
            for param in self.model.parameters():
                average = self.optimizer.state.get(param, {}).get("ax")
                if average is not None:
                    param.copy_(average)
        return current

    def _validation_columns(
        self, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Build this rank's validation segments as columns (inputs, targets, mask), once.

        Columns are padded to the longest segment, and the mask leaves the padding out of the totals.
        """
        ranges = segment_ranges(
            valid.numel() - 1, self.options.eval_segments, self.context.world_size, self.context.world_rank
        )
        if not ranges:
            return None
        longest = max(stop - start for start, stop in ranges)
        inputs = torch.zeros(longest, len(ranges), dtype=torch.long, device=valid.device)
        targets = torch.zeros_like(inputs)
        mask = torch.zeros_like(inputs, dtype=torch.bool)
        for column, (start, stop) in enumerate(ranges):
            inputs[: stop - start, column] = valid[start:stop]
            targets[: stop - start, column] = valid[start + 1 : stop + 1]
            mask[: stop - start, column] = True
        return inputs, targets, mask

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        saved = self._swap_in_averages()
        model.eval()
        nll_sum, tokens = 0.0, 0.0
        if self.valid_columns is not None:
            inputs, targets, mask = self.valid_columns
            hidden = self.model.init_hidden(inputs.size(1))  # type: ignore[operator]
            for position in range(0, inputs.size(0), self.options.bptt):
                chunk = slice(position, position + self.options.bptt)
                logits, hidden, _, _ = model(inputs[chunk], hidden)
                chunk_nll, chunk_tokens = token_nll_totals(logits, targets[chunk], mask[chunk])
                nll_sum += chunk_nll
                tokens += chunk_tokens
        model.train()
        if saved is not None:
            with torch.no_grad():
                for param, value in zip(self.model.parameters(), saved, strict=True):
                    param.copy_(value)
        return {"nll_sum": nll_sum, "tokens": tokens}

    def metric_from_totals(self, totals: dict[str, float]) -> Evaluation:
        tokens = totals["tokens"]
        return Evaluation(
            metric=perplexity_from_totals(totals["nll_sum"], tokens),
            loss=totals["nll_sum"] / tokens,
            samples=int(tokens),
        )

    def _switch_to_averaging(self) -> None:
        self.optimizer = torch.optim.ASGD(
            self.model.parameters(), lr=self.peak_lr, t0=0, lambd=0.0, weight_decay=self.options.weight_decay
        )
        self.averaging = True

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "averaging": self.averaging,
            "switched_at_epoch": self.switched_at_epoch,
            "val_losses": list(self._val_losses),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The optimizer's state belongs to ASGD once averaging has started.
        if state["averaging"]:
            self._switch_to_averaging()
        super().load_state_dict(state)
        self.switched_at_epoch = state["switched_at_epoch"]
        self._val_losses = list(state["val_losses"])

    def after_evaluation(self, evaluation: Evaluation) -> None:
        # The reference's rule: switch when this loss is worse than the best before the last `nonmono`.
        history = self._val_losses
        nonmono = self.options.nonmono
        if not self.averaging and len(history) > nonmono and evaluation.loss > min(history[:-nonmono]):
            self._switch_to_averaging()
            self.switched_at_epoch = self._epoch
        history.append(evaluation.loss)
