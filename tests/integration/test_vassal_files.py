"""Backends come and go by file: hot-add, draining removal, health-gated routing, bad input."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
import requests

from harness.cluster import Cluster
from harness.load import Load

pytestmark = pytest.mark.integration


def routed(c: Cluster) -> set[str]:
    return set(c.state()["routed"])


def emperor_stats(c: Cluster) -> dict:
    """Every Emperor's stats as one: their vassals (each runs a share of vassals/)."""
    import socket

    vassals = []
    for path in sorted(c.run_dir.glob("emperor*.sock")):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(path))
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        vassals += json.loads(data)["vassals"]
    return {"vassals": vassals}


def test_dropped_file_is_served_and_deleted_file_is_not(cluster):
    cluster.write_vassal("extra.ini")
    cluster.wait(lambda: "extra" in cluster.backends_answering(10), "extra answers through nginx", 15)
    cluster.wait(lambda: cluster.backend_state("extra") == "healthy", "extra published as healthy", 5)
    (cluster.vassals / "extra.ini").unlink()
    cluster.wait(lambda: "extra" not in cluster.state()["backends"], "extra removed", 15)
    assert "extra" not in cluster.backends_answering(20)
    assert not (cluster.run_dir / "sockets" / "extra.socket").exists()


def test_deleting_a_vassal_under_load_fails_no_request(make_cluster):
    c = make_cluster({f"b{i}.ini": "[uwsgi]\nprocesses = 2\n" for i in (1, 2, 3)})
    c.up()
    held: list[int] = []

    def hold() -> None:  # slow requests keep b3 busy: what queues behind them must be served, not reset
        held.append(requests.get(c.url + "/slow?seconds=3", timeout=30).status_code)

    with (
        Load(c.url, clients=4) as fast,
        Load(c.url, clients=2, keepalive=True) as keepalive,
        Load(c.url, clients=2, path="/upload", post=b"p" * 1024, keepalive=True) as posts,
        Load(c.url, clients=4, path="/slow?seconds=0.3") as slow,
    ):
        fast.wait_requests(200)
        slow.wait_requests(10)
        holders = [threading.Thread(target=hold) for _ in range(6)]
        for t in holders:
            t.start()
        (c.vassals / "b3.ini").unlink()
        c.wait(lambda: "b3" not in c.state()["backends"], "b3 drained and stopped", 30)
        fast.wait_requests(200)
        posts.wait_requests(10)
        for t in holders:
            t.join(timeout=30)
    for load in (fast, keepalive, posts, slow):
        assert load.result.failures == [], load.result.summary()
    assert held == [200] * 6
    assert fast.result.backends.get("b3", 0) > 0, "b3 served before its removal"
    assert routed(c) == {"b1", "b2"}


def test_fleet_rm_drains_first_and_fleet_add_waits_until_routed(cluster):
    with Load(cluster.url, clients=8) as load:
        load.wait_requests(100)
        added = cluster.fleet("add", "web-3", "--processes", "1")
        assert "done" in added.stdout
        assert "web-3" in routed(cluster)
        assert cluster.stats("web-3")["workers"].__len__() == 1
        load.wait_requests(100)
        cluster.fleet("reload", "web-3")  # regression: a reloaded vassal leaves its socket file behind
        load.wait_requests(100)
        cluster.fleet("rm", "web-3")
        assert not (cluster.vassals / "web-3.ini").exists()
        assert "web-3" not in cluster.state()["backends"]
        assert not (cluster.run_dir / "sockets" / "web-3.socket").exists()
        load.wait_requests(100)
    assert load.result.failures == [], load.result.summary()
    assert load.result.backends.get("web-3", 0) > 0


def test_a_burst_of_files_joins_in_batches_with_one_nginx_reload(cluster):
    before = cluster.state()["counters"]
    names = [f"burst-{i:02d}" for i in range(12)]
    for name in names:
        cluster.write_vassal(f"{name}.ini")
    cluster.wait(lambda: set(names) <= routed(cluster), "all burst vassals routed", 90)
    after = cluster.state()["counters"]
    # 14 backends outgrow the 64 slots of two: nginx is reloaded once, with 128; the joins are batched.
    assert after["nginx_reloads"] - before["nginx_reloads"] == 1
    changes = after["routing_changes"] - before["routing_changes"]
    assert 1 <= changes <= 3, f"{changes} routing changes for a burst of {len(names)} files"


