"""Starting and stopping the cluster's processes: each in its own session, stopped by process group."""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def spawn(
    argv: list[str],
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    pass_fds: tuple[int, ...] = (),
) -> subprocess.Popen:
    """Start `argv` in a new session (so a terminal's Ctrl-C reaches only fleet), output to `log`; the
    descriptors `pass_fds` are inherited under the same numbers (every other one is closed in the child)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=cwd,
            pass_fds=pass_fds,
        )


def refuse_pending(listener: socket.socket) -> int:
    """Accept what waits on a non-blocking `listener` and reset it at once (SO_LINGER 0: the client sees a
    reset, not a clean close it might mistake for an empty answer). Returns how many."""
    count = 0
    while True:
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return count
        except OSError:  # ECONNABORTED and the like: that one is gone already; so may be the rest
            return count
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        count += 1


LISTEN_BACKLOG = 511  # nginx's own default on Linux: it keeps this queue when it inherits the socket


def bind_listeners(addresses: list[tuple[str, int]]) -> list[socket.socket]:
    """Listening TCP sockets at `addresses` ((host, port); "::" style hosts are IPv6), for a server
    started with them inherited. Every address is bound before any listens: a wildcard and a specific
    address on one port can be bound side by side (SO_REUSEADDR) only while neither listens yet.
    No SO_REUSEPORT: nobody else may bind the port while fleet holds it. Raises OSError."""
    sockets: list[socket.socket] = []
    try:
        for host, port in addresses:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as nginx's `listen [::]`
            sock.bind((host, port))
            # nginx makes the sockets it opens non-blocking, but not those it inherits: on a blocking one, a
            # worker woken with another (EPOLLEXCLUSIVE may wake several) waits in accept() for the next
            # connection, and every connection it already serves hangs meanwhile.
            sock.setblocking(False)
        for sock in sockets:
            sock.listen(LISTEN_BACKLOG)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot): with the pid, it names one process for sure.

    A pid alone does not: pids are reused, and a container's run/ volume outlives its pid namespace.
    """
    fields = stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (ValueError, IndexError):
        return None


def is_same(pid: int, started: int | None) -> bool:
    """True if `pid` is alive and is the process that started at `started`."""
    return is_alive(pid) and (started is None or start_time(pid) == started)


def is_alive(pid: int) -> bool:
    """True if `pid` runs (a zombie waiting to be reaped counts as gone)."""
    fields = stat_fields(pid)
    return fields is not None and len(fields) > 0 and fields[0] not in ("Z", "X")


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (state, ppid, pgrp, ...; utime is [11]), None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cmdline(pid: int) -> str:
    """The command line (or the title a process set for itself), arguments joined by spaces; "" if gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")


def pid_namespace() -> str:
    """This process's pid namespace: pids recorded in another one (another container) mean nothing here."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def process_table() -> dict[int, list[str]]:
    """Every process: {pid: its /proc/PID/stat fields after the command name (state, ppid, pgrp...)}."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = stat_fields(int(entry))
        if fields is not None:
            table[int(entry)] = fields
    return table


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid`."""
    return [pid for pid, fields in process_table().items() if int(fields[2]) == pgid and fields[0] not in ("Z", "X")]


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_gone(pid: int, timeout: float, whole_group: bool = True, leader_last: bool = False) -> bool:
    """Until `pid` (and, `whole_group`, its process group) is gone, or `timeout` s. `leader_last`: once the
    leader is alone in its group it has nothing left to wait for, and is killed (True: that counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        alive = is_alive(pid)
        if not alive and (not whole_group or not group_members(pid)):
            return True
        if alive and leader_last and group_members(pid) == [pid]:
            _kill_group(pid)
            return True
        time.sleep(0.02)
    return False


def stop(pid: int, sig: int, timeout: float, leader_last: bool = False) -> bool:
    """Send `sig` to `pid`, wait for its whole process group to exit, then SIGKILL what is left.
    `leader_last`: the leader is done once the rest of its group is (a uWSGI Emperor whose vassals have
    exited only waits for its next one-second tick to notice and say so): it is killed then.

    Returns True if it stopped gracefully (no SIGKILL was needed but, `leader_last`, the leader's own).
    """
    if not is_alive(pid):
        # The leader is gone (killed -9?), or a zombie nobody reaps (its parent died too), but its group may
        # live on, e.g. nginx's orphaned workers: they get the signal themselves.
        return stop_group(pid, sig, timeout)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return stop_group(pid, sig, timeout)
    if wait_gone(pid, timeout, leader_last=leader_last):
        return True
    _kill_group(pid)
    return False


def stop_group(pgid: int, sig: int, timeout: float) -> bool:
    """Send `sig` to every process of group `pgid`, wait for them to exit, then SIGKILL what is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return True
    if wait_gone(pgid, timeout):
        return True
    _kill_group(pgid)
    return False


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_gone(pgid, 5.0)


class ChildExits:
    """A wait that ends when a child of this process exits or a signal with a Python handler arrives.

    signal.set_wakeup_fd makes the C-level handler write a byte to a socket for every such signal, SIGCHLD
    included (it gets a handler that does nothing). A signal that arrives before the wait, even between
    a check and the wait, leaves its byte behind: the wait then returns at once, so no exit is missed.
    Main thread only (where Python runs signal handlers).
    """

    def __init__(self) -> None:
        self.reader, self.writer = socket.socketpair()
        for end in (self.reader, self.writer):
            end.setblocking(False)
        self.previous_fd = signal.set_wakeup_fd(self.writer.fileno(), warn_on_full_buffer=False)
        self.previous_handler = signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)

    def wait(self, timeout: float | None, watch: Sequence[socket.socket] = ()) -> list[socket.socket]:
        """Block until a child exits, a signal arrives, one of the `watch` sockets is readable, or `timeout`
        seconds pass (None: no limit). Returns the readable sockets of `watch`."""
        readable, _, _ = select.select([self.reader, *watch], [], [], timeout)
        try:
            while self.reader.recv(4096):
                pass
        except BlockingIOError:
            pass
        return [sock for sock in readable if sock is not self.reader]

    def close(self) -> None:
        signal.signal(signal.SIGCHLD, self.previous_handler)
        signal.set_wakeup_fd(self.previous_fd)
        self.reader.close()
        self.writer.close()
