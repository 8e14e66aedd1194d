"""What each backend answered (I/O): the lines nginx writes to run/nginx/answers.log, per backend.

nginx.conf writes one short line per answer a backend gave: `STATUS SLOT VASSAL` (the upstream status,
the slot number that sent the request, and the X-Fleet-Vassal header of the vassal that answered, empty
when it did not answer, e.g. a timeout). The vassal's own name is exact; without it, the slot is mapped
to the backend it points at now. nginx buffers the lines for at most 100 ms; each control-plane pass
reads what was appended since the last one (a stat and a read: the cost follows the traffic). The file
is rotated like the tally (renamed aside past `max_bytes`, nginx reopens it on SIGUSR1).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


class AnswerLog:
    """Reads the answers appended to `path` since the last read (those before this object: not ours).
    Not thread-safe: the control-plane loop is its one reader."""

    def __init__(
        self,
        path: Path,
        reopen: Callable[[], None],
        max_bytes: int = 4 << 20,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.path, self.reopen, self.max_bytes, self.clock = path, reopen, max_bytes, clock
        self._file: BinaryIO | None = None
        self._ino = 0
        self._draining: list[tuple[float, BinaryIO, bytearray]] = []  # rotated away: (since, file, partial line)
        self._partial = bytearray()  # a line nginx has not finished writing
        try:
            self._open(seek_end=True)
        except FileNotFoundError:
            pass

    def read(self, slots: Sequence[str]) -> dict[str, tuple[int, ...]]:
        """The statuses each backend answered since the last read, oldest first; `slots[i]` is the backend
        slot i points at now."""
        found: dict[str, list[int]] = {}
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if self._file is not None and (st is None or st.st_ino != self._ino):
            self._draining.append((self.clock(), self._file, self._partial))  # nginx may still finish it
            self._file, self._partial = None, bytearray()
        if self._file is None and st is not None:
            try:
                self._open(seek_end=False)
            except FileNotFoundError:
                pass
        for since, old, partial in list(self._draining):
            _parse(_new_bytes(old, partial), slots, found)
            if self.clock() - since > 10.0:
                old.close()
                self._draining.remove((since, old, partial))
        if self._file is not None:
            if st is not None and st.st_size < self._file.tell():
                self._file.seek(0)  # truncated in place
                self._partial.clear()
            _parse(_new_bytes(self._file, self._partial), slots, found)
            if self._file.tell() > self.max_bytes:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                self.reopen()
        return {name: tuple(statuses) for name, statuses in found.items()}

    def _open(self, seek_end: bool) -> None:
        f = open(self.path, "rb")  # noqa: SIM115 (kept open between reads)
        self._ino = os.fstat(f.fileno()).st_ino
        if seek_end:
            f.seek(0, os.SEEK_END)
        self._file = f

    def close(self) -> None:
        for _, f, _ in self._draining:
            f.close()
        self._draining = []
        if self._file is not None:
            self._file.close()
            self._file = None


def _new_bytes(f: BinaryIO, partial: bytearray) -> bytes:
    """The whole lines appended to `f`; an unfinished last line waits in `partial` for the next read."""
    while chunk := f.read(CHUNK):
        partial += chunk
    end = partial.rfind(b"\n") + 1
    complete = bytes(partial[:end])
    del partial[:end]
    return complete


def _parse(data: bytes, slots: Sequence[str], found: dict[str, list[int]]) -> None:
    for line in data.split(b"\n"):
        fields = line.split()
        if len(fields) < 2 or not fields[0].isdigit():
            continue
        if len(fields) >= 3:
            name = fields[2].decode("ascii", "replace")
        elif fields[1].isdigit() and int(fields[1]) < len(slots):
            name = slots[int(fields[1])]
        else:
            continue
        found.setdefault(name, []).append(int(fields[0]))
