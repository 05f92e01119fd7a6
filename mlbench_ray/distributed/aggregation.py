"""Gradient aggregation schemes.

`allreduce` copies gradients into flat buffers (buckets), all-reduces them with a sum through
torch.distributed and divides by the world size. With several buckets, the all-reduces run while
backward goes on. `ddp` is PyTorch DistributedDataParallel, which also all-reduces bucketed gradients
during the backward pass. Both average gradients, so that from the same data they produce the same
update. Buffers (batch-norm running statistics) do not enter the update. Each rank keeps its own while
training, and `sync_buffers` copies rank 0's to every rank before each evaluation, so that all ranks
evaluate one model. Rank 0's statistics equal those of a broadcast before every forward (DDP's
default), because that broadcast copies rank 0's values to the others and never changes rank 0's. A
training step then has one collective less to wait on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Protocol

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def _distributed_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class Aggregator(Protocol):
    """Interface of a gradient aggregation scheme: per-rank gradients in, averaged gradients out."""

    name: str
    train_model: nn.Module
    eval_model: nn.Module
    # False where communication overlaps the backward pass and cannot be timed apart from it.
    communication_timed: bool

    def sync_buffers(self) -> None:
        """Copy rank 0's buffers (batch-norm running statistics) to every rank."""
        ...

    def no_sync(self) -> AbstractContextManager[None]:
        """Within it, backward passes only accumulate gradients (all micro-batches but the last)."""
        ...

    def reduce_gradients(self) -> None: ...


