"""The supervisor's socket holder: binds a vassal's socket once, hands copies to its launchers, keeps it
while the vassal's file exists or its vassal runs, and removes it after both are gone."""

from __future__ import annotations

import select
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleet.layout import Layout
from fleet.ops.sockets import SocketHolder, valid_name
from harness.wait import wait_for

# A stand-in for the launcher that became uwsgi: it receives the socket, says which inode it got, and
# lives (holding its copy) until its stdin closes.
LAUNCHER = """
import os, socket, sys
c = socket.socket(socket.AF_UNIX); c.connect(sys.argv[1]); c.sendall(sys.argv[2].encode())
answer, fds, _, _ = socket.recv_fds(c, 64, 1)
print(os.fstat(fds[0]).st_ino if fds else answer.decode(), flush=True)
sys.stdin.read()
"""


def refused_within(client: socket.socket, seconds: float) -> bool:
    """Whether the holder refuses (closes or resets) the queued `client` within `seconds`: it never
    writes, so the socket turns readable only then."""
    readable, _, _ = select.select([client], [], [], seconds)
    return bool(readable)


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path)
    layout.make_run_dirs()
    layout.vassals.mkdir()
    return layout


@pytest.fixture
def holder(layout: Layout) -> Iterator[SocketHolder]:
    holder = SocketHolder(layout)
    holder.start()
    yield holder
    holder.close()


@pytest.fixture
def launch(layout: Layout) -> Iterator[Callable[[str], tuple[subprocess.Popen, str]]]:
    started: list[subprocess.Popen] = []

    def launch(name: str) -> tuple[subprocess.Popen, str]:
        argv = [sys.executable, "-c", LAUNCHER, str(layout.socket_holder), name]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout is not None
        return proc, proc.stdout.readline().strip()

    yield launch
    for proc in started:
        proc.kill()
        proc.wait()


def test_every_launcher_of_a_vassal_gets_the_same_listening_socket(layout, holder, launch):
    (layout.vassal_file("a")).write_text("[uwsgi]\n")
    first, inode = launch("a")
    again, same = launch("a")
    path = layout.socket("a")
    assert inode == same and stat.S_ISSOCK(path.stat().st_mode) and stat.S_IMODE(path.stat().st_mode) == 0o660
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(path))  # listening (in the holder's backlog) even with no vassal accepting


def test_queued_connections_survive_the_vassal_that_held_a_copy(layout, holder, launch):
    layout.vassal_file("a").write_text("[uwsgi]\n")
    proc, inode = launch("a")
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(layout.socket("a")))
        proc.kill()  # the crash: the Emperor would start another launcher
        proc.wait()
        _, again = launch("a")
        assert again == inode and layout.socket("a").exists()
        held = holder.socket_for("a")  # as the respawned workers would: what waited is still there
        held.settimeout(2)
        accepted, _ = held.accept()
        accepted.close()


def test_a_removed_vassals_socket_goes_only_once_its_vassal_is_gone(layout, holder, launch):
    layout.vassal_file("a").write_text("[uwsgi]\n")
    proc, _ = launch("a")
    layout.vassal_file("a").unlink()
    with holder.lock:
        assert holder.sweep() == []  # nothing goes while the vassal drains
    assert layout.socket("a").exists()
    assert proc.stdin is not None
    proc.stdin.close()  # the vassal finished draining and exited
    proc.wait()
    wait_for("the socket removed after its vassal", lambda: not layout.socket("a").exists(), 5)
    assert "a" not in holder.held


def test_a_crashed_vassal_keeps_its_socket_while_its_file_exists(layout, holder, launch):
    layout.vassal_file("a").write_text("[uwsgi]\n")
    proc, _ = launch("a")
    proc.kill()
    proc.wait()
    wait_for("the vassal's exit noticed", lambda: holder.held["a"].pidfd is None, 5)
    with holder.lock:
        assert holder.sweep() == []
    assert layout.socket("a").exists()


def test_no_socket_for_a_name_without_a_vassal_file(layout, holder, launch):
    for name in ("missing", "../escape", ".hidden"):
        _, answer = launch(name)
        assert answer == "no such vassal"
    assert list(layout.sockets.iterdir()) == []
    assert not valid_name("") and not valid_name("a/b") and valid_name("backend-1")


def test_close_removes_every_socket_and_the_control_socket(layout, launch):
    holder = SocketHolder(layout)
    holder.start()
    layout.vassal_file("a").write_text("[uwsgi]\n")
    launch("a")
    holder.close()
    assert not layout.socket("a").exists() and not layout.socket_holder.exists()


def test_a_socket_without_a_vassal_for_the_grace_refuses_what_waits_and_stops_once_a_vassal_takes_it(layout, launch):
    holder = SocketHolder(layout, grace=0.3)
    holder.start()
    try:
        layout.vassal_file("a").write_text("[uwsgi]\n")
        proc, _ = launch("a")
        proc.kill()  # a vassal that will not come back (say, a start the Emperor throttles)
        proc.wait()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(layout.socket("a")))  # queued: connect() succeeds into the backlog
            client.sendall(b"GET / (as nginx sends a request)")
            client.settimeout(5)
            started = time.monotonic()
            try:
                assert client.recv(10) == b""  # closed unread: a reset or an end of file, not a wait
            except ConnectionResetError:
                pass
            assert time.monotonic() - started < 3
        again, _ = launch("a")  # a vassal takes it again: what arrives now waits for it
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(layout.socket("a")))
            client.setblocking(False)
            wait_for("refusing ends", lambda: not holder.held["a"].refusing, 5)
            # Well past the grace: still queued, not refused.
            assert not refused_within(client, 0.5), "a queued connection was refused while a vassal held the socket"
    finally:
        holder.close()


def test_a_socket_whose_vassal_runs_never_refuses_what_waits(layout, launch):
    holder = SocketHolder(layout, grace=0.1)
    holder.start()
    try:
        layout.vassal_file("a").write_text("[uwsgi]\n")
        launch("a")
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(layout.socket("a")))
            client.setblocking(False)
            # Five graces: the vassal (busy, or slow to start) still has it.
            assert not refused_within(client, 0.5), "refused while its vassal runs"
    finally:
        holder.close()
