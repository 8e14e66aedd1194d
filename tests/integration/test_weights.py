"""Weights through real nginx and uWSGI: 100 vs 300 splits 25/75 on new and keep-alive connections, weight 0
stops a backend's new requests within a second, and neither reloads nginx nor the backends."""

from __future__ import annotations

import time

import pytest

from harness.cluster import Cluster
from harness.load import Load
from harness.wait import wait_for

pytestmark = pytest.mark.integration

WEIGHTED = {
    "light.ini": "[uwsgi]\nprocesses = 2\n[fleet]\nweight = 100\n",
    "heavy.ini": "[uwsgi]\nprocesses = 2\n[fleet]\nweight = 300\n",
}
REQUESTS = 4000


def nginx_view(cluster: Cluster) -> tuple[str, str, int]:
    """nginx's master pid, its upstream config and fleet's count of its reloads."""
    pid = (cluster.run_dir / "nginx.pid").read_text().strip()
    return pid, cluster.layout.upstreams_conf.read_text(), cluster.state()["counters"]["nginx_reloads"]


def split(cluster: Cluster, keepalive: bool) -> dict[str, float]:
    with Load(cluster.url, clients=8, keepalive=keepalive, max_requests=REQUESTS, max_seconds=240) as load:
        wait_for(f"{REQUESTS} requests", lambda: len(load.recorded()) >= REQUESTS, 240, details=load.summary)
    result = load.result
    assert not result.failures, result.summary()
    total = sum(result.backends.values())
    return {name: 100.0 * count / total for name, count in result.backends.items()}


@pytest.fixture
def weighted(make_cluster) -> Cluster:
    c = make_cluster(WEIGHTED)
    c.up()
    return c


def test_weights_100_and_300_split_4000_requests_25_75_within_3_points_on_new_and_keepalive(weighted):
    before = nginx_view(weighted)
    for keepalive in (False, True):
        shares = split(weighted, keepalive)
        print(f"keepalive={keepalive}: {shares}")
        assert abs(shares["light"] - 25) <= 3 and abs(shares["heavy"] - 75) <= 3, shares
    assert nginx_view(weighted) == before


def test_weight_zero_stops_new_requests_within_a_second_without_reloading_anything(weighted):
    before = nginx_view(weighted)
    workers = {name: weighted.worker_pids(name) for name in ("light", "heavy")}
    offset = time.time() - time.monotonic()
    with Load(weighted.url, clients=4, keepalive=True, max_seconds=120) as load:
        load.wait_requests(200)
        weighted.fleet("weight", "light", "0")
        asked_at = (weighted.run_dir / "weights" / "light.json").stat().st_mtime - offset
        returned_at = time.monotonic()
        load.wait_requests(300)
    light_after = [r for r in load.recorded() if r.backend == "light" and load.t0 + r.start > asked_at]
    last = max((load.t0 + r.start - asked_at for r in light_after), default=0.0)
    assert last <= 1.0, f"light still got new requests {last:.2f} s after `fleet weight light 0`"
    assert not [r for r in load.recorded() if r.backend == "light" and load.t0 + r.start > returned_at]
    assert not load.result.failures, load.summary()
    light = weighted.state()["backends"]["light"]
    assert (light["state"], light["weight"], light["slots"]) == ("healthy", 0, 0)
    assert nginx_view(weighted) == before
    assert {name: weighted.worker_pids(name) for name in ("light", "heavy")} == workers
    # Until its file changes: then the file's weight (100) is back.
    weighted.write_vassal("light.ini", WEIGHTED["light.ini"])
    weighted.wait(lambda: weighted.state()["backends"]["light"]["weight"] == 100, "the file's weight back", 30)