class _Bucket:
    """A group of parameters whose gradients are all-reduced together in one flat buffer."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = params
        self.offsets: dict[int, int] = {}
        offset = 0
        for param in params:
            self.offsets[id(param)] = offset
            offset += param.numel()
        self.flat = torch.zeros(offset, dtype=params[0].dtype, device=params[0].device)
        self.pending = len(params)
        self.handle: dist.Work | None = None

    def copy_in(self, param: nn.Parameter) -> None:
        start = self.offsets[id(param)]
        chunk = self.flat[start : start + param.numel()]
        if param.grad is None:
            # Every rank must contribute the same layout; an unused parameter adds zeros.
            chunk.zero_()
        else:
            chunk.copy_(param.grad.reshape(-1))


class BucketedAllReduce:
    """Explicit all-reduce of gradients through torch.distributed, summed and divided by the world size.

    With `bucket_bytes` set, gradients are grouped into buckets in reverse parameter order (the order in
    which backward produces them). A hook on each parameter copies its gradient into its bucket, and a
    full bucket is all-reduced asynchronously while backward goes on. Buckets are launched strictly in
    bucket order, so every rank issues the same collectives in the same sequence. With `bucket_bytes`
    None, all gradients form one flat buffer, all-reduced after backward.
    """

    name = "allreduce"
    communication_timed = True

    def __init__(self, model: nn.Module, bucket_bytes: int | None = None) -> None:
        self.train_model = model
        self.eval_model = model
        self.world_size = _distributed_world_size()
        self._params = [p for p in model.parameters() if p.requires_grad]
        self._buckets = self._make_buckets(bucket_bytes)
        self._bucket_of = {id(p): bucket for bucket in self._buckets for p in bucket.params}
        self._next_launch = 0
        self._overlap = bucket_bytes is not None and self.world_size > 1
        self._accumulating = False
        if self.world_size > 1:
            # Start from rank 0's weights, as DDP does, whatever each rank initialised.
            for param in self._params:
                dist.broadcast(param.data, src=0)
            broadcast_buffers(model)
        if self._overlap:
            for param in self._params:
                param.register_post_accumulate_grad_hook(self._on_gradient_ready)

    def _make_buckets(self, bucket_bytes: int | None) -> list[_Bucket]:
        if bucket_bytes is None:
            return [_Bucket(self._params)]
        buckets: list[_Bucket] = []
        current: list[nn.Parameter] = []
        size = 0
        for param in reversed(self._params):
            current.append(param)
            size += param.numel() * param.element_size()
            if size >= bucket_bytes:
                buckets.append(_Bucket(current))
                current, size = [], 0
        if current:
            buckets.append(_Bucket(current))
        return buckets

    @contextmanager
    def no_sync(self) -> Iterator[None]:
        self._accumulating = True
        try:
            yield
        finally:
            self._accumulating = False

    def _on_gradient_ready(self, param: nn.Parameter) -> None:
        if self._accumulating:
            return
        bucket = self._bucket_of[id(param)]
        bucket.copy_in(param)
        bucket.pending -= 1
        self._launch_ready_buckets()

    def _launch_ready_buckets(self) -> None:
        while self._next_launch < len(self._buckets) and self._buckets[self._next_launch].pending == 0:
            bucket = self._buckets[self._next_launch]
            bucket.handle = dist.all_reduce(bucket.flat, op=dist.ReduceOp.SUM, async_op=True)
            self._next_launch += 1

    def sync_buffers(self) -> None:
        broadcast_buffers(self.eval_model)

    def reduce_gradients(self) -> None:
        if self.world_size == 1:
            return

        # Buckets not launched during backward (all of them without overlap, or those holding a
        # parameter that this step did not use) are filled and launched now, still in bucket order.
        for bucket in self._buckets[self._next_launch :]:
            if bucket.pending:
                for param in bucket.params:
                    bucket.copy_in(param)
                bucket.pending = 0
        self._launch_ready_buckets()

        for bucket in self._buckets:
            if bucket.handle is None:
                raise RuntimeError("an all-reduce bucket was never launched; buckets must launch in order")
            bucket.handle.wait()
            bucket.flat.div_(self.world_size)
            for param in bucket.params:
                start = bucket.offsets[id(param)]
                averaged = bucket.flat[start : start + param.numel()].view_as(param)
                if param.grad is None:
                    param.grad = averaged.clone()
                else:
                    param.grad.copy_(averaged)
            bucket.handle = None
            bucket.pending = len(bucket.params)
        self._next_launch = 0


class DDPAggregation:
    """PyTorch DistributedDataParallel; communication overlaps the backward pass."""

    name = "ddp"
    communication_timed = False

    def __init__(self, model: nn.Module) -> None:
        self.eval_model = model
        if _distributed_world_size() > 1:
            device_ids = [model_device(model).index] if model_device(model).type == "cuda" else None
            self.train_model = DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)
        else:
            self.train_model = model

    def no_sync(self) -> AbstractContextManager[None]:
        if isinstance(self.train_model, DistributedDataParallel):
            return self.train_model.no_sync()
        return nullcontext()

    def sync_buffers(self) -> None:
        broadcast_buffers(self.eval_model)

    def reduce_gradients(self) -> None:
        # DDP has already averaged the gradients during backward.
        pass


def broadcast_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers to every rank: one broadcast for floating-point buffers, one for the rest."""
    if _distributed_world_size() == 1:
        return
    buffers = list(model.buffers())
    for group in (
        [b for b in buffers if b.is_floating_point()],
        [b for b in buffers if not b.is_floating_point()],
    ):
        if not group:
            continue
        flat = torch.cat([b.reshape(-1) for b in group])
        dist.broadcast(flat, src=0)
        offset = 0
        for buffer in group:
            buffer.copy_(flat[offset : offset + buffer.numel()].view_as(buffer))
            offset += buffer.numel()


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def make_aggregator(name: str, model: nn.Module, bucket_mb: float | None = None) -> Aggregator:
    """Wrap a model in the named aggregation scheme; `bucket_mb` sets the all-reduce bucket size."""
    if name == "allreduce":
        bucket_bytes = None if bucket_mb is None else int(bucket_mb * 1024 * 1024)
        return BucketedAllReduce(model, bucket_bytes)
    if name == "ddp":
        return DDPAggregation(model)
    raise ValueError(f"unknown aggregation scheme {name!r}; use 'allreduce' or 'ddp'")
