"""The software and hardware environment recorded with every result."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

# Only these environment variables are recorded: settings that change performance. Credentials and
# tokens never match them.
RECORDED_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "NCCL_DEBUG",
    "NCCL_SOCKET_IFNAME",
    "NCCL_IB_DISABLE",
    "NCCL_P2P_DISABLE",
    "NCCL_ALGO",
    "NCCL_PROTO",
    "GLOO_SOCKET_IFNAME",
    "RAY_TRAIN_V2_ENABLED",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER",
)


def collect_environment() -> dict[str, Any]:
    """Return versions, device names and recorded variables of the calling process's machine."""
    import ray
    import torch
    import torchvision

    cuda_devices = []
    if torch.cuda.is_available():
        cuda_devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "ray": ray.__version__,
        "cuda": torch.version.cuda,
        "cuda_devices_on_driver_node": cuda_devices,
        "env": {name: os.environ[name] for name in RECORDED_ENV_VARS if name in os.environ},
    }


def framework_label() -> str:
    """Return the table's Framework column, for example 'PyTorch 2.14.1, Ray 2.60.0'."""
    import ray
    import torch

    return f"PyTorch {torch.__version__.split('+')[0]}, Ray {ray.__version__}"