BAD_VASSALS = {
    "garbage": ("garbage.ini", b"\x00\x01 garbage \xff\xfe\n", "not a text file"),
    "missing-module": (
        "nomodule.ini",
        b"[uwsgi]\nmodule = does_not_exist\n",
        "module `does_not_exist` not found",
    ),
    "import-raises": ("raises.ini", b"[uwsgi]\nmodule = broken\n", "boom on import"),
    "unknown-option": ("typo.ini", b"[uwsgi]\nprocesess = 2\n", "unknown uWSGI option `procesess`"),
    "illegal-name": ("Bad Name.ini", b"[uwsgi]\n", "not a valid vassal name"),
    "socket-claim": (
        "thief.ini",
        b"[uwsgi]\nsocket = %d/../run/sockets/backend-1.sock\n",
        "managed by fleet",
    ),
}


def spawn_attempts(c: Cluster, filename: str) -> int:
    """How often the Emperors have tried to start vassals/`filename`, from its log: each start of uWSGI
    prints "getting INI configuration from <path>" there, each refusal by the launcher (bin/fleet-vassal)
    "refusing to start <file>"."""
    text = "".join(p.read_text(errors="replace") for p in sorted((c.run_dir / "logs").glob("emperor*.log")))
    path = f"/vassals/{filename}"
    return sum(
        1
        for line in text.splitlines()
        if ("getting INI configuration from" in line and line.rstrip().endswith(path))
        or f"refusing to start {filename}:" in line
    )


# The Emperor waits emperor-throttle (1 s) longer after each failed start of a vassal: attempts at t, t+1,
# t+3, t+6, t+10 s... so any 8 s hold at most 4 of them. An Emperor respawning it every second: 8.
SPIN_WINDOW = 8.0
MOST_ATTEMPTS_THROTTLED = 4


@pytest.mark.parametrize("case", sorted(BAD_VASSALS))
def test_bad_vassal_is_failed_never_routed_and_harms_no_one(cluster, case):
    filename, content, reason = BAD_VASSALS[case]
    name = filename[: -len(".ini")]
    (cluster.root / "app" / "broken.py").write_text('raise RuntimeError("boom on import")\n')
    with Load(cluster.url, clients=8) as load:
        load.wait_requests(100)
        (cluster.vassals / filename).write_bytes(content)
        cluster.wait(lambda: cluster.backend_state(name) == "failed", f"{name} failed", 30)
        # The Emperor does not spin on it: over a window of several seconds it starts it no more often than
        # its throttle allows (fleet never probes or routes a file it rejected; the Emperor retries a vassal
        # that failed to start with a growing delay).
        before, until = spawn_attempts(cluster, filename), time.monotonic() + SPIN_WINDOW
        while time.monotonic() < until:
            attempts = spawn_attempts(cluster, filename) - before
            assert attempts <= MOST_ATTEMPTS_THROTTLED, (
                f"the Emperor started {filename} {attempts} times in {SPIN_WINDOW:.0f} s\n{cluster.logs()}"
            )
            load.wait_requests(20)  # paces the polling, and proves the others serve meanwhile
        during = spawn_attempts(cluster, filename) - before
    print(f"\n{case}: {before} start attempt(s) until failed, {during} in the {SPIN_WINDOW:.0f} s after")
    assert during <= MOST_ATTEMPTS_THROTTLED
    error = cluster.state()["backends"][name]["error"]
    assert reason in error, error
    assert load.result.failures == [], load.result.summary()
    assert set(load.result.backends) == {"backend-1", "backend-2"}
    assert routed(cluster) == {"backend-1", "backend-2"}
    status = json.loads(cluster.fleet("status", "--json").stdout)["backends"]
    row = next(r for r in status if r["name"] == name)
    assert row["state"] == "failed" and reason in row["error"]


def test_fixing_a_failed_vassal_brings_it_in(cluster):
    path = cluster.vassals / "fixme.ini"
    path.write_text("[uwsgi]\nprocesess = 1\n")
    cluster.wait(lambda: cluster.backend_state("fixme") == "failed", "fixme failed", 30)
    path.write_text("[uwsgi]\nprocesses = 1\n")
    os.utime(path, (path.stat().st_mtime + 1, path.stat().st_mtime + 1))
    cluster.wait(lambda: "fixme" in routed(cluster), "fixme routed after the fix", 30)


def test_hidden_and_editor_files_are_ignored(cluster):
    valid = "[uwsgi]\nprocesses = 1\n"
    for filename in (".hidden.ini", "backup.ini~", ".swap.ini.swp", "partial.ini.tmp", "notes.conf"):
        (cluster.vassals / filename).write_text(valid)
    cluster.write_vassal("marker.ini")  # a real one, so we know both have looked
    cluster.wait(lambda: "marker" in routed(cluster), "marker routed", 20)
    assert set(cluster.state()["backends"]) == {"backend-1", "backend-2", "marker"}
    assert {p.stem for p in (cluster.run_dir / "sockets").glob("*.socket")} == {
        "backend-1",
        "backend-2",
        "marker",
    }
    emperor_ids = {v["id"].rsplit("/", 1)[-1] for v in emperor_stats(cluster)["vassals"]}
    assert emperor_ids == {"backend-1.ini", "backend-2.ini", "marker.ini"}


