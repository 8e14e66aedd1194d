"""One cluster per folder: `fleet up` locks each part it runs (run/up-PART.lock) for the cluster's life.

The lock is an flock(2) on the file, so it dies with its holder: a crashed cluster leaves no stale
lock. The file's content names the holder (pid, port) for the `fleet up` that is refused. A detached
cluster's supervisor inherits the locked descriptors and holds them until it stops.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from fleet.errors import AlreadyRunning
from fleet.layout import Layout


def lock_file(layout: Layout, part: str) -> Path:
    return layout.run / f"up-{part}.lock"


class ClusterLock:
    """The locks on a set of parts, taken all or none."""

    def __init__(self, layout: Layout, parts: tuple[str, ...]):
        self.layout, self.parts = layout, tuple(sorted(parts))
        self.fds: list[int] = []

    def acquire(self) -> None:
        """Lock every part, or raise AlreadyRunning naming who holds the first one taken (nothing is changed)."""
        self.layout.run.mkdir(parents=True, exist_ok=True)
        for part in self.parts:
            path = lock_file(self.layout, part)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                self.release()
                raise AlreadyRunning(
                    f"this cluster is already up: its {part} is held by {holder} (lock {path}). "
                    "Use `fleet status`, or `fleet down` first."
                ) from None
            self.fds.append(fd)

    def record(self, pid: int, port: int, listen: str) -> None:
        """Say who holds the locks: the process that keeps the cluster, and where it serves."""
        text = json.dumps({"pid": pid, "port": port, "listen": listen}) + "\n"
        for fd in self.fds:
            os.ftruncate(fd, 0)
            os.pwrite(fd, text.encode(), 0)

    def release(self) -> None:
        """Close this process's descriptors: the lock ends unless a child inherited them."""
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def _holder(fd: int) -> str:
    try:
        doc = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {int(doc['pid'])}, port {int(doc['port'])} on {doc.get('listen', '?')}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a `fleet up` that is starting (no pid recorded yet)"
