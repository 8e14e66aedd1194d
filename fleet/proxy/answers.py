"""What each backend answered (I/O): the lines nginx writes to run/nginx/answers.log, per backend.

nginx.conf writes one short line per answer a backend gave: `STATUS SLOT VASSAL` (the upstream status,
the slot number that sent the request, and the X-Fleet-Vassal header of the vassal that answered, empty
when it did not answer, e.g. a timeout). The vassal's own name is exact; without it, the slot is mapped
to the backend it points at now. nginx buffers the lines for at most 100 ms; each control-plane pass
reads what was appended since the last one (a stat and a read: the cost follows the traffic). The file
is rotated like the tally (renamed aside past `max_bytes`, nginx reopens it on SIGUSR1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Unpack

from fleet.proxy.appended import AppendedLog, Rotation


class AnswerLog:
    """Reads the answers appended to `path` since the last read (those before this object: not ours).
    Not thread-safe: the control-plane loop is its one reader."""

    def __init__(self, path: Path, reopen: Callable[[], None], **rotation: Unpack[Rotation]):
        self.path = path
        self._log = AppendedLog(path, reopen, whole_lines=True, **rotation)

    def read(self, slots: Sequence[str] | Mapping[str, str]) -> dict[str, tuple[int, ...]]:
        """The statuses each backend answered since the last read, oldest first; `slots[i]` is the backend
        slot i points at now (a mapping: by the slot as the log names it, "N" or "APP/N" for an app's)."""
        if not isinstance(slots, Mapping):
            slots = {str(i): name for i, name in enumerate(slots)}
        found: dict[str, list[int]] = {}
        self._log.read(lambda data: _parse(data, slots, found))
        return {name: tuple(statuses) for name, statuses in found.items()}

    def close(self) -> None:
        self._log.close()


def _parse(data: bytes, slots: Mapping[str, str], found: dict[str, list[int]]) -> None:
    for line in data.split(b"\n"):
        fields = line.split()
        if len(fields) < 2 or not fields[0].isdigit():
            continue
        if len(fields) >= 3:
            name = fields[2].decode("ascii", "replace")
        elif (slot := fields[1].decode("ascii", "replace")) in slots:
            name = slots[slot]
        else:
            continue
        found.setdefault(name, []).append(int(fields[0]))
