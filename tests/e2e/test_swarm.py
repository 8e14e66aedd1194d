"""docker-stack.yml on a real single-node Docker Swarm: cells (each a whole fleet) behind the edge.

One stack for the module, from a copy of the tree; the tests run in file order: deploy, scale 1 -> 3,
a vassal file dropped in the host folder, a rolling update under load, a killed cell. The swarm is
initialised here if the engine is in none (`docker swarm init --advertise-addr 127.0.0.1`) and left
again at the end; a swarm found running is left running, with only this test's stack removed. The
numbers (time to join, requests during the update and the kill) are printed, not asserted on.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest

from harness.load import Load
from harness.ports import free_port
from harness.wait import wait_for
from tests.e2e.compose import copy_tree, docker_problem
from tests.e2e.swarm import DEPLOY_DEADLINE, EngineLock, Stack, Watcher, docker, started_at, swarm_state

pytestmark = pytest.mark.e2e

VASSAL = "[uwsgi]\nprocesses = 2\n"
CHANGE_DEADLINE = 90.0  # a scale, a rolling update of 3 cells or a replacement, on a busy 2-core machine


def cannot_run(problem: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the Swarm tests cannot run: {problem}")
    pytest.skip(problem)


@pytest.fixture(scope="module")
def swarm() -> Iterator[None]:
    """A swarm this engine manages: the one it is in, or one made here and left at the end."""
    problem = docker_problem()
    if problem:
        cannot_run(problem)
    with EngineLock():
        state, manager = swarm_state()
        if state == "active" and not manager:
            cannot_run("this engine is a Swarm worker: a stack is deployed from a manager")
        if state not in ("active", "inactive"):
            cannot_run(f"this engine's swarm is {state}; see `docker info`")
        initialised = state == "inactive"
        # `swarm init` creates this bridge and `swarm leave` keeps it: removed again if it was not there.
        had_gwbridge = bool(docker("network", "ls", "-q", "--filter", "name=^docker_gwbridge$"))
        if initialised:
            docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        try:
            yield
        finally:
            if initialised:
                docker("swarm", "leave", "--force")
                if not had_gwbridge:
                    docker("network", "rm", "docker_gwbridge", check=False)


@pytest.fixture(scope="module")
def swarm_stack(swarm: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack, deployed with one cell and answering through the edge; removed at the end."""
    base = tmp_path_factory.mktemp("swarm")
    root = copy_tree(base / "fleet")
    vassals = base / "vassals"
    vassals.mkdir()
    vassals.chmod(0o755)  # the cells run as an unprivileged user
    (vassals / "web.ini").write_text(VASSAL)
    name = f"fleetswarm{uuid.uuid4().hex[:8]}"
    stack = Stack(root, name, free_port(), vassals, tag=name)
    stack.build("cell", "edge")
    try:
        t0 = time.monotonic()
        stack.deploy()
        wait_for("a first 200 through the edge", stack.answer, DEPLOY_DEADLINE, 0.1, details=stack.logs)
        print(f"stack deploy to the first 200 through the edge: {time.monotonic() - t0:.1f}s")
        yield stack
    finally:
        t0 = time.monotonic()
        stack.remove()
        print(f"stack removed in {time.monotonic() - t0:.1f}s")
        stack.remove_images()


def three_answering(stack: Stack, watcher: Watcher, without: str = "") -> dict[str, str] | None:
    """The 3 running cells, once each has answered through the edge (and none is `without`)."""
    cells = stack.cell_containers()
    ok = len(cells) == 3 and without not in cells and set(cells) <= set(watcher.first)
    return cells if ok else None


def routed_hosts(stack: Stack) -> set[str]:
    state = stack.edge_state()
    return {c["host"] for c in state["cells"] if c["address"] in state["routed"]}


