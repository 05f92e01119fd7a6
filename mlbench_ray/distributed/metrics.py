"""Cross-rank reductions of evaluation totals.

Metrics are reduced as sums and only then turned into ratios: accuracy is total correct over total
samples, perplexity is exp(total NLL / total tokens). A mean of per-rank ratios is wrong whenever the
ranks hold different numbers of samples.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def all_reduce_sums(totals: dict[str, float], device: torch.device) -> dict[str, float]:
    """Sum each named total over all ranks (float64, one collective) and return the global totals."""
    keys = sorted(totals)
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return {key: float(totals[key]) for key in keys}
    tensor = torch.tensor([float(totals[key]) for key in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return dict(zip(keys, tensor.tolist(), strict=True))


def check_same_on_all_ranks(value: str, message: str) -> None:
    """Raise RuntimeError with `message` unless every rank passes the same `value`."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    values: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    if len(set(values)) != 1:
        raise RuntimeError(message)
