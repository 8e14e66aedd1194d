"""Starting and stopping the cluster's processes: each in its own session, stopped by process group."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """Start `argv` in a new session (so a terminal's Ctrl-C reaches only fleet), output to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot): with the pid, it names one process for sure.

    A pid alone does not: pids are reused, and a container's run/ volume outlives its pid namespace.
    """
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def is_same(pid: int, started: int | None) -> bool:
    """True if `pid` is alive and is the process that started at `started`."""
    return is_alive(pid) and (started is None or start_time(pid) == started)


def is_alive(pid: int) -> bool:
    """True if `pid` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def process_table() -> dict[int, list[str]]:
    """Every process: {pid: its /proc/PID/stat fields after the command name (state, ppid, pgrp...)}."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            table[int(entry)] = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
    return table


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid`."""
    return [pid for pid, fields in process_table().items() if int(fields[2]) == pgid and fields[0] not in ("Z", "X")]


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_gone(pid: int, timeout: float, whole_group: bool = True) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_alive(pid) and (not whole_group or not group_members(pid)):
            return True
        time.sleep(0.02)
    return False


def stop(pid: int, sig: int, timeout: float) -> bool:
    """Send `sig` to `pid`, wait for its whole process group to exit, then SIGKILL what is left.

    Returns True if it stopped gracefully (no SIGKILL was needed).
    """
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    if wait_gone(pid, timeout):
        return True
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_gone(pid, 5.0)
    return False