def test_deploy_runs_a_cell_behind_the_edge(swarm_stack: Stack):
    s = swarm_stack
    services = docker(
        "service", "ls", "--filter", f"label=com.docker.stack.namespace={s.name}", "--format", "{{.Name}} {{.Mode}}"
    )
    assert sorted(services.splitlines()) == [f"{s.name}_cell replicated", f"{s.name}_edge global"]
    body = s.answer()
    assert body and body["backend"] == "web"
    assert set(s.cell_containers()) == {body["host"]}
    assert routed_hosts(s) == {body["host"]}


def test_scale_from_1_to_3_and_every_cell_answers(swarm_stack: Stack):
    s = swarm_stack
    before = set(s.cell_containers())
    t0 = time.monotonic()
    with Watcher(s) as w:
        docker("service", "scale", "--detach", f"{s.name}_cell=3")
        cells = wait_for(
            "3 cells answering through the edge", lambda: three_answering(s, w), CHANGE_DEADLINE, 0.2, details=s.logs
        )
    print(f"\nscale 1 -> 3: every cell answering after {time.monotonic() - t0:.1f}s; answers by host: {w.first}")
    for host in sorted(set(cells) - before):
        print(
            f"  new cell {host}: in the edge's rotation {w.first[host] - started_at(cells[host]):.2f}s after its "
            f"container started"
        )
    assert len(set(cells)) == 3
    assert w.failures == []


def test_a_vassal_file_dropped_in_the_host_folder_is_served_by_every_cell(swarm_stack: Stack):
    s = swarm_stack
    cells = set(s.cell_containers())
    t0 = time.monotonic()
    with Watcher(s) as w:
        tmp = s.vassals / ".dropped.ini.tmp"
        tmp.write_text(VASSAL)
        os.replace(tmp, s.vassals / "dropped.ini")
        wait_for(
            "every cell serving the dropped vassal",
            lambda: all((host, "dropped") in w.pairs for host in cells),
            CHANGE_DEADLINE,
            0.1,
            details=lambda: f"seen: {sorted(w.pairs)}",
        )
    print(f"\nfile drop to every cell serving it: {time.monotonic() - t0:.2f}s")
    assert w.failures == []


def test_rolling_update_of_every_cell_under_load_fails_no_request(swarm_stack: Stack):
    s = swarm_stack
    old = set(s.cell_containers())
    workers = s.edge_nginx_workers()
    with Load(s.url, clients=3, keepalive=True) as kept, Load(s.url, clients=3) as fresh, Watcher(s) as w:
        kept.wait_requests(30)
        fresh.wait_requests(30)
        t0 = time.monotonic()
        docker("service", "update", "--force", "--detach=false", f"{s.name}_cell", timeout=CHANGE_DEADLINE * 3)
        took = time.monotonic() - t0

        def all_new() -> set[str] | None:
            cells = set(s.cell_containers())
            return cells if len(cells) == 3 and not cells & old and cells <= set(w.first) else None

        wait_for("3 new cells answering", all_new, CHANGE_DEADLINE, 0.2, details=s.logs)
        kept.wait_requests(30)
        fresh.wait_requests(30)
    print(f"\nrolling update of 3 cells (start-first): {took:.1f}s")
    print(f"  keep-alive clients:     {kept.result.summary()}")
    print(f"  new-connection clients: {fresh.result.summary()}")
    assert kept.result.failures == [], kept.result.summary()
    assert fresh.result.failures == [], fresh.result.summary()
    assert w.failures == []
    assert s.edge_nginx_workers() == workers, "the edge's nginx was reloaded"


