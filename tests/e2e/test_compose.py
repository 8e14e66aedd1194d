"""docker-compose.yml on a real Docker engine: the same file operations and guarantees as `make run`.

The tests share one cluster (see conftest.py) and run in file order: a backend is added, reloaded,
removed, then the cluster is stopped and brought down.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from harness.load import Load
from harness.wait import wait_for
from tests.e2e.compose import ComposeCluster

pytestmark = pytest.mark.e2e

NEW = "e2e-added"  # the backend the tests add by copying a file on the host
CLIENTS = 8
FILE_OP_DEADLINE = 60.0


@contextmanager
def load_on(stack: ComposeCluster) -> Iterator[Load]:
    """CLIENTS threads, each sending `GET /` on a new connection, once they are answered, until the block ends."""
    with Load(stack.url, clients=CLIENTS) as load:
        wait_for("the load to get its first answers", lambda: load.ok >= 4 * CLIENTS, 30)
        yield load


def answer_from(stack: ComposeCluster, name: str, tries: int = 20) -> dict | None:
    """A `GET /` answer from backend `name`, trying a few requests (nginx spreads them), or None."""
    for _ in range(tries):
        body = stack.answer()
        if body and body.get("backend") == name:
            return body
    return None


def touch_in_a_later_second(path: Path, early: bool = False) -> float:
    """`touch path` in a later second than its mtime, as a person would; returns the new mtime.

    The Emperor compares mtimes in whole seconds, and the file system stamps them with a coarse clock
    that can lag time.time() by a few milliseconds at a second's boundary: check the result, not the
    clock. With `early`, the touch lands in the first fifth of a second (room for a second change).
    """
    before = int(path.stat().st_mtime)

    def touched() -> float | None:
        now = time.time()
        if int(now) <= before or (early and now % 1 > 0.2):
            return None
        os.utime(path)
        mtime = path.stat().st_mtime
        if early and mtime % 1 > 0.2:
            return None  # the coarse clock was still in the previous second: try in the next one
        return mtime if int(mtime) > before else None

    return wait_for("a touch in a later second than the file's mtime", touched, 3.0, 0.01)


def test_containers_are_healthy_unprivileged_and_only_the_gateway_is_published(stack: ComposeCluster) -> None:
    def healthy() -> bool:
        states = [stack.container(s)["State"].get("Health", {}).get("Status") for s in ("emperor", "gateway")]
        return states == ["healthy", "healthy"]

    wait_for("both containers to report healthy", healthy, 60)
    uids = set()
    for service in ("emperor", "gateway"):
        cid = stack.container(service)["Id"]
        top = subprocess.run(["docker", "top", cid, "-eo", "uid,pid,args"], capture_output=True, text=True)
        assert top.returncode == 0, top.stderr
        rows = [line.split(None, 2) for line in top.stdout.splitlines()[1:] if line.strip()]
        assert rows, f"no processes in {service}"
        root_procs = [row for row in rows if row[0] in ("0", "root")]
        assert not root_procs, f"{service} runs processes as root: {root_procs}"
        uids |= {row[0] for row in rows}
    assert len(uids) == 1, f"the two containers must share one uid (0660 sockets), got {uids}"

    gateway_ports = stack.container("gateway")["NetworkSettings"]["Ports"]
    assert gateway_ports == {
        "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(stack.port)}],
        "8081/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(stack.admin_port)}],
    }
    emperor_ports = stack.container("emperor")["NetworkSettings"]["Ports"] or {}
    assert not any(emperor_ports.values()), f"the emperor publishes {emperor_ports}"
    assert f"{stack.project}_run" in stack.leftovers()["volumes"]


def test_every_example_backend_answers(stack: ComposeCluster) -> None:
    expected = {path.stem for path in stack.vassals.glob("*.ini")}
    assert expected, "the repository ships example vassals"
    seen: dict[str, dict] = {}

    def all_seen() -> bool:
        body = stack.answer()
        if body:
            assert isinstance(body.get("pid"), int), body
            seen.setdefault(body["backend"], body)
        return set(seen) >= expected

    wait_for(f"answers from every example backend {sorted(expected)}", all_seen, FILE_OP_DEADLINE, 0)
    assert set(seen) == expected


def test_a_vassal_file_copied_on_the_host_is_served(stack: ComposeCluster) -> None:
    example = sorted(stack.vassals.glob("*.ini"))[0]
    t0 = time.monotonic()
    (stack.vassals / f"{NEW}.ini").write_bytes(example.read_bytes())
    body = wait_for(f"{NEW} to answer", lambda: answer_from(stack, NEW), FILE_OP_DEADLINE, 0)
    print(f"\nfile copied on the host to {NEW} answering: {time.monotonic() - t0:.2f}s")
    assert isinstance(body["pid"], int)


def test_touched_it_reloads_with_zero_failed_requests(stack: ComposeCluster) -> None:
    path = stack.vassals / f"{NEW}.ini"
    before = wait_for(f"{NEW} to answer", lambda: answer_from(stack, NEW), FILE_OP_DEADLINE, 0)
    with load_on(stack) as load:
        touch_in_a_later_second(path)
        touched = time.monotonic()

        def reloaded() -> float | None:
            for r in load.answered(touched):
                if r.backend == NEW and r.loaded_at > before["loaded_at"]:
                    return load.t0 + r.end
            return None

        first_new = wait_for(f"{NEW} to answer from a reloaded app", reloaded, FILE_OP_DEADLINE)
        # Keep the load on a while after the reload, so requests that queued during it are counted.
        wait_for("answers after the reload", lambda: len(load.answered(first_new)) >= 20 * CLIENTS, 30)
    print(f"\ntouch to reloaded answers: {first_new - touched:.2f}s, {len(load.records)} requests")
    failures = load.result.failures
    assert failures == [], f"{len(failures)} failed requests during a reload: {failures[:5]}"
    served = {r.backend for r in load.answered()}
    assert NEW in served and len(served) > 1, served


MARKER_APP = """from wsgi import BACKEND, application


