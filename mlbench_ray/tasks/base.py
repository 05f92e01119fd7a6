"""The interface between a task and the shared training loop, sweep and summarizer.

A task is the only place that defines its model, data, optimizer, schedule and metric. The loop calls
it in this order on every rank: `train_batches` for one epoch, drawing `epoch_steps(epoch)` batches
(per batch: `before_step`, then `training_loss` and backward for each of its `micro_batches`, gradient
averaging, `before_optimizer_step`, `optimizer.step()`), then `evaluate` for the local totals, which
the loop sums over ranks and hands to `metric_from_totals` and `after_evaluation`. Evaluation runs at
the end of every epoch and after the steps that `evaluation_points` names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

if TYPE_CHECKING:
    from mlbench_ray.config import JobSpec


@dataclass(frozen=True)
class WorkerContext:
    """Rank, world size, device and seed of a task instance."""

    world_size: int
    world_rank: int
    local_rank: int
    device: torch.device
    seed: int


@dataclass(frozen=True)
class Evaluation:
    """An evaluation result, computed from totals summed over all ranks."""

    metric: float
    loss: float
    samples: int


@dataclass(frozen=True)
class TableLabels:
    """Labels of a task's row in the comparison table."""

    task: str
    dataset: str
    model: str
    metric_name: str
    metric_goal: str
    # A line under the table about how the metric is computed, such as sacrebleu's signature.
    metric_note: str = ""


class Task(ABC):
    """One benchmark task on one worker."""

    name: ClassVar[str]
    # Values of `data.dataset` this task trains on.
    datasets: ClassVar[tuple[str, ...]]
    metric_name: ClassVar[str]
    higher_is_better: ClassVar[bool]
    metric_min: ClassVar[float]
    metric_max: ClassVar[float]
    options_model: ClassVar[type[BaseModel]]

    # What a training sample is, for throughput figures: images, tokens or sequences.
    sample_unit: ClassVar[str] = "samples"

    model: nn.Module
    optimizer: torch.optim.Optimizer
    samples_per_step: int  # per rank, for tasks whose batches all have the same size

    @classmethod
    def parse_options(cls, options: dict[str, Any]) -> BaseModel:
        """Validate `task_options`; raise pydantic's ValidationError on bad values."""
        return cls.options_model.model_validate(options)

    @classmethod
    def validate_job(cls, job: JobSpec) -> list[str]:
        """Return problems with the job for this task, each naming the dotted key, value and fix."""
        problems = []
        if job.data.dataset not in cls.datasets:
            problems.append(
                f"data.dataset: invalid value {job.data.dataset!r}: task {cls.name} trains on "
                f"{' or '.join(cls.datasets)}; set data.dataset (--dataset) to one of them"
            )
        for key, value in (("goal.value", job.goal.value), ("goal.light_value", job.goal.light_value)):
            if value is None:
                continue
            if not cls.metric_min < value <= cls.metric_max:
                problems.append(
                    f"{key}: invalid value {value!r}: {cls.metric_name} goals lie in "
                    f"({cls.metric_min}, {cls.metric_max}]"
                    + ("; write 80% as 0.80" if cls.metric_max == 1.0 and value > 1 else "")
                )
        return problems

    @classmethod
    @abstractmethod
    def prepare_data(cls, job: JobSpec) -> dict[str, Any]:
        """Download (when allowed), verify and check the dataset once, on the driver, before Ray work.

        Returns what the results record about the dataset (name, label, root, verification); raises
        DataError with the file or the numbers and the fix.
        """

    @classmethod
    @abstractmethod
    def table_labels(cls, job: JobSpec) -> TableLabels:
        """Return the labels of this job's row in the comparison table."""

    def goal_reached(self, metric: float, goal: float) -> bool:
        return metric >= goal if self.higher_is_better else metric <= goal

    @property
    @abstractmethod
    def steps_per_epoch(self) -> int:
        """Training steps per epoch, the same on every rank."""

    def epoch_steps(self, epoch: int) -> int:
        """Training steps in `epoch`, the same on every rank; the loop draws this many batches."""
        return self.steps_per_epoch

    def batch_samples(self, batch: Any) -> int:
        """Training samples in one of this rank's batches, for throughput figures."""
        return self.samples_per_step

    def evaluation_points(self, epoch: int) -> list[int]:
        """Steps of `epoch` after which to evaluate as well as at its end; none by default."""
        return []

    def micro_batches(self, batch: Any) -> list[Any]:
        """Split a training batch into micro-batches whose gradients accumulate into one step.

        `training_loss` of each micro-batch must be weighted so that their sum is the step's loss.
        """
        return [batch]

    @abstractmethod
    def train_batches(self, epoch: int) -> Iterator[Any]:
        """Yield this rank's training batches for one epoch, already on the device."""

    @abstractmethod
    def training_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Run the forward pass and return the mean loss of the batch."""

    def before_step(self, global_step: int) -> None:  # noqa: B027 (optional hook)
        """Set per-step state such as a warmup learning rate."""

    def before_optimizer_step(self) -> None:  # noqa: B027 (optional hook)
        """Act on the averaged gradients before the update, for example clip them."""

    @abstractmethod
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Return this rank's evaluation totals (sums), to be summed over ranks."""

    @abstractmethod
    def metric_from_totals(self, totals: dict[str, float]) -> Evaluation:
        """Turn global totals into the metric."""

    def after_evaluation(self, evaluation: Evaluation) -> None:  # noqa: B027 (optional hook)
        """Update state that depends on the evaluation, such as a plateau schedule."""

    def state_dict(self) -> dict[str, Any]:
        """Return what a checkpoint must hold to continue training: weights, optimizer, schedule."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state that `state_dict` returned."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def epoch_details(self) -> dict[str, Any]:
        """Task state to add to each epoch's record, such as a switch of optimizer."""
        return {}

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def describe(self) -> dict[str, Any]:
        """Return derived quantities for the startup line and the results."""
        return {}
