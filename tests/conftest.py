"""Shared fixtures: one Ray instance for the whole session, on loopback."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """Start one local Ray instance on 127.0.0.1 for every Ray-launching test."""
    import os

    import ray

    from mlbench_ray.sweep import NAMESPACE

    # Metrics reach the Prometheus endpoint every second instead of every 10 s, for the metrics test.
    os.environ.setdefault("RAY_metrics_report_interval_ms", "1000")

    ray.init(
        # A new instance, even where `ray start` left the address of another cluster behind.
        address="local",
        num_cpus=4,
        namespace=NAMESPACE,
        # The dashboard serves the state API that Ray Train's placement-group cleaner polls. Without
        # it, while a second Ray instance ran on this machine, the cleaner was seen to declare a live
        # trial's controller dead and remove the trial's placement group.
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        _node_ip_address="127.0.0.1",
        log_to_driver=True,
    )
    yield ray
    ray.shutdown()
