"""Deploys through real nginx and uWSGI: a bad version is rolled back by its canary's own answers, a good one
promoted with no failed request, `fleet rollback` brings the old one back, low traffic never promotes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest
import requests

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
    """Two backends of the example app, with the admin listener on a free port (`admin`)."""
    c = make_cluster(OLD)
    c.up_with_admin()
    return c


RETRY_500 = ("uwsgi_next_upstream error;", "uwsgi_next_upstream error http_500 http_503;")


@pytest.mark.parametrize("retries", [False, True], ids=["no-retries", "get-retried-on-500"])
def test_a_bad_version_is_rolled_back_within_two_intervals_and_the_old_one_serves_everything(make_cluster, retries):
    two = make_cluster(OLD)
    if retries:  # nginx retries an idempotent request that got a 500 on another slot (not the default)
        conf = two.root / "nginx" / "nginx.conf"
        assert RETRY_500[0] in conf.read_text()
        conf.write_text(conf.read_text().replace(*RETRY_500))
    two.up()
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
    reason = r"rolled back: canary step 1 \(20%\): (5xx rate [\d.]+% > 5%|new backend \S+ is ejected)"
    assert re.search(reason, proc.stdout)
    assert took < 2 * 5 + 15, f"rolled back after {took:.1f} s"  # two intervals, plus starting the canary
    assert backends(two) == {"backend-1", "backend-2"}
    late = [r for r in load.recorded() if load.t0 + r.start > after]
    assert late and {r.backend for r in late if r.ok} == {"backend-1", "backend-2"}
    assert all(r.ok for r in late), [r.failure() for r in late if not r.ok][:5]
    seen = [r for r in load.recorded() if r.status is not None and r.status >= 500]
    gets = sum(r.method == "GET" for r in seen)
    print(f"retries={retries}: 5xx seen by clients: {len(seen)} of {len(load.recorded())} (GET {gets})")
    if retries:
        assert gets == 0, [r.failure() for r in seen][:5]


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


def follow(cluster: Cluster, *args: str) -> subprocess.Popen:
    """`fleet deploy ...` left running, as a user's terminal would."""
    return subprocess.Popen(
        [cluster.python, "-m", "fleet", "--root", str(cluster.root), "deploy", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cluster.root,
        env={**os.environ, "FLEET_PORT": str(cluster.port)},
    )


def deploy_state(cluster: Cluster) -> dict:
    return json.loads((cluster.run_dir / "deploy" / "state.json").read_text())


def test_low_traffic_waits_and_says_so_and_never_promotes_on_too_few_answers(two):
    path = new_version(two, "quiet", bad=False)
    stop = threading.Event()

    def one_per_second() -> None:
        while not stop.wait(1.0):  # pacing, not synchronisation: the traffic is the test's input
            try:
                two.get()
            except OSError:
                pass

    sender = threading.Thread(target=one_per_second, daemon=True)
    sender.start()
    proc = follow(two, path, "--canary", "50", "--interval", "2", "--min-requests", "30")
    try:
        two.wait(lambda: "waiting for traffic" in deploy_state(two)["note"], "the deploy says it waits", 60)
        first = deploy_state(two)["window"]["answers"]
        two.wait(lambda: deploy_state(two)["window"]["answers"] >= first + 3, "a few more answers", 30)
        state = deploy_state(two)
        assert state["phase"] == "canary" and state["window"]["answers"] < 30, state
        # Shown where the cluster is shown: fleet status, /api/status, /metrics.
        assert "deploy v2 of app default: canary, step 1 of 1 at 50%" in two.fleet("status").stdout
        assert requests.get(two.admin + "/api/status", timeout=5).json()["deploy"]["percent"] == 50
        metrics = requests.get(two.admin + "/metrics", timeout=5).text
        assert 'fleet_deploy_canary_percent{app="default",version="v2"} 50.0' in metrics
        assert 'fleet_vassal_weight{app="default",vassal="default-v2-1"} 1000.0' in metrics
        proc.send_signal(signal.SIGINT)  # Ctrl-C: roll back
        out, _ = proc.communicate(timeout=60)
    finally:
        stop.set()
        sender.join(5)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out
    assert "of 30 answers needed to judge; waiting for traffic" in out
    assert "rolled back: cancelled at canary step 1 (50%)" in out
    assert backends(two) == {"backend-1", "backend-2"}


def test_a_deploy_whose_control_plane_is_killed_resumes_and_finishes_by_itself(two):
    path = new_version(two, "resumed", bad=False)
    with Load(two.url, mix=MIX, max_seconds=300) as load:
        load.wait_requests(100)
        proc = follow(two, path, *OPTIONS)
        two.wait(lambda: deploy_state(two)["phase"] == "canary", "the canary", 60)
        old = two.pids()["control"]
        os.kill(old, signal.SIGKILL)
        two.wait(lambda: two.pids()["control"] != old, "the control plane restarted", 30)
        out, _ = proc.communicate(timeout=180)
        load.wait_requests(100)
    print(out)
    assert proc.returncode == 0, out
    assert "resuming the deploy at canary" in out
    assert deploy_state(two)["resumed"] is True
    assert {n for n in backends(two)} == {"default-v2-1", "default-v2-2"}
    assert not load.result.failures, load.summary()


def test_reload_all_with_surge_replaces_every_backend_start_first_with_no_failed_request(two):
    with Load(two.url, mix=MIX, max_seconds=180) as load:
        load.wait_requests(100)
        proc = two.fleet("reload", "--all", "--surge", "2", timeout=120)
        load.wait_requests(100)
    print(proc.stdout)
    assert "promoted" in proc.stdout
    assert backends(two) == {"default-v2-1", "default-v2-2"}
    assert not load.result.failures, load.summary()
    assert two.fleet("reload", "--surge", "1", "backend-1", check=False).returncode == 2


def test_low_traffic_with_probe_rate_is_judged_on_its_own_probes_and_promoted(two):
    path = new_version(two, "probed", bad=False)
    proc = two.fleet(
        "deploy", path, "--canary", "50", "--interval", "2", "--min-requests", "30", "--probe-rate", "10", timeout=120
    )
    assert "canary step 1 (50%) passed: " in proc.stdout
    passed = re.search(r"passed: (\d+) answers", proc.stdout)
    assert passed and int(passed.group(1)) >= 30, proc.stdout
    assert backends(two) == {"default-v2-1", "default-v2-2"}
