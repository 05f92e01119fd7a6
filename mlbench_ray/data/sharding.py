"""Per-rank sharding of training and evaluation data.

Training: every rank gets the same number of samples, and so the same number of batches, because a
rank that ran one batch more would wait forever in the next collective. Evaluation: contiguous,
disjoint ranges that cover every sample exactly once for any worker count. `DistributedSampler` is not
used for evaluation because it pads the last shard with duplicates.
"""

from __future__ import annotations

import torch


def train_shard(num_samples: int, world_size: int, world_rank: int, seed: int, epoch: int) -> torch.Tensor:
    """Return this rank's sample indices for one epoch.

    All ranks draw the same permutation (seeded by `seed` and `epoch`) and take disjoint slices of
    `num_samples // world_size` indices. The at most `world_size - 1` samples left over sit out this
    epoch only, because the next epoch draws a new permutation.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    permutation = torch.randperm(num_samples, generator=generator)
    per_rank = num_samples // world_size
    return permutation[world_rank * per_rank : (world_rank + 1) * per_rank]


def steps_per_epoch(num_samples: int, world_size: int, batch_size: int) -> int:
    """Return the number of full batches each rank runs per epoch (the partial batch is dropped)."""
    return (num_samples // world_size) // batch_size


def eval_range(num_samples: int, world_size: int, world_rank: int) -> tuple[int, int]:
    """Return the [start, stop) range of evaluation samples for this rank.

    Shards differ in size by at most one, and their union is exactly range(num_samples): with 10,000
    samples and 3 ranks, the ranks evaluate 3,334 + 3,333 + 3,333 samples.
    """
    start = num_samples * world_rank // world_size
    stop = num_samples * (world_rank + 1) // world_size
    return start, stop
