"""fleet.ops.supervisor: the restart backoff, the set-up a detached supervisor reads, waiting on the parts'
exits instead of polling, and stopping in order (with `sh -c` and `sleep` for parts)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from fleet import processes
from fleet.layout import Layout
from fleet.ops.supervisor import (
    BACKOFF_FIRST,
    BACKOFF_MAX,
    QUEUE_AT_MOST,
    STOP_ORDER,
    PartSpec,
    Supervisor,
    SupervisorSpec,
    backoff,
    kind,
    stop_in_order,
)
from harness.ports import free_port
from harness.wait import wait_for


def test_backoff_starts_small_doubles_and_is_capped():
    delays = [backoff(n) for n in range(1, 12)]
    assert delays[0] == BACKOFF_FIRST and delays[1] == 2 * BACKOFF_FIRST and delays[2] == 4 * BACKOFF_FIRST
    assert all(a <= b for a, b in zip(delays, delays[1:], strict=False))
    assert delays[-1] == BACKOFF_MAX


def test_a_supervisor_spec_survives_the_round_trip_through_its_file(tmp_path):
    setup = SupervisorSpec(
        "gateway",
        [PartSpec("nginx", ["nginx", "-g", "daemon off;"], signal.SIGQUIT, 30.0, [("127.0.0.1", 8080)])],
        {"FLEET_HARAKIRI": "62"},
        8080,
        "127.0.0.1",
    )
    setup.write(tmp_path / "spec.json")
    assert SupervisorSpec.read(tmp_path / "spec.json") == setup


@pytest.fixture
def supervisor(tmp_path):
    """A supervisor of one part, `control`, that runs for 0.3 s; stopped at the end of the test."""
    layout = Layout(tmp_path)
    layout.make_run_dirs()
    part = PartSpec("control", ["sh", "-c", "sleep 0.3"], signal.SIGTERM, 5.0)
    sup = Supervisor(layout, SupervisorSpec("all", [part], dict(os.environ), 8080, "127.0.0.1"))
    yield sup
    sup.stop()


def test_wait_returns_when_a_part_exits_not_at_a_polling_period(supervisor):
    supervisor.start()
    began = time.monotonic()
    supervisor.wait(at_most=30)
    assert time.monotonic() - began < 5, "the exit did not wake the wait"
    assert supervisor.procs["control"].poll() == 0
    assert supervisor.check() == [
        f"control (pid {supervisor.procs['control'].pid}) exited with status 0; restarting in 0.2 s"
    ]


def test_wait_without_a_limit_returns_when_the_restart_is_due(supervisor):
    supervisor.start()
    supervisor.wait(at_most=30)
    supervisor.check()
    began = time.monotonic()
    supervisor.wait()  # no limit: only the backoff's deadline (or an exit) ends it
    waited = time.monotonic() - began
    # The restart was due BACKOFF_FIRST after the part died, which was before `began` (by as much as the
    # machine's load makes it): the check below restarting it is what proves the wait did not end early.
    assert waited < 5
    assert supervisor.check() == [f"control started again (pid {supervisor.procs['control'].pid})"]
    assert supervisor.restarts == 1


def test_wait_with_nothing_happening_lasts_at_most_its_limit(tmp_path):
    layout = Layout(tmp_path)
    layout.make_run_dirs()
    part = PartSpec("control", ["sleep", "30"], signal.SIGTERM, 5.0)
    sup = Supervisor(layout, SupervisorSpec("all", [part], dict(os.environ), 8080, "127.0.0.1"))
    sup.start()
    try:
        began = time.monotonic()
        sup.wait(at_most=0.1)
        assert 0.09 <= time.monotonic() - began < 5
        assert sup.check() == []
    finally:
        sup.stop()


def test_stop_in_order_stops_control_then_nginx_then_the_emperor(tmp_path):
    procs = {
        name: processes.spawn(["sleep", "30"], tmp_path / f"{name}.log") for name in ("emperor", "nginx", "control")
    }
    said: list[str] = []
    try:
        stop_in_order({n: p.pid for n, p in procs.items()}, said.append, {n: (signal.SIGTERM, 5.0) for n in procs})
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
            p.wait()
    assert said == [f"fleet: stopping {n} (pid {procs[n].pid})..." for n in STOP_ORDER]
    assert not any(processes.is_alive(p.pid) for p in procs.values())


def test_stop_in_order_says_when_it_had_to_kill(tmp_path):
    # SIGTERM ignored from before exec (an ignored signal stays ignored across it): no race with the stop.
    stubborn = subprocess.Popen(
        ["sleep", "30"], start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN)
    )
    said: list[str] = []
    try:
        stop_in_order({"nginx": stubborn.pid}, said.append, {"nginx": (signal.SIGTERM, 0.3)})
        gone = not processes.is_alive(stubborn.pid)  # reaped by the stop (Popen sees no status then)
    finally:
        if stubborn.poll() is None:
            stubborn.kill()
        stubborn.wait()
    assert said == [f"fleet: stopping nginx (pid {stubborn.pid})...", "fleet: nginx did not stop within 0 s; killed it"]
    assert gone


def test_every_emperor_is_stopped_after_nginx_with_the_emperors_signal_and_timeout(tmp_path):
    names = ("emperor-2", "control", "emperor-1", "nginx")
    procs = {name: processes.spawn(["sleep", "30"], tmp_path / f"{name}.log") for name in names}
    said: list[str] = []
    try:
        # By kind: `how` names `emperor` only, as `fleet down`'s STOPPING does.
        how = {"control": (signal.SIGTERM, 5.0), "nginx": (signal.SIGTERM, 5.0), "emperor": (signal.SIGTERM, 5.0)}
        stop_in_order({n: p.pid for n, p in procs.items()}, said.append, how)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
            p.wait()
    order = ("control", "nginx", "emperor-1", "emperor-2")
    assert said == [f"fleet: stopping {n} (pid {procs[n].pid})..." for n in order]
    assert not any(processes.is_alive(p.pid) for p in procs.values())


def test_an_emperor_of_several_is_of_the_emperor_kind():
    assert [kind(n) for n in ("emperor", "emperor-3", "nginx", "control")] == ["emperor", "emperor", "nginx", "control"]


def test_several_emperors_stop_together_so_down_takes_the_longest_not_the_sum(tmp_path):
    # Each has a vassal that takes 2 s to stop after the SIGTERM its Emperor passes on (as one finishing its
    # requests would) and says when its handler is in place; the Emperor itself is done once it is.
    vassal = (
        "import signal, sys, time, pathlib; "
        "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(2), sys.exit(0))); "
        "pathlib.Path(sys.argv[1]).touch(); time.sleep(60)"
    )
    code = (
        "import signal, subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', {vassal!r}, sys.argv[1]])\n"
        "signal.signal(signal.SIGTERM, lambda *_: child.terminate())\n"
        "time.sleep(60)\n"
    )
    names = ("emperor-1", "emperor-2")
    procs = {n: processes.spawn([sys.executable, "-c", code, str(tmp_path / n)], tmp_path / f"{n}.log") for n in names}
    try:
        wait_for("both ready", lambda: all((tmp_path / n).exists() for n in names), 20)
        started = time.monotonic()
        stop_in_order({n: p.pid for n, p in procs.items()}, how={"emperor": (signal.SIGTERM, 10.0)})
        took = time.monotonic() - started
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
            p.wait()
    assert not any(processes.is_alive(p.pid) for p in procs.values())
    assert 2.0 <= took < 3.9, took  # one after the other would take 4 s at least


def test_a_part_with_listeners_inherits_them_non_blocking_and_stop_frees_them(tmp_path):
    layout = Layout(tmp_path)
    layout.make_run_dirs()
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    # The part prints what it got: the NGINX variable, the address of the socket under that number, and
    # whether it blocks (nginx does not make an inherited socket non-blocking: a blocking one hangs workers).
    show = "import os, socket; fd = int(os.environ['NGINX'].rstrip(';'))\n"
    show += "blocking = os.get_blocking(fd)\nprint(fd, socket.socket(fileno=fd).getsockname(), blocking)"
    part = PartSpec("nginx", [sys.executable, "-c", show], signal.SIGQUIT, 5.0, [("127.0.0.1", port)])
    sup = Supervisor(layout, SupervisorSpec("all", [part], dict(os.environ), port, "127.0.0.1"))
    try:
        sup.start()
        fd = sup.listeners["nginx"][0].fileno()
        with pytest.raises(OSError):
            processes.bind_listeners([("127.0.0.1", port)])  # the supervisor holds it
        assert sup.procs["nginx"].wait(timeout=30) == 0
    finally:
        sup.stop()
    assert layout.log("nginx").read_text().split("\n")[0] == f"{fd} ('127.0.0.1', {port}) False"
    for sock in processes.bind_listeners([("127.0.0.1", port)]):  # free once the supervisor stopped
        sock.close()


def test_a_crash_looping_part_s_listener_resets_who_connects_during_a_long_backoff_instead_of_keeping_them(tmp_path):
    layout = Layout(tmp_path)
    layout.make_run_dirs()
    port = free_port()
    # A part that dies at once, every time: restarted at once, then after 0.4 s, 0.8 s, 1.6 s, 3.2 s...
    part = PartSpec("nginx", [sys.executable, "-c", "raise SystemExit(1)"], signal.SIGQUIT, 5.0, [("127.0.0.1", port)])
    sup = Supervisor(layout, SupervisorSpec("all", [part], dict(os.environ), port, "127.0.0.1"))
    client = None
    try:
        sup.start()

        def backing_off() -> bool:
            sup.wait(0.05)
            sup.check()
            return any(at - sup.clock() > QUEUE_AT_MOST + 0.5 for at in sup.restart_at.values())

        wait_for("the part in a backoff longer than a connection may wait", backing_off, 30)
        client = socket.create_connection(("127.0.0.1", port), timeout=5)  # queued: the supervisor holds it
        client.settimeout(0.05)

        def reset() -> bool:
            sup.wait(0.05)
            sup.check()
            try:
                return client.recv(1) == b""
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True

        wait_for("the queued connection reset", reset, 5)
    finally:
        if client is not None:
            client.close()
        sup.stop()


def test_stopping_a_zombie_leader_signals_what_is_left_of_its_group(tmp_path):
    # As after the supervisor and nginx's master were both killed -9: the master is a zombie nobody reaps
    # (here: this test, its parent, does not wait for it) and its worker lives on in its group.
    code = "import subprocess, sys; subprocess.Popen(['sleep', '60']); print('ready', flush=True)"
    leader = processes.spawn([sys.executable, "-c", code], tmp_path / "leader.log")
    wait_for("the leader gone, its child left", lambda: "ready" in (tmp_path / "leader.log").read_text(), 20)
    wait_for("the leader a zombie", lambda: not processes.is_alive(leader.pid), 20)
    left = processes.group_members(leader.pid)
    assert left, "the child should outlive its leader"
    started = time.monotonic()
    try:
        assert processes.stop(leader.pid, signal.SIGTERM, 10.0), "stopped by SIGKILL after the timeout"
    finally:
        leader.wait()
    assert time.monotonic() - started < 5.0
    assert not processes.group_members(leader.pid)


def test_a_leader_last_is_killed_once_its_group_is_done_instead_of_waited_for(tmp_path):
    # As an Emperor: SIGTERM makes it stop its children (here: one that ends within a second), but it
    # would only notice at its next tick (here: never; it ignores SIGTERM itself).
    code = (
        "import signal, subprocess, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen(['sleep', '1'])\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    leader = processes.spawn([sys.executable, "-c", code], tmp_path / "leader.log")
    try:
        wait_for("the leader and its child up", lambda: "ready" in (tmp_path / "leader.log").read_text(), 20)
        started = time.monotonic()
        assert processes.stop(leader.pid, signal.SIGTERM, 20.0, leader_last=True)
        took = time.monotonic() - started
    finally:
        if leader.poll() is None:
            leader.kill()
        leader.wait()
    assert took < 5.0, took  # not the 20 s timeout: gone once its child was
    assert not processes.group_members(leader.pid)
