"""Process tools: start processes each in its own session, stop them by process group, find a process's
descendants, SIGKILL a list of pids. Process table and group members come from fleet.processes.

Every process started through a `Procs` registry is stopped when the registry closes, also on error
and on SIGTERM/SIGINT of the benchmark itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from fleet.processes import group_members, is_alive, process_table
from harness.wait import WaitTimeout, wait_for


def stop_group(group: int | subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Signal a process group (its id, or the Popen of its leader), wait up to `timeout` for all of it to
    exit, then SIGKILL what is left; a Popen is reaped, so its returncode is set."""
    pgid = group if isinstance(group, int) else group.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
    with contextlib.suppress(WaitTimeout):
        wait_for(f"process group {pgid} to exit", lambda: not _group_alive(pgid), timeout, 0.05, ignore=(OSError,))
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    if isinstance(group, subprocess.Popen):
        group.wait(5)


def _group_alive(pgid: int) -> bool:
    """A process of the group still runs (zombies of our own children awaiting reaping do not count)."""
    return bool(group_members(pgid))


class Proc:
    """One started process (leader of its own session), with its log file and stop signal."""

    def __init__(self, popen: subprocess.Popen, name: str, log: Path, stop_signal: int) -> None:
        self.popen = popen
        self.name = name
        self.log = log
        self.stop_signal = stop_signal

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None or _group_alive(self.popen.pid):
            stop_group(self.popen.pid, self.stop_signal, timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=1)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Procs:
    """A registry of started processes and cleanups, undone in reverse order on close."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def start(
        self,
        argv: Sequence[str],
        name: str,
        log: Path,
        stop_signal: int = signal.SIGTERM,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Proc:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        proc = Proc(popen, name, log, stop_signal)
        self._undo.append(proc.stop)
        return proc

    def on_close(self, cleanup: Callable[[], None]) -> None:
        """Run `cleanup` on close, before undoing what was registered earlier."""
        self._undo.append(cleanup)

    def close(self) -> None:
        while self._undo:
            with contextlib.suppress(Exception):
                self._undo.pop()()

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run(argv: Sequence[str], timeout: float = 120.0, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a command to completion in its own session; its output is captured."""
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc."""
    return [child for child, fields in process_table().items() if int(fields[1]) == pid]


def descendants(pid: int) -> list[int]:
    """All descendants of `pid` (not including it)."""
    parents: dict[int, list[int]] = {}
    for child, fields in process_table().items():
        parents.setdefault(int(fields[1]), []).append(child)
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill(pids: list[int]) -> None:
    """SIGKILL each of `pids` that still runs."""
    for pid in pids:
        if is_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
