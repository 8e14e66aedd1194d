"""nginx's own view of its traffic (I/O): connections from stub_status, answers by status class from a tally.

nginx.conf serves stub_status on a listener of its own, 127.0.0.2 and the public port number: loopback
only, so no client reaches it, and never the public socket (not even with `--listen 0.0.0.0`: another
address is another server). Not a unix socket: a file left by a killed nginx would stop its replacement
from starting. nginx also logs one character per answer, its status class, to run/nginx/answers.tally
(2 bytes a request, buffered). Counting is `bytes.count` over what was appended since the last look: the
cost follows the traffic, not the number of scrapes, and nothing runs between looks.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Unpack

from fleet.layout import Layout
from fleet.proxy import nginx
from fleet.proxy.appended import AppendedLog, Rotation

CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


@dataclass(frozen=True)
class Connections:
    """stub_status: client connections now (active = reading + writing + waiting) and nginx's own totals."""

    active: int
    reading: int
    writing: int
    waiting: int
    accepted: int
    handled: int
    requests: int


def parse_stub_status(text: str) -> Connections:
    """The body of nginx's stub_status page."""
    lines = text.strip().splitlines()
    active = int(lines[0].split(":")[1])
    accepted, handled, requests = (int(x) for x in lines[2].split())
    fields = lines[3].split()  # Reading: R Writing: W Waiting: I
    return Connections(active, int(fields[1]), int(fields[3]), int(fields[5]), accepted, handled, requests)


# The line of nginx.conf that says where the status listener is (the template marks it).
_LISTENER_RE = re.compile(r"^\s*listen\s+([0-9.]+):(\d+)[^;]*;\s*#\s*fleet: status listener", re.MULTILINE)


def status_address(conf: str) -> tuple[str, int] | None:
    """Where the rendered nginx.conf `conf` serves stub_status, or None (a template without it)."""
    match = _LISTENER_RE.search(conf)
    return (match.group(1), int(match.group(2))) if match else None


def stub_status(address: tuple[str, int], timeout: float = 0.5) -> Connections | None:
    """Ask nginx's status listener; None if nginx does not answer (not up, or restarting)."""
    try:
        with socket.create_connection(address, timeout) as sock:
            sock.sendall(b"GET /stub_status HTTP/1.0\r\nHost: fleet\r\n\r\n")
            raw = b"".join(iter(lambda: sock.recv(65536), b""))
        head, _, body = raw.partition(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
            return None
        return parse_stub_status(body.decode("ascii", "replace"))
    except (OSError, ValueError, IndexError):
        return None


class Tally:
    """Answers by status class counted from `path` since this object was made (answers before the control
    plane started are not ours to count); rotated past `max_bytes` (see AppendedLog).
    Not thread-safe: one reader at a time.
    """

    def __init__(self, path: Path, reopen: Callable[[], None], **rotation: Unpack[Rotation]):
        self.path = path
        self.counts = dict.fromkeys(CLASSES, 0)
        self._log = AppendedLog(path, reopen, **rotation)

    def read(self) -> dict[str, int]:
        """Count what was appended since the last read; returns the totals by class."""
        self._log.read(self._count)
        return dict(self.counts)

    def _count(self, chunk: bytes) -> None:
        for index, name in enumerate(CLASSES, start=1):
            self.counts[name] += chunk.count(b"%d" % index)

    def close(self) -> None:
        self._log.close()


class NginxView:
    """nginx's own view of its traffic for the admin listener: its connections now (stub_status on the
    address nginx.conf names) and its answers by status class since this object was made (the tally,
    rotated with SIGUSR1). Safe to call from several threads."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.tally = Tally(layout.nginx_dir / "answers.tally", lambda: nginx.reopen_logs(layout))
        self._lock = threading.Lock()
        self._status_address: tuple[int, tuple[str, int] | None] = (0, None)  # nginx.conf's mtime, address

    def __call__(self) -> tuple[Connections | None, dict[str, int]]:
        """(connections now, None if nginx does not answer; answers by status class)."""
        with self._lock:
            address = self._address()
            connections = stub_status(address) if address else None
            return connections, self.tally.read()

    def _address(self) -> tuple[str, int] | None:
        """Read from the rendered nginx.conf, again only when it changes."""
        try:
            mtime = self.layout.nginx_conf.stat().st_mtime_ns
            if mtime != self._status_address[0]:
                self._status_address = (mtime, status_address(self.layout.nginx_conf.read_text()))
        except OSError:
            return None
        return self._status_address[1]