def test_an_empty_file_is_a_backend_with_every_default(cluster):
    (cluster.vassals / "plain.ini").write_bytes(b"")
    cluster.wait(lambda: "plain" in routed(cluster), "plain routed", 20)
    assert len(cluster.stats("plain")["workers"]) == 2  # processes = 2 from emperor.ini's [vassal]
    assert "plain" in cluster.backends_answering(40)


def test_fleet_check_names_file_line_and_fix(make_cluster):
    c = make_cluster({"good.ini": "[uwsgi]\nprocesses = 2\n", "bad.ini": "[uwsgi]\nprocesses = 2\nprocesess = 3\n"})
    proc = c.fleet("check", check=False)
    assert proc.returncode == 1
    assert "bad.ini:3: unknown uWSGI option `procesess`" in proc.stdout
    assert "did you mean `processes`?" in proc.stdout
    assert "good.ini: ok" in proc.stdout
    ok = c.fleet("check", str(c.vassals / "good.ini"))
    assert ok.returncode == 0


def test_status_shows_one_row_per_backend(cluster):
    doc = json.loads(cluster.fleet("status", "--json").stdout)
    assert [(p["name"], p["up"]) for p in doc["parts"]] == [
        ("supervisor", True),
        ("emperor-1", True),
        ("emperor-2", True),
        ("nginx", True),
        ("control", True),
    ]
    rows = doc["backends"]
    assert [r["name"] for r in rows] == ["backend-1", "backend-2"]
    for row in rows:
        assert row["state"] == "healthy"
        assert row["workers"] == 2 and row["pid"] > 0 and row["memory"] > 1_000_000
        assert set(row) == {
            "name",
            "state",
            "pid",
            "workers",
            "requests",
            "memory",
            "routed",
            "error",
            "weight",
            "share",
            "app",
        }
        assert (row["weight"], row["share"]) == (100, 50.0)
    table = cluster.fleet("status").stdout.split("\n\n", 1)
    assert table[0].startswith("fleet: supervisor up (pid ")
    header = ["NAME", "STATE", "PID", "WORKERS", "REQUESTS", "MEMORY", "WEIGHT", "ERROR"]
    assert table[1].splitlines()[0].split() == header


def test_a_backend_busy_with_a_long_request_stays_routed(make_cluster):
    import threading

    from fleet import uwsgi

    c = make_cluster({"a.ini": "[uwsgi]\nprocesses = 1\n", "b.ini": "[uwsgi]\nprocesses = 1\n"})
    c.up()
    # Hold a's only worker for longer than the health probes' patience (2 probes x 1 s).
    slow_request = {"a": (c.run_dir / "sockets" / "a.socket", "/slow?seconds=4")}
    slow = threading.Thread(target=uwsgi.request_many, args=(slow_request, 10))
    slow.start()
    c.wait(lambda: c.stats("a")["workers"][0]["status"] == "busy", "a's worker busy", 5)
    states = set()
    while slow.is_alive():
        states.add(c.backend_state("a"))
        slow.join(timeout=0.1)
    assert states == {"healthy"}, f"a busy backend was treated as down: {states}\n{c.logs()}"
    assert "a" in routed(c)


def test_a_file_whose_event_never_arrives_is_found_by_the_periodic_pass(make_cluster, monkeypatch):
    # FLEET_WATCH=poll: no inotify at all, as on a mount that forwards no events.
    monkeypatch.setenv("FLEET_WATCH", "poll")
    c = make_cluster({"b1.ini": "[uwsgi]\nprocesses = 1\n"})
    c.up()
    assert "(polling)" in (c.run_dir / "logs" / "control.log").read_text()
    c.write_vassal("b2.ini")
    c.wait(lambda: "b2" in routed(c), "b2 routed without a file event", 30)
    (c.vassals / "b2.ini").unlink()
    c.wait(lambda: "b2" not in c.state()["backends"], "b2 removed without a file event", 30)


def test_a_config_nginx_rejects_never_reaches_it_and_the_last_good_one_is_kept(cluster):
    from fleet.errors import NginxConfigError
    from fleet.layout import Layout
    from fleet.proxy import nginx

    layout = Layout(cluster.root)
    good = layout.upstreams_conf.read_text()
    with pytest.raises(NginxConfigError, match="kept the last good one"):
        nginx.apply_upstreams(layout, "server this is not nginx syntax;\n")
    assert layout.upstreams_conf.read_text() == good
    assert cluster.backends_answering() == {"backend-1", "backend-2"}
