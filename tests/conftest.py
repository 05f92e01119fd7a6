"""Shared fixtures: one Ray instance for the whole session, on loopback."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """Start one local Ray instance on 127.0.0.1 for every Ray-launching test."""
    import ray

    from mlbench_ray.sweep import NAMESPACE

    ray.init(
        num_cpus=4,
        namespace=NAMESPACE,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=True,
    )
    yield ray
    ray.shutdown()
