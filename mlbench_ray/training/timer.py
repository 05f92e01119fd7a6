"""Per-step timing split into data wait, compute and communication.

On a GPU the device is synchronized before each clock read. Otherwise queued kernels would be billed to
whichever phase happens to wait for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

PHASES = ("data", "compute", "communication")


def device_synchronizer(device: torch.device) -> Callable[[], None]:
    """Return a function that waits for the device's queued work (a no-op on CPU)."""
    if device.type == "cuda":
        # NOTE: the CUDA path has not yet run on a GPU in this project's tests.
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


class StepTimer:
    """Accumulates the time of each phase of the training steps."""

    def __init__(self, synchronize: Callable[[], None]) -> None:
        self._synchronize = synchronize
        self.totals_s = dict.fromkeys(PHASES, 0.0)
        self.steps = 0
        self._last = 0.0

    def start_step(self) -> None:
        self._synchronize()
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        """Charge the time since the previous lap (or the step start) to `phase`."""
        self._synchronize()
        now = time.perf_counter()
        self.totals_s[phase] += now - self._last
        self._last = now

    def end_step(self) -> None:
        self.steps += 1

    @property
    def step_time_s(self) -> float:
        """Sum of all training-step time so far."""
        return sum(self.totals_s.values())

    def mean_per_step_s(self) -> dict[str, float]:
        steps = max(self.steps, 1)
        return {f"{phase}_s": total / steps for phase, total in self.totals_s.items()}
