"""Gradient aggregation schemes.

`allreduce` copies every gradient into one flat buffer, all-reduces it with a sum through
torch.distributed and divides by the world size. `ddp` is PyTorch DistributedDataParallel, which
all-reduces bucketed gradients while the backward pass runs. Both average gradients, and both
broadcast rank 0's buffers (batch-norm running statistics) before each training forward, so that from
the same data they produce the same update.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def _distributed_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class Aggregator(Protocol):
    """How a training step turns per-rank gradients into the averaged gradient."""

    name: str
    train_model: nn.Module
    eval_model: nn.Module
    # False where communication overlaps the backward pass and cannot be timed apart from it.
    communication_timed: bool

    def before_forward(self) -> None: ...

    def reduce_gradients(self) -> None: ...


class FlatAllReduce:
    """Explicit all-reduce of one flat gradient buffer, averaged over workers."""

    name = "allreduce"
    communication_timed = True

    def __init__(self, model: nn.Module) -> None:
        self.train_model = model
        self.eval_model = model
        self.world_size = _distributed_world_size()
        self._params = [p for p in model.parameters() if p.requires_grad]
        self._buffers = [b for b in model.buffers() if b.is_floating_point() or b.dtype == torch.long]
        total = sum(p.numel() for p in self._params)
        first = self._params[0]
        self._flat = torch.zeros(total, dtype=first.dtype, device=first.device)
        if self.world_size > 1:
            # Start from rank 0's weights, as DDP does, whatever each rank initialised.
            for tensor in [*self._params, *self._buffers]:
                dist.broadcast(tensor.data, src=0)

    def before_forward(self) -> None:
        if self.world_size > 1 and self._buffers:
            for buffer in self._buffers:
                dist.broadcast(buffer, src=0)

    def reduce_gradients(self) -> None:
        if self.world_size == 1:
            return
        offset = 0
        for param in self._params:
            count = param.numel()
            chunk = self._flat[offset : offset + count]
            if param.grad is None:
                # Every rank must contribute the same layout; an unused parameter adds zeros.
                chunk.zero_()
            else:
                chunk.copy_(param.grad.reshape(-1))
            offset += count

        dist.all_reduce(self._flat, op=dist.ReduceOp.SUM)
        self._flat.div_(self.world_size)

        offset = 0
        for param in self._params:
            count = param.numel()
            averaged = self._flat[offset : offset + count].view_as(param)
            if param.grad is None:
                param.grad = averaged.clone()
            else:
                param.grad.copy_(averaged)
            offset += count


class DDPAggregation:
    """PyTorch DistributedDataParallel; communication overlaps the backward pass."""

    name = "ddp"
    communication_timed = False

    def __init__(self, model: nn.Module) -> None:
        self.eval_model = model
        if _distributed_world_size() > 1:
            device_ids = [model_device(model).index] if model_device(model).type == "cuda" else None
            self.train_model = DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=True)
        else:
            self.train_model = model

    def before_forward(self) -> None:
        # DDP broadcasts buffers itself at the start of each training forward.
        pass

    def reduce_gradients(self) -> None:
        # DDP has already averaged the gradients during backward.
        pass


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def make_aggregator(name: str, model: nn.Module) -> Aggregator:
    """Wrap a model in the named aggregation scheme."""
    if name == "allreduce":
        return FlatAllReduce(model)
    if name == "ddp":
        return DDPAggregation(model)
    raise ValueError(f"unknown aggregation scheme {name!r}; use 'allreduce' or 'ddp'")
