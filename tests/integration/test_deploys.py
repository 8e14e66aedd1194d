"""Deploys through real nginx and uWSGI: a bad version is rolled back by its canary's own answers, a good one
promoted with no failed request, `fleet rollback` brings the old one back, low traffic never promotes."""

from __future__ import annotations

import json
import re
import time

import pytest

from harness.cluster import Cluster
from harness.load import Kind, Load

pytestmark = pytest.mark.integration

OLD = {f"backend-{i}.ini": "[uwsgi]\nprocesses = 2\n" for i in (1, 2)}
# The new versions: the example app with a version in its answers; the bad one answers 500 on one in three.
VERSIONED = """
from wsgi import application as base
from flask import jsonify
import itertools, os

counter = itertools.count()
VERSION = {version!r}
BAD = {bad!r}


def application(environ, start_response):
    if BAD and environ.get("PATH_INFO") == "/" and next(counter) % 3 == 0:
        start_response("500 INTERNAL SERVER ERROR", [("Content-Type", "text/plain")])
        return [b"bad version"]
    return base(environ, start_response)
"""
OPTIONS = ["--canary", "20,50", "--interval", "5", "--max-error-rate", "5", "--min-requests", "30"]
MIX = {
    Kind("GET", keepalive=True): 2,
    Kind("GET", keepalive=False): 2,
    Kind("POST", keepalive=True, path="/upload", body=b"x" * 100): 1,
    Kind("POST", keepalive=False, path="/upload", body=b"x" * 100): 1,
}


def new_version(cluster: Cluster, name: str, bad: bool) -> str:
    (cluster.root / "app" / f"{name}.py").write_text(VERSIONED.format(version=name, bad=bad))
    path = cluster.root / f"{name}.ini"
    path.write_text(f"[uwsgi]\nprocesses = 2\nmodule = {name}\n")
    return str(path)


def backends(cluster: Cluster) -> set[str]:
    return set(cluster.state()["backends"])


@pytest.fixture
def two(make_cluster) -> Cluster:
    c = make_cluster(OLD)
    c.up()
    return c


def test_a_bad_version_is_rolled_back_within_two_intervals_and_the_old_one_serves_everything(two):
    path = new_version(two, "bad", bad=True)
    with Load(two.url, mix=MIX, max_seconds=180, pause_after_failure=0.05) as load:
        load.wait_requests(100)
        started = time.monotonic()
        proc = two.fleet("deploy", path, *OPTIONS, check=False, timeout=120)
        took = time.monotonic() - started
        after = time.monotonic()
        load.wait_requests(200)
    print(proc.stdout)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(
        r"rolled back: canary step 1 \(20%\): (5xx rate [\d.]+% > 5%|new backend \S+ is ejected)", proc.stdout
    )
    assert took < 2 * 5 + 15, f"rolled back after {took:.1f} s"  # two intervals, plus starting the canary
    assert backends(two) == {"backend-1", "backend-2"}
    late = [r for r in load.recorded() if load.t0 + r.start > after]
    assert late and {r.backend for r in late if r.ok} == {"backend-1", "backend-2"}
    assert all(r.ok for r in late), [r.failure() for r in late if not r.ok][:5]
    seen = [r for r in load.recorded() if r.status is not None and r.status >= 500]
    print(
        f"5xx seen by clients during the bad canary: {len(seen)} of {len(load.recorded())}"
        f" (GET {sum(r.method == 'GET' for r in seen)}, POST {sum(r.method == 'POST' for r in seen)})"
    )


def test_a_good_version_is_promoted_with_no_failed_request_then_rolled_back_with_none(two):
    path = new_version(two, "good", bad=False)
    with Load(two.url, mix=MIX, max_seconds=300) as load:
        load.wait_requests(100)
        proc = two.fleet("deploy", path, *OPTIONS, timeout=180)
        after = time.monotonic()
        load.wait_requests(200)
        promoted = backends(two)
        rolled = two.fleet("rollback", timeout=180)
        load.wait_requests(200)
    print(proc.stdout, rolled.stdout)
    assert "promoted" in proc.stdout
    assert len(promoted) == 2 and all(n.startswith("default-v2-") for n in promoted), promoted
    late = [r for r in load.recorded() if load.t0 + r.start > after and r.ok]
    assert late and all(r.backend in promoted for r in late[:100])
    assert not load.result.failures, load.summary()
    restored = backends(two)
    assert len(restored) == 2 and all(n.startswith("default-v3-") for n in restored), restored
    answer = two.get().json()
    assert answer["backend"] in restored
    status = json.loads(two.fleet("deploy", "--status", "--json").stdout)
    assert status["phase"] == "promoted" and status["plan"]["version"] == "v3"
