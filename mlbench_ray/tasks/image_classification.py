"""Image classification: ResNet-20 on CIFAR-10 (MLBench task 1a), or on Fashion-MNIST or synthetic data.

Training follows MLBench's reference code. The batch is 128 per worker, so the global batch grows with
the worker count. SGD uses momentum 0.9 (not Nesterov) and weight decay 1e-4. The learning rate rises
linearly from 0.02 to 0.02 x W over log2(W) epochs, then halves whenever the validation loss has not
improved by 0.01 (absolute) for more than one evaluation. Unlike MLBench, the rate has no floor of
0.02, which kept its 1-worker baseline from ever decaying.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mlbench_ray.data.errors import DataError
from mlbench_ray.data.images import (
    DATASET_LABELS,
    augment_batch,
    load_image_dataset,
    normalize,
    prepare_image_dataset,
)
from mlbench_ray.data.sharding import eval_range, steps_per_epoch, train_shard
from mlbench_ray.models.resnet import resnet20
from mlbench_ray.tasks.base import Evaluation, TableLabels, Task, WorkerContext

if TYPE_CHECKING:
    from mlbench_ray.config import JobSpec


class ImageClassificationOptions(BaseModel):
    """`task_options` of the image classification task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Literal["resnet20"] = Field("resnet20", description="Model; ResNet-20 is the MLBench model.")
    batch_size_per_worker: int = Field(128, gt=0, description="Batch per worker; global = this x W.")
    lr_per_worker: float = Field(
        0.02, gt=0, description="Learning rate of one worker; the peak rate is this x W."
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (plain, not Nesterov).")
    nesterov: bool = Field(False, description="Use Nesterov momentum (MLBench's code does not).")
    weight_decay: float = Field(1e-4, ge=0, description="L2 weight decay applied by SGD.")
    warmup: bool = Field(
        True, description="Warm the rate up linearly from lr_per_worker to its peak over log2(W) epochs."
    )
    plateau_factor: float = Field(0.5, gt=0, lt=1, description="Factor applied to the rate on a plateau.")
    plateau_patience: int = Field(
        1, ge=0, description="Evaluations without improvement tolerated before the rate drops."
    )
    plateau_threshold: float = Field(
        0.01, ge=0, description="Absolute drop in validation loss that counts as an improvement."
    )
    min_lr: float = Field(0.0, ge=0, description="Floor of the learning rate (MLBench used 0.02).")
    eval_batch_size: int = Field(1000, gt=0, description="Batch size for evaluation.")
    augment: bool = Field(True, description="Random crop (padding 4) and horizontal flip in training.")
    data_on_device: bool = Field(
        True,
        description="Keep the whole dataset in device memory and augment there; false moves each batch "
        "from host memory.",
    )
    channels_last: bool | None = Field(
        None, description="Channels-last memory format for weights and images; null: on GPU only."
    )
    autocast: Literal["auto", "off", "bf16"] = Field(
        "auto", description="bf16 autocast of forward passes; `auto`: bf16 on GPU, off on CPU."
    )


class ImageClassificationTask(Task):
    """ResNet-20 image classification, top-1 accuracy on the whole test set."""

    name = "image_classification"
    datasets = ("cifar10", "fashion_mnist", "synthetic")
    sample_unit = "images"
    metric_name = "top1_accuracy"
    higher_is_better = True
    metric_min = 0.0
    metric_max = 1.0
    options_model = ImageClassificationOptions

    def __init__(self, job: JobSpec, context: WorkerContext) -> None:
        self.options = ImageClassificationOptions.model_validate(job.task_options)
        self.context = context
        self.job = job
        device = context.device

        self.data = load_image_dataset(job.data)
        # On a GPU, the dataset in device memory means no host-to-device copy and no DataLoader per step.
        storage = device if self.options.data_on_device else torch.device("cpu")
        self.train_images = self.data.train_images.to(storage)
        self.train_labels = self.data.train_labels.to(storage)
        start, stop = eval_range(self.data.test_labels.numel(), context.world_size, context.world_rank)
        self.test_images = self.data.test_images[start:stop].to(device)
        self.test_labels = self.data.test_labels[start:stop].to(device)
        on_gpu = device.type == "cuda"
        self.channels_last = on_gpu if self.options.channels_last is None else self.options.channels_last
        use_bf16 = self.options.autocast == "bf16" or (self.options.autocast == "auto" and on_gpu)
        # NOTE: channels-last and bf16 autocast are on by default on GPU, where they have not yet run.
        # On CPU, the tests check that they compute the same function as the default path.
        self._autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

        # Same seed on every rank: identical initial weights (the aggregators also broadcast rank 0's).
        torch.manual_seed(context.seed)
        self.model: nn.Module = resnet20(
            num_classes=self.data.num_classes, in_channels=self.data.channels
        ).to(device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=self.options.lr_per_worker,
            momentum=self.options.momentum,
            nesterov=self.options.nesterov,
            weight_decay=self.options.weight_decay,
        )
        self.samples_per_step = self.options.batch_size_per_worker
        self.peak_lr = self.options.lr_per_worker * context.world_size
        self._steps = steps_per_epoch(
            self.data.train_labels.numel(), context.world_size, self.options.batch_size_per_worker
        )
        if job.max_steps_per_epoch is not None:
            self._steps = min(self._steps, job.max_steps_per_epoch)
        warmup_epochs = math.log2(context.world_size) if self.options.warmup else 0.0
        self.warmup_steps = round(warmup_epochs * self._steps)
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            mode="min",
            factor=self.options.plateau_factor,
            patience=self.options.plateau_patience,
            threshold=self.options.plateau_threshold,
            threshold_mode="abs",
            min_lr=self.options.min_lr,
        )
        self._warm = self.warmup_steps == 0
        if self._warm:
            self._set_lr(self.peak_lr)
        # Augmentation draws differ per rank, like independent DataLoader workers.
        self._augment_generator = torch.Generator().manual_seed(context.seed * 1000 + context.world_rank)
        self._loss = nn.CrossEntropyLoss()

    @classmethod
    def table_labels(cls, job: JobSpec) -> TableLabels:
        goal = job.goal.active
        return TableLabels(
            task="Image Classification",
            dataset=DATASET_LABELS[job.data.dataset],
            model="ResNet-20",
            metric_name="Top-1 Accuracy",
            metric_goal=f"{goal * 100:g}%",
        )

    @classmethod
    def prepare_data(cls, job: JobSpec) -> dict[str, Any]:
        info = prepare_image_dataset(job.data)
        options = ImageClassificationOptions.model_validate(job.task_options)
        largest = max(job.workers)
        per_rank = info.train_samples // largest
        if per_rank < options.batch_size_per_worker:
            raise DataError(
                f"{info.name} has {info.train_samples} training samples: with {largest} workers each rank "
                f"gets {per_rank}, fewer than one batch of {options.batch_size_per_worker}. Lower the "
                f"largest worker count (--workers) or task_options.batch_size_per_worker, or use more data."
            )
        return info.as_dict()

    @property
    def steps_per_epoch(self) -> int:
        return self._steps

    def describe(self) -> dict[str, Any]:
        return {
            "global_batch_size": self.options.batch_size_per_worker * self.context.world_size,
            "peak_lr": self.peak_lr,
            "warmup_steps": self.warmup_steps,
            "steps_per_epoch": self._steps,
            "train_samples": int(self.data.train_labels.numel()),
            "test_samples_this_rank": int(self.test_labels.numel()),
        }

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def before_step(self, global_step: int) -> None:
        if self._warm:
            return
        base = self.options.lr_per_worker
        fraction = min(1.0, (global_step + 1) / self.warmup_steps)
        self._set_lr(base + (self.peak_lr - base) * fraction)
        self._warm = fraction >= 1.0

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices = train_shard(
            self.train_labels.numel(),
            self.context.world_size,
            self.context.world_rank,
            self.context.seed,
            epoch,
        ).to(self.train_images.device)
        batch = self.options.batch_size_per_worker
        for step in range(self._steps):
            chosen = indices[step * batch : (step + 1) * batch]
            images = self.train_images[chosen]
            if self.options.augment:
                images = augment_batch(images, self._augment_generator)
            yield normalize(images, self.data.mean, self.data.std), self.train_labels[chosen]

    def _to_model_input(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.context.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def training_loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, labels = batch
        with self._autocast:
            logits = model(self._to_model_input(images))
        return self._loss(logits.float(), labels.to(self.context.device, non_blocking=True))

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        model.eval()
        correct = torch.zeros((), dtype=torch.float64, device=self.test_images.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.test_images.device)
        size = self.options.eval_batch_size
        for start in range(0, self.test_labels.numel(), size):
            images = normalize(self.test_images[start : start + size], self.data.mean, self.data.std)
            labels = self.test_labels[start : start + size]
            with self._autocast:
                logits = model(self._to_model_input(images)).float()
            loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").double()
            correct += (logits.argmax(dim=1) == labels).sum().double()
        model.train()
        return {
            "correct": float(correct),
            "loss_sum": float(loss_sum),
            "samples": float(self.test_labels.numel()),
        }

    def metric_from_totals(self, totals: dict[str, float]) -> Evaluation:
        samples = totals["samples"]
        return Evaluation(
            metric=totals["correct"] / samples, loss=totals["loss_sum"] / samples, samples=int(samples)
        )

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "plateau": self.plateau.state_dict(), "warm": self._warm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.plateau.load_state_dict(state["plateau"])
        self._warm = bool(state["warm"])

    def after_evaluation(self, evaluation: Evaluation) -> None:
        # The plateau schedule starts once warmup is over. Every rank gets the same global loss.
        if self._warm:
            self.plateau.step(evaluation.loss)
