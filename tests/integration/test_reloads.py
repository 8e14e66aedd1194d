"""Zero-downtime reloads and crash recovery, under load (assertions on failures, never on latency)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from fleet import uwsgi
from harness.cluster import Cluster
from harness.load import Load

pytestmark = pytest.mark.integration


def touch(c: Cluster, name: str) -> int:
    path = c.vassals / f"{name}.ini"
    os.utime(path)
    return path.stat().st_mtime_ns


def reloaded_since(c: Cluster, name: str, mtime_ns: int) -> bool:
    b = c.state()["backends"].get(name, {})
    return b.get("state") == "healthy" and b.get("served_mtime_ns", 0) >= mtime_ns and name in c.state()["routed"]


def busy_workers(c: Cluster, name: str) -> int:
    return sum(1 for w in c.stats(name)["workers"] if w["status"] == "busy")


def reload_by_touch(c: Cluster, name: str) -> None:
    before = c.worker_pids(name)
    mtime = touch(c, name)
    c.wait(lambda: reloaded_since(c, name, mtime), f"{name} reloaded", 30)
    after = c.worker_pids(name)
    assert not before & after, f"{name} still has old workers: {before & after}"


def test_touching_each_backend_in_turn_under_load_fails_nothing_and_stalls_nothing(cluster):
    loaded_at = {r["backend"]: r["loaded_at"] for r in (cluster.get().json() for _ in range(20))}
    held: list[int | Exception] = []

    def hold(name: str) -> None:  # on the backend about to reload, longer than the drain wait (2 s)
        sock = cluster.run_dir / "sockets" / f"{name}.socket"
        answer = uwsgi.request_many({name: (sock, "/slow?seconds=3")}, timeout=30)[name]
        held.append(answer if isinstance(answer, Exception) else answer[0])

    with (
        Load(cluster.url, clients=4) as load,
        Load(cluster.url, clients=2, keepalive=True) as keepalive,
        Load(cluster.url, clients=2, path="/upload", post=b"p" * 1024, keepalive=True) as posts,
    ):
        load.wait_requests(200)
        for name in ("backend-1", "backend-2", "backend-1", "backend-2"):
            holder = threading.Thread(target=hold, args=(name,))
            holder.start()
            cluster.wait(lambda n=name: busy_workers(cluster, n) >= 1, f"a long request on {name}", 10)
            reload_by_touch(cluster, name)
            holder.join(timeout=30)
            load.wait_requests(100)
        posts.wait_requests(10)
    for result in (load.result, keepalive.result, posts.result):
        assert result.failures == [], result.summary()
    assert held == [200] * 4, "a request in progress when its backend reloads completes"
    # With a peer to take its traffic, a reloading backend is out of nginx: no request waits for it
    # (in the wrong order they would queue ~1 s at the reloading vassal).
    stalled = [t for r in (load.result, keepalive.result) for t in r.latencies if t > 0.8]
    assert len(stalled) <= 2, f"{len(stalled)} requests took over 0.8 s: {sorted(stalled)[-5:]}"
    fresh = {r["backend"]: r["loaded_at"] for r in (cluster.get().json() for _ in range(20))}
    for name, then in loaded_at.items():
        assert fresh[name] > then, f"{name} did not import its code again"


def test_touching_the_only_backend_under_load_fails_nothing(make_cluster):
    c = make_cluster({"solo.ini": "[uwsgi]\nprocesses = 2\n"})
    c.up()
    with Load(c.url, clients=8) as load:
        load.wait_requests(200)
        for _ in range(3):
            reload_by_touch(c, "solo")
            load.wait_requests(100)
    assert load.result.failures == [], load.result.summary()


def test_a_touch_reloads_a_backend_in_place_keeping_its_master_and_its_held_socket(cluster):
    # uWSGI re-executes itself on a graceful reload: it must find the socket the supervisor handed it again
    # (--socket fd://3), not exit for want of one and be respawned by the Emperor.
    master = cluster.stats("backend-1")["pid"]
    inode = (cluster.run_dir / "sockets" / "backend-1.socket").stat().st_ino
    reload_by_touch(cluster, "backend-1")
    assert cluster.stats("backend-1")["pid"] == master
    assert (cluster.run_dir / "sockets" / "backend-1.socket").stat().st_ino == inode
    assert "socket option is missing" not in (cluster.run_dir / "logs" / "backend-1.log").read_text()


def test_a_second_touch_in_the_same_second_is_not_lost(cluster):
    generations: list[frozenset[int]] = [frozenset(cluster.worker_pids("backend-1"))]
    stop = threading.Event()

    def record():
        while not stop.is_set():
            try:
                pids = frozenset(cluster.worker_pids("backend-1"))
            except (OSError, ValueError):
                continue
            if pids and pids != generations[-1] and len(pids) == 2:
                generations.append(pids)
            stop.wait(0.01)

    recorder = threading.Thread(target=record, daemon=True)
    recorder.start()
    path = cluster.vassals / "backend-1.ini"
    cluster.wait(lambda: time.time() % 1 < 0.5, "the start of a second", 2)
    first = time.time()
    os.utime(path, (first, first))
    cluster.wait(lambda: cluster.backend_state("backend-1") == "reloading", "first reload begins", 10)
    second = int(first) + 0.9  # same whole second as the first touch: the Emperor alone would miss it
    os.utime(path, (second, second))
    cluster.wait(lambda: reloaded_since(cluster, "backend-1", int(second * 1e9)), "second reload done", 30)
    cluster.wait(lambda: len(generations) >= 3, "two reloads observed", 10)
    stop.set()
    recorder.join()


def test_rolling_reload_of_all_under_load_fails_nothing(cluster):
    before = {n: cluster.worker_pids(n) for n in ("backend-1", "backend-2")}
    with Load(cluster.url, clients=8) as load:
        load.wait_requests(200)
        proc = cluster.fleet("reload", "--all")
        load.wait_requests(100)
    assert load.result.failures == [], load.result.summary()
    assert "[1/2] reloading backend-1" in proc.stdout and "[2/2] reloading backend-2" in proc.stdout
    for name, old in before.items():
        assert not old & cluster.worker_pids(name)


def test_rolling_reload_stops_at_broken_code_and_keeps_the_rest_serving(make_cluster):
    c = make_cluster({f"b{i}.ini": "[uwsgi]\nprocesses = 1\n" for i in (1, 2, 3)})
    c.up()
    old_pids = {n: c.worker_pids(n) for n in ("b2", "b3")}
    with Load(c.url, clients=8) as load:
        load.wait_requests(200)
        wsgi = c.root / "app" / "wsgi.py"
        wsgi.write_text(wsgi.read_text() + '\nraise RuntimeError("release 2 is broken")\n')
        proc = c.fleet("reload", "--all", "--timeout", "60", check=False)
        load.wait_requests(200)
    assert proc.returncode != 0
    assert "b1 failed to reload" in proc.stderr + proc.stdout
    assert "release 2 is broken" in c.state()["backends"]["b1"]["error"]
    assert load.result.failures == [], load.result.summary()
    assert set(c.state()["routed"]) == {"b2", "b3"}
    assert {n: c.worker_pids(n) for n in ("b2", "b3")} == old_pids, "b2/b3 must keep their old code"


@pytest.mark.parametrize("victim", ["master", "worker"])
def test_kill_9_under_load_fails_no_get(cluster, victim):
    with Load(cluster.url, clients=8) as load:
        load.wait_requests(200)
        stats = cluster.stats("backend-1")
        pid = stats["pid"] if victim == "master" else stats["workers"][0]["pid"]
        os.kill(pid, signal.SIGKILL)
        cluster.wait(
            lambda: (
                cluster.stats("backend-1")["pid"] != pid
                if victim == "master"
                else pid not in cluster.worker_pids("backend-1")
            ),
            "backend-1 respawned",
            20,
        )
        cluster.wait(lambda: "backend-1" in cluster.state()["routed"], "backend-1 routed again", 20)
        load.wait_requests(300)
    assert load.result.failures == [], load.result.summary()
    # nginx skips a backend for fail_timeout (2 s) after a refused connection, then tries it again
    cluster.wait(lambda: cluster.backends_answering(10) == {"backend-1", "backend-2"}, "both answer", 10)


def test_down_completes_in_flight_requests(cluster):
    results: list[int] = []

    def slow():
        results.append(cluster.get("/slow?seconds=2", timeout=20).status_code)

    clients = [threading.Thread(target=slow) for _ in range(4)]
    for t in clients:
        t.start()

    def in_flight() -> int:
        """Requests being served now (counted per core: a worker may run several threads)."""
        workers = [w for n in ("backend-1", "backend-2") for w in cluster.stats(n)["workers"]]
        return sum(core.get("in_request", 0) for w in workers for core in w.get("cores", []))

    # Slots spread requests by slot, not by backend: some of the four may wait in a backend's backlog
    # behind its two busy workers. Those must complete too.
    cluster.wait(lambda: in_flight() >= 2, "slow requests in flight", 10)
    cluster.fleet("down")
    for t in clients:
        t.join(timeout=20)
    assert results == [200] * 4
    assert cluster.processes() == []
