"""The bench's background clients: harness.load's raw-socket clients, the way every bench scenario runs them."""

from __future__ import annotations

from harness.cluster import Cluster
from harness.load import Kind, Load


def background_load(cluster: Cluster, new: int, keepalive: int, max_seconds: float) -> Load:
    """Started: `new` new-connection and `keepalive` keep-alive GET / clients through the cluster's nginx,
    counting failures as wrk does (raw), 5 s per request, a 1 ms pause after a failure."""
    return Load(
        f"http://127.0.0.1:{cluster.port}",
        mix={Kind(): new, Kind(keepalive=True): keepalive},
        raw=True,
        timeout=5.0,
        max_seconds=max_seconds,
        pause_after_failure=0.001,
    ).start()
