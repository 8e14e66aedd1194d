"""What each backend answered (I/O): the lines nginx writes to run/nginx/answers.log, per backend.

nginx.conf writes one short line per answer a backend gave: `STATUS SLOT VASSAL SECONDS` (the upstream
status, the slot number that sent the request, the X-Fleet-Vassal header of the vassal that answered,
`-` when it did not answer, e.g. a timeout, and the time it took). The vassal's own name is exact;
without it, the slot is mapped to the backend it points at now. nginx buffers the lines for at most
100 ms; each control-plane pass reads what was appended since the last one (a stat and a read: the cost
follows the traffic). The file is rotated like the tally
(renamed aside past `max_bytes`, nginx reopens it on SIGUSR1).
"""

from __future__ import annotations

import re
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
        self.timed: dict[str, tuple[tuple[int, float], ...]] = {}  # the last read's (status, ms) per backend

    def read(self, slots: Sequence[str] | Mapping[str, str]) -> dict[str, tuple[int, ...]]:
        """The statuses each backend answered since the last read, oldest first; `slots[i]` is the backend
        slot i points at now (a mapping: by the slot as the log names it, "N" or "APP/N" for an app's). The
        same answers with their times (ms) are left in `timed`."""
        if not isinstance(slots, Mapping):
            slots = {str(i): name for i, name in enumerate(slots) if name}
        found: dict[str, list[tuple[int, float]]] = {}
        self._log.read(lambda data: _parse(data, slots, found))
        self.timed = {name: tuple(answers) for name, answers in found.items()}
        return {name: tuple(status for status, _ in answers) for name, answers in found.items()}

    def close(self) -> None:
        self._log.close()


# Of the tries before the last, the answers a backend gave (retried by `uwsgi_next_upstream http_500`);
# not 502/504 (no connection, a timeout): the health probes see those.
RETRIED_ANSWERS = (500, 503)
_STATUS_RE = re.compile(rb"\d{3}")
# A slot's address: the default app's `.../slots/slot-N.sock`, another app's `.../apps/APP/slots/slot-N.sock`.
_SLOT_RE = re.compile(rb"(?:/apps/([^/,]+)/slots/)?slot-0*(\d+)\.sock")
_TIME_RE = re.compile(rb"\d+(?:\.\d+)?")


def _parse(data: bytes, slots: Mapping[str, str], found: dict[str, list[tuple[int, float]]]) -> None:
    for line in data.split(b"\n"):
        line, _, earlier = line.partition(b" |")
        if earlier:
            _earlier(earlier, slots, found)
        fields = line.split()
        if len(fields) < 2 or not fields[0].isdigit():
            continue
        if len(fields) >= 3 and fields[2] != b"-":
            name = fields[2].decode("ascii", "replace")
        elif fields[0] == b"502":
            # No vassal answered: the connection was refused or cut (it is dead or restarting, as when its
            # Emperor died). Its probes and its process say so; counted here, a whole-fleet outage would
            # be blamed on whichever backend was tried last, and that one ejected once it is back.
            continue
        elif (slot := fields[1].decode("ascii", "replace")) in slots:
            name = slots[slot]
        else:
            continue
        found.setdefault(name, []).append((int(fields[0]), _ms(fields[3] if len(fields) >= 4 else b"")))


def _earlier(tail: bytes, slots: Mapping[str, str], found: dict[str, list[tuple[int, float]]]) -> None:
    """The tries before the last: `STATUSES|ADDRESSES|TIMES`, each a comma-separated list (or `-`)."""
    parts = tail.split(b"|")
    if len(parts) != 3:
        return
    statuses, where, times = (rx.findall(p) for rx, p in zip((_STATUS_RE, _SLOT_RE, _TIME_RE), parts, strict=True))
    if len(statuses) != len(where):
        return
    for i, (status, (app, index)) in enumerate(zip(statuses, where, strict=True)):
        slot = f"{app.decode('ascii', 'replace')}/{int(index)}" if app else str(int(index))
        if int(status) in RETRIED_ANSWERS and slots.get(slot):
            found.setdefault(slots[slot], []).append((int(status), _ms(times[i]) if i < len(times) else 0.0))


def _ms(field: bytes) -> float:
    try:
        return float(field) * 1000
    except ValueError:
        return 0.0
