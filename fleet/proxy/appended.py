"""What nginx appended to one of its logs since the last look (I/O), across rotation and truncation.

The answer log and the status-class tally (answers.py, nginxstats.py) are read the same way: a stat and a
read of what was appended since the last read, so the cost follows the traffic. Past `max_bytes` the file
is renamed aside and `reopen()` asks nginx to open a new one (SIGUSR1); the renamed file is still read to
its end for a while, since nginx may still be finishing a buffered write into it, so nothing is lost or
read twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypedDict, Unpack

CHUNK = 1 << 20
DRAIN_SECONDS = 10.0  # how long a rotated-away file is still read


class Rotation(TypedDict, total=False):
    """How a log is rotated: renamed aside past `max_bytes` (4 MiB unless given); `clock` (monotonic
    seconds unless given) times how long the renamed file is still read."""

    max_bytes: int
    clock: Callable[[], float]


class _Source:
    """One open file and the unfinished line read from it (kept only with `whole_lines`)."""

    def __init__(self, f: BinaryIO):
        self.file = f
        self.partial = bytearray()


class AppendedLog:
    """Hands each read the bytes appended to `path` since the last read (those before this object: not
    ours), in order, in chunks of at most about CHUNK bytes. With `whole_lines`, only complete lines: an
    unfinished last line waits for the next read. Not thread-safe: one reader at a time."""

    def __init__(self, path: Path, reopen: Callable[[], None], whole_lines: bool = False, **rotation: Unpack[Rotation]):
        self.path, self.reopen, self.whole_lines = path, reopen, whole_lines
        self.max_bytes = rotation.get("max_bytes", 4 << 20)
        self.clock = rotation.get("clock", time.monotonic)
        self._current: _Source | None = None
        self._ino = 0
        self._draining: list[tuple[float, _Source]] = []  # rotated away: (since, source)
        try:
            self._open(seek_end=True)
        except FileNotFoundError:
            pass

    def read(self, consume: Callable[[bytes], None]) -> None:
        """Pass what was appended since the last read to `consume`, chunk by chunk, oldest first."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if self._current is not None and (st is None or st.st_ino != self._ino):
            self._draining.append((self.clock(), self._current))  # rotated: nginx may still finish it
            self._current = None
        if self._current is None and st is not None:
            try:
                self._open(seek_end=False)
            except FileNotFoundError:
                pass
        for since, old in list(self._draining):
            self._consume(old, consume)
            if self.clock() - since > DRAIN_SECONDS:
                old.file.close()
                self._draining.remove((since, old))
        if self._current is not None:
            current = self._current
            if st is not None and st.st_size < current.file.tell():
                current.file.seek(0)  # truncated in place (copytruncate)
                current.partial.clear()
            self._consume(current, consume)
            if current.file.tell() > self.max_bytes:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                self.reopen()

    def _consume(self, source: _Source, consume: Callable[[bytes], None]) -> None:
        while chunk := source.file.read(CHUNK):
            if not self.whole_lines:
                consume(chunk)
                continue
            source.partial += chunk
            end = source.partial.rfind(b"\n") + 1
            if end:
                consume(bytes(source.partial[:end]))
                del source.partial[:end]

    def _open(self, seek_end: bool) -> None:
        f = open(self.path, "rb")  # noqa: SIM115 (kept open between reads)
        self._ino = os.fstat(f.fileno()).st_ino
        if seek_end:
            f.seek(0, os.SEEK_END)
        self._current = _Source(f)

    def close(self) -> None:
        for _, old in self._draining:
            old.file.close()
        self._draining = []
        if self._current is not None:
            self._current.file.close()
            self._current = None
