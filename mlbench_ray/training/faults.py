"""Fault injection, for testing how a sweep handles failing, hanging, diverging and dying workers.

A job's `faults` list names what to break, in which trial, on which rank and at which epoch. The loop
calls `inject_faults` at the start of every epoch; with an empty list it does nothing.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from mlbench_ray.config import FaultSpec

logger = logging.getLogger(__name__)


class InjectedFault(RuntimeError):
    """The error raised by a `raise` fault."""


def inject_faults(
    faults: list[FaultSpec],
    world_size: int,
    world_rank: int,
    epoch: int,
    model: torch.nn.Module,
    restarts: int = 0,
) -> None:
    """Trigger the faults that match this trial (worker count), rank, epoch and restart count."""
    for fault in faults:
        if fault.workers not in (None, world_size) or fault.rank != world_rank or fault.epoch != epoch:
            continue
        if fault.attempt is not None and fault.attempt != restarts:
            continue
        if fault.delay_s:
            time.sleep(fault.delay_s)
        logger.warning("injecting fault %s on rank %d at epoch %d", fault.kind, world_rank, epoch)
        if fault.kind == "raise":
            raise InjectedFault(f"injected fault on rank {world_rank} at epoch {epoch}")
        if fault.kind == "hang":
            # Sleep past any collective timeout: the other ranks block in their next collective.
            time.sleep(fault.hang_s)
        elif fault.kind == "nan":
            with torch.no_grad():
                for param in model.parameters():
                    param.fill_(float("nan"))
        elif fault.kind == "exit":
            # A hard process death, as when a node is lost: no exception, no cleanup.
            os._exit(1)