@application.get("/e2e-marker")
def e2e_marker():
    return {"marker": BACKEND}
"""


def test_a_second_change_within_the_same_second_is_not_lost(stack: ComposeCluster) -> None:
    # The Emperor misses a change made in the same second as the one before (whole-second mtimes);
    # fleet must still apply it. Here the second change switches the vassal to another module.
    (stack.root / "app" / "e2e_marker.py").write_text(MARKER_APP)
    path = stack.vassals / f"{NEW}.ini"
    assert wait_for(f"{NEW} to answer", lambda: answer_from(stack, NEW), FILE_OP_DEADLINE, 0)
    first = touch_in_a_later_second(path, early=True)
    # Late in the same second: by then the Emperor, woken by the control plane, has seen the first
    # change (~0.2 s), so it cannot see this one.
    wait_for("the same second's last part", lambda: time.time() >= int(first) + 0.7, 1.0, 0.01)
    path.write_text(path.read_text() + "module = e2e_marker\n")
    second = path.stat().st_mtime
    assert int(first) == int(second), "both changes were meant to fall within one second"

    def marker_served() -> bool:
        try:
            resp = stack.get("/e2e-marker")
        except requests.RequestException:
            return False
        return resp.status_code == 200 and resp.json() == {"marker": NEW}

    wait_for(f"{NEW} to run the module of the second change", marker_served, FILE_OP_DEADLINE, 0.05)


def test_an_app_change_plus_touch_deploys_it(stack: ComposeCluster) -> None:
    wsgi = stack.root / "app" / "wsgi.py"
    wsgi.write_text(
        wsgi.read_text()
        + '\n\n@application.get("/e2e-deployed")\ndef e2e_deployed():\n    return {"deployed": BACKEND}\n'
    )
    touch_in_a_later_second(stack.vassals / f"{NEW}.ini")

    def deployed() -> bool:
        try:
            resp = stack.get("/e2e-deployed")
        except requests.RequestException:
            return False
        return resp.status_code == 200 and resp.json() == {"deployed": NEW}

    wait_for("the changed app to answer after a touch", deployed, FILE_OP_DEADLINE, 0.05)


def test_removed_it_stops_being_served(stack: ComposeCluster) -> None:
    path = stack.vassals / f"{NEW}.ini"
    assert wait_for(f"{NEW} to answer", lambda: answer_from(stack, NEW), FILE_OP_DEADLINE, 0)
    with load_on(stack) as load:
        path.unlink()
        removed = time.monotonic()

        def gone() -> bool:
            after = load.answered(removed)
            last_new = max((i for i, r in enumerate(after) if r.backend == NEW), default=-1)
            return len(after) - last_new > 30 * CLIENTS  # a long run of answers, none from NEW

        wait_for(f"{NEW} to stop answering", gone, FILE_OP_DEADLINE)
    print(f"\nrm to no longer served: {time.monotonic() - removed:.2f}s (upper bound)")
    failures = load.result.failures
    assert failures == [], f"{len(failures)} failed requests during a removal: {failures[:5]}"
    assert not any(answer_from(stack, NEW, tries=1) for _ in range(20))


def test_it_comes_back_after_its_containers_were_killed(stack: ComposeCluster) -> None:
    # A crash, an OOM kill or a host reboot leaves run/ (a volume) as it was; new containers start
    # with fresh PID namespaces, where the pids recorded there may belong to anything.
    stack.compose("kill")
    t0 = time.monotonic()
    stack.compose("up", "--detach", "--no-build", timeout=180)
    wait_for("a first 200 after kill and up", stack.first_answer, 120)
    print(f"\nkill, then up to the first 200: {time.monotonic() - t0:.1f}s")
    expected = {path.stem for path in stack.vassals.glob("*.ini")}
    seen: set[str] = set()

    def all_seen() -> bool:
        body = stack.answer()
        if body:
            seen.add(body["backend"])
        return seen >= expected

    wait_for(f"answers from every backend {sorted(expected)}", all_seen, FILE_OP_DEADLINE, 0)


def test_stop_is_graceful(stack: ComposeCluster) -> None:
    def every_backend_routed() -> bool:
        """The tests before this one restart containers and backends: start from a cluster routing all of them
        (a slow request sent while nothing is routed gets the JSON 503 at once, and tests nothing)."""
        try:
            overview = requests.get(f"http://127.0.0.1:{stack.admin_port}/api/overview", timeout=5).json()
            backends = overview["backends"]
            return bool(backends) and all(b["state"] == "healthy" for b in backends) and stack.get("/").ok
        except (requests.RequestException, ValueError, KeyError):
            return False

    wait_for("every backend healthy and routed", every_backend_routed, 60, 0.2, details=lambda: stack.logs_tail(40))
    result: dict[str, object] = {}
    sent = time.monotonic()

    def slow_request() -> None:
        try:
            result["response"] = stack.get("/slow?seconds=8", timeout=60)  # long enough to be seen busy under load
        except requests.RequestException as exc:
            result["error"] = exc
        result["after"] = time.monotonic() - sent

    busy_since: list[float] = []

    def busy() -> bool:
        """A worker is executing a request, as the control plane's status page sees it (read every second):
        in two reads in a row, so a health probe caught in flight does not count."""
        if "after" in result:
            raise AssertionError(f"the slow request ended before a worker was seen busy with it: {ended()}")
        try:
            overview = requests.get(f"http://127.0.0.1:{stack.admin_port}/api/overview", timeout=5).json()
        except (requests.RequestException, ValueError):
            return False
        if sum(b["busy"] for b in overview["backends"]) == 0:
            busy_since.clear()
            return False
        busy_since.append(time.monotonic())
        return busy_since[-1] - busy_since[0] > 1.1

    def ended() -> str:
        resp = result.get("response")
        what = f"{resp.status_code} {resp.text[:300]}" if isinstance(resp, requests.Response) else result.get("error")
        return f"after {result['after']:.1f} s: {what}"

    client = threading.Thread(target=slow_request)
    client.start()
    wait_for("the slow request to reach a worker", busy, 30, 0.1, details=lambda: stack.logs_tail(40))
    t0 = time.monotonic()
    stack.compose("stop", "--timeout", "30", timeout=120)
    stopped_in = time.monotonic() - t0
    client.join(timeout=60)
    print(f"\ncompose stop with a request in flight: {stopped_in:.1f}s")
    assert "error" not in result, f"the in-flight request failed: {ended()}"
    assert result["response"].status_code == 200, ended()
    for service in ("gateway", "emperor"):
        state = stack.container(service)["State"]
        assert state["Status"] == "exited", state
        assert state["ExitCode"] == 0, f"{service} exited {state['ExitCode']} (137: killed at the deadline)"
    assert stopped_in < 30, "a stop that takes the whole grace period ended in SIGKILL"


def test_a_dead_control_plane_is_restarted_inside_and_a_dead_container_by_the_engine(stack: ComposeCluster) -> None:
    def in_gateway(pattern: str, kill: bool) -> list[int]:
        """The gateway's processes whose command line has `pattern` (SIGKILLed if `kill`): no procps there."""
        script = (
            "import os, sys\n"
            "pids = [int(p) for p in os.listdir('/proc') if p.isdigit() and p != str(os.getpid())\n"
            "        and sys.argv[1].encode() in open(f'/proc/{p}/cmdline', 'rb').read().replace(b'\\0', b' ')]\n"
            "[os.kill(p, 9) for p in pids if sys.argv[2] == 'kill']\n"
            "print(*pids)\n"
        )
        cid = stack.container("gateway")["Id"]
        argv = ["docker", "exec", cid, "python3", "-c", script, pattern, "kill" if kill else "list"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return [int(p) for p in out.stdout.split()]

    # After the graceful-stop test: start the stopped containers again (the engine's restarts last).
    stack.compose("up", "--detach", "--no-build", timeout=180)
    wait_for("a first 200 after up", stack.first_answer, 120)
    # The control plane dies: the gateway's supervisor starts it again; the cluster keeps serving.
    killed = in_gateway("control-plane", kill=True)
    assert killed
    wait_for("the control plane back", lambda: set(in_gateway("control-plane", kill=False)) - set(killed), 30)
    wait_for("a 200 meanwhile", stack.first_answer, 30)
    # The container's fleet process itself dies: the engine restarts the container (restart: unless-stopped).
    restarts = stack.container("gateway")["RestartCount"]
    assert in_gateway("/srv/fleet up", kill=True)
    wait_for("the gateway restarted", lambda: stack.container("gateway")["RestartCount"] > restarts, 60)
    wait_for("a first 200 after the restart", stack.first_answer, 120)


def test_down_leaves_nothing_behind(stack: ComposeCluster) -> None:
    stack.down()
    left = stack.leftovers()
    assert left == {"containers": [], "networks": [], "volumes": []}, left