def test_a_cell_told_to_stop_drains_before_it_stops(swarm_stack: Stack):
    """SIGTERM straight to a cell's container, not through Swarm (which takes a task out of tasks.cell
    first): the cell's health port says `draining`, the edge takes it out, and only then does its fleet
    stop, finishing what it was executing."""
    s = swarm_stack
    cells = s.cell_containers()
    victim_host, victim = sorted(cells.items())[-1]
    # 3 s requests: some are still running on the cell when its fleet begins to stop.
    slow = Load(s.url, clients=2, path="/slow?seconds=3")
    with Load(s.url, clients=2, keepalive=True) as kept, Load(s.url, clients=2) as fresh, slow, Watcher(s) as w:
        kept.wait_requests(20)
        slow.wait_requests(3)
        executing = s.busy(victim)
        signalled = time.time()
        docker("kill", "--signal", "TERM", victim)
        wait_for("the cell to stop", lambda: victim_host not in s.cell_containers(), CHANGE_DEADLINE, 0.2)
        stopped = time.time() - signalled
        wait_for("Swarm to start a new cell", lambda: three_answering(s, w, without=victim_host), CHANGE_DEADLINE, 0.2)
        kept.wait_requests(20)
        slow.wait_requests(3)
    edge_log = docker("service", "logs", f"{s.name}_edge", both=True)
    failed = kept.result.failures + fresh.result.failures + slow.result.failures + w.failures
    print(f"\nSIGTERM to cell {victim_host} executing {executing} request(s): stopped after {stopped:.1f}s")
    for label, load in (("keep-alive", kept), ("new connections", fresh), ("/slow 3 s", slow)):
        print(f"  {label}: {load.result.summary()}")
    assert f"({victim_host}): draining: leaves" in edge_log
    assert failed == [], failed[:5]


KILL_CLIENTS = 2  # client threads of each kind while a cell is killed


def test_a_killed_cell_leaves_the_edge_and_swarm_replaces_it_failing_at_most_a_request_per_client(swarm_stack: Stack):
    s = swarm_stack
    cells = s.cell_containers()
    n = KILL_CLIENTS
    slow = Load(s.url, clients=n, path="/slow?seconds=2")
    with Load(s.url, clients=n, keepalive=True) as kept, Load(s.url, clients=n) as fresh, slow, Watcher(s) as w:
        kept.wait_requests(20)
        slow.wait_requests(3)
        # The busiest cell: killing it has something to lose.
        executing, victim_host = max((s.busy(cid), host) for host, cid in cells.items())
        victim = cells[victim_host]
        killed = time.time()
        docker("kill", victim)
        wait_for("the edge to stop routing the killed cell", lambda: victim_host not in routed_hosts(s), 30, 0.1)
        out = time.time() - killed
        now = wait_for(
            "Swarm to replace the killed cell",
            lambda: three_answering(s, w, without=victim_host),
            CHANGE_DEADLINE,
            0.2,
            details=s.logs,
        )
        back = time.time() - killed
        (new_host,) = set(now) - set(cells)
        joined = w.first[new_host] - started_at(now[new_host])
        kept.wait_requests(20)
        slow.wait_requests(3)
    failed = kept.result.failures + fresh.result.failures + slow.result.failures + w.failures
    print(
        f"\nkilled cell {victim_host}: executing {executing} request(s); "
        f"out of the edge after {out:.2f}s; "
        f"replaced and answering after {back:.1f}s (in rotation {joined:.2f}s after its container started)"
    )
    for label, load in (("keep-alive", kept), ("new connections", fresh), ("/slow 2 s", slow)):
        print(f"  {label}: {load.result.summary()}")
    # A fixed bound: a client thread has one request in flight at a time, so at most one per thread can be
    # on the cell when it dies; the edge retries whatever it sends there afterwards on another cell
    # (proxy_next_upstream error timeout, 3 tries, 3 cells). The watcher is one more client thread.
    for label, failures, threads in (
        ("keep-alive", kept.result.failures, n),
        ("new connections", fresh.result.failures, n),
        ("/slow 2 s", slow.result.failures, n),
        ("watcher", w.failures, 1),
    ):
        assert len(failures) <= threads, f"{label}: {len(failures)} failed with {threads} client(s): {failures[:5]}"
    assert len(failed) <= 3 * n + 1, f"{len(failed)} failed, {executing} executing: {failed[:5]}"
