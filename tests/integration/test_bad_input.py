"""Bad input is answered: names that are paths, a second `fleet up`, folders that cannot be written, and
whatever lands in vassals/ -- one line and a non-zero exit, or a failed backend with its reason, never a
traceback, a leak or a harmed neighbour."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from fleet import config
from harness.cluster import Cluster
from harness.load import Load
from harness.ports import free_port
from tests.integration.foreground import foreground_up

pytestmark = pytest.mark.integration

TEN_MB = 10 << 20


def routed(c: Cluster) -> set[str]:
    return set(c.state()["routed"])


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def control_pid(c: Cluster) -> int:
    return c.pids()["control"]


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def passes(c: Cluster) -> int:
    return c.state()["counters"].get("passes", 0)


def wait_passes(c: Cluster, count: int) -> None:
    """Until the control plane has made `count` more passes (each one re-scans vassals/)."""
    target = passes(c) + count
    c.wait(lambda: passes(c) >= target, f"{count} control-plane passes", 15)


# ---- names checked everywhere --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [("rm", "../emperor"), ("reload", "../emperor"), ("reload", "../x"), ("rm", "emperor"), ("reload", "nosuch")],
)
def test_a_name_that_is_a_path_or_no_vassal_touches_nothing(cluster, args):
    bystander = cluster.root / "x.ini"
    bystander.write_text("[uwsgi]\n")
    watched = [cluster.root / "emperor.ini", bystander, *sorted(cluster.vassals.glob("*.ini"))]
    before = {p: p.stat().st_mtime_ns for p in watched}
    proc = cluster.fleet(*args, check=False)
    assert proc.returncode != 0
    line = one_line(proc.stderr)
    assert args[1] in line, line
    assert {p: p.stat().st_mtime_ns for p in watched} == before
    assert not list((cluster.run_dir / "drain").iterdir())
    assert routed(cluster) == {"backend-1", "backend-2"}


# ---- one cluster per folder ----------------------------------------------------------------------------


def test_a_second_up_in_the_folder_is_refused_and_the_first_serves_on(cluster):
    record = cluster.run_dir / "processes-all.json"
    recorded = record.read_text()
    supervisor, recorded_control = cluster.pids()["supervisor"], cluster.pids()["control"]
    with Load(cluster.url, clients=4) as load:
        load.wait_requests(50)
        for extra in ((), ("--detach",)):
            proc = cluster.fleet("up", "--port", str(free_port()), *extra, check=False, timeout=30)
            assert proc.returncode == 4, proc.stdout + proc.stderr
            line = one_line(proc.stderr)
            assert f"pid {supervisor}" in line and f"port {cluster.port}" in line, line
        load.wait_requests(100)
    assert load.result.failures == [], load.result.summary()
    assert record.read_text() == recorded
    assert (cluster.run_dir / "state.json").exists()
    assert cluster.pids()["control"] == recorded_control
    assert cluster.backends_answering(20) == {"backend-1", "backend-2"}


def test_a_foreground_up_holds_the_lock_itself(make_cluster):
    c = make_cluster({"b1.ini": "[uwsgi]\nprocesses = 1\n"})
    with foreground_up(c) as proc:
        second = c.up(check=False)
        assert second.returncode == 4
        assert f"pid {proc.pid}, port {c.port}" in one_line(second.stderr)
        assert "b1" in c.backends_answering(10)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=90) == 0


def test_the_lock_ends_with_the_cluster(make_cluster):
    c = make_cluster({"solo.ini": "[uwsgi]\nprocesses = 1\n"})
    c.up()
    c.down()
    c.up()  # nothing stale is left to refuse it
    assert "solo" in c.backends_answering(10)


# ---- I/O errors are answers ----------------------------------------------------------------------------


def test_a_vassals_folder_that_cannot_be_written_or_listed_is_answered(cluster):
    # As root, chmod stops no write: a file where the folder belongs fails every write and listing, honestly.
    away = cluster.root / "vassals.away"
    cluster.vassals.rename(away)
    cluster.vassals.write_text("not a folder\n")
    try:
        proc = cluster.fleet("add", "web-3", check=False)
        assert proc.returncode != 0
        line = one_line(proc.stderr)
        assert str(cluster.vassals) in line and "not a folder" in line, line
        wait_passes(cluster, 6)
        log = (cluster.run_dir / "logs" / "control.log").read_text()
        assert log.count("cannot list the vassal files") == 1, log
        assert "Traceback" not in log
        # Fleet drops nothing it knew of (the Emperor, whose glob no longer matches, stops the vassals on
        # its own: that is uWSGI's, and the health checks take them out of nginx meanwhile).
        assert cluster.state()["backends"].keys() >= {"backend-1", "backend-2"}
    finally:
        cluster.vassals.unlink()
        away.rename(cluster.vassals)
    cluster.wait(
        lambda: "can be listed again" in (cluster.run_dir / "logs" / "control.log").read_text(), "recovery logged", 10
    )
    cluster.wait(lambda: routed(cluster) == {"backend-1", "backend-2"}, "both routed again", 60)
    log = (cluster.run_dir / "logs" / "control.log").read_text()
    assert log.count("cannot list the vassal files") == 1 and log.count("can be listed again") == 1, log


# ---- no leak, whatever is in vassals/ ------------------------------------------------------------------


def odd_files(vassals: Path) -> dict[str, str]:
    """Create one of each kind of thing that is not a vassal file; {name: the reason fleet gives}."""
    (vassals / "x.ini").mkdir()
    os.mkfifo(vassals / "fifo.ini")
    (vassals / "loop.ini").symlink_to("loop.ini")
    (vassals / "dangling.ini").symlink_to("nowhere/at/all.ini")
    (vassals / "huge.ini").write_bytes(b"; padding\n" * (TEN_MB // 10))
    (vassals / "nul.ini").write_bytes(b"\0" * 4096)
    return {
        "x": "it is a folder",
        "fifo": "not a file but a FIFO",
        "sock": "it is a socket",
        "loop": "it is a symlink loop",
        "dangling": "it is a symlink to nothing",
        "huge": "file is over 65536 bytes",
        "nul": "only NUL bytes",
    }


def test_fds_and_memory_stay_flat_whatever_is_in_vassals(cluster):
    pid = control_pid(cluster)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(cluster.vassals / "sock.ini"))
        reasons = odd_files(cluster.vassals)
        for name, reason in reasons.items():
            cluster.wait(lambda n=name: cluster.backend_state(n) == "failed", f"{name} failed", 30)
            assert reason in cluster.state()["backends"][name]["error"], (name, cluster.state()["backends"][name])
        paths = [cluster.vassals / f"{name}.ini" for name in reasons]

        def change_all(rounds: int) -> None:
            for _ in range(rounds):
                stamp = time.time_ns()
                for path in paths:  # a new mtime: the control plane reads each one again
                    os.utime(path, ns=(stamp, stamp), follow_symlinks=False)
                wait_passes(cluster, 2)

        change_all(5)  # warm-up: the first reads allocate what later ones reuse
        fds = min(open_fds(pid) for _ in range(5))
        memory = rss_kib(pid)
        change_all(40)
        cluster.wait(lambda: open_fds(pid) == fds, f"the control plane back to {fds} open fds", 10)
        grown = rss_kib(pid) - memory
        assert grown < 2048, f"the control plane's RSS grew by {grown} KiB over 40 changes"
        status = json.loads(cluster.fleet("status", "--json").stdout)["backends"]
        errors = {r["name"]: r["error"] for r in status}
        for name, reason in reasons.items():
            assert reason in errors[name], (name, errors[name])
        check = cluster.fleet("check", check=False, timeout=30)
        assert check.returncode == 1
        for name, reason in reasons.items():
            assert f"{name}.ini" in check.stdout and reason in check.stdout, check.stdout
        assert cluster.backends_answering(20) == {"backend-1", "backend-2"}


# ---- resource caps -------------------------------------------------------------------------------------


def test_greedy_huge_and_nul_files_are_failed_with_their_reason_while_the_others_serve(cluster, monkeypatch):
    cap = config.default_max_processes()
    files = {
        "greedy": (b"[uwsgi]\nprocesses = 100000\n", f"`processes = 100000` is above the limit of {cap} processes"),
        "threaded": (b"[uwsgi]\nthreads = 100000\n", "`threads = 100000` is above the limit of 64 threads"),
        "huge": (b"; padding\n" * (TEN_MB // 10), "file is over 65536 bytes"),
        "nul": (b"\0" * 4096, "only NUL bytes"),
    }
    with Load(cluster.url, clients=8) as load:
        load.wait_requests(100)
        for name, (content, _) in files.items():
            (cluster.vassals / f"{name}.ini").write_bytes(content)
        for name in files:
            cluster.wait(lambda n=name: cluster.backend_state(n) == "failed", f"{name} failed", 30)
        load.wait_requests(200)
    assert load.result.failures == [], load.result.summary()
    assert set(load.result.backends) == {"backend-1", "backend-2"}
    assert routed(cluster) == {"backend-1", "backend-2"}
    backends = cluster.state()["backends"]
    for name, (_, reason) in files.items():
        assert reason in backends[name]["error"], backends[name]
    assert "--max-processes" in backends["greedy"]["error"]
    # The launcher refuses it too, should the Emperor start it (tests/unit/test_fuzz_vassals.py).
    # `fleet check` gives the running control plane's verdict, whatever this shell's environment says;
    # a flag asks about another bound.
    monkeypatch.setenv("FLEET_MAX_PROCESSES", "100000")
    greedy = str(cluster.vassals / "greedy.ini")
    check = cluster.fleet("check", greedy, check=False)
    assert check.returncode == 1 and f"above the limit of {cap} processes" in check.stdout, check.stdout
    check = cluster.fleet("check", greedy, "--max-processes", "100000", check=False)
    assert check.returncode == 0, check.stdout
    added = cluster.fleet("add", "greedy-2", "--processes", "100000", check=False)
    assert added.returncode == 1 and f"above the limit of {cap} processes" in one_line(added.stderr)
    assert not (cluster.vassals / "greedy-2.ini").exists()
