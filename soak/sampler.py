"""Memory and open files of every fleet process, over time.

Each sample reads the process table once and names what it finds from the records `fleet up` writes
(fleet.published.records.running): the long-lived parts by their own name ("emperor", "nginx", "control", and
"supervisor" where there is one), nginx's workers, and each vassal (its master and workers together,
found as the Emperor's children). Memory is the proportional set size (fleet.usage) and the anonymous
memory (a process's own heap and stacks: what a leak grows; PSS also moves when other processes on the
machine start or stop sharing a library's pages).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fleet.control.usage import rss_and_pss
from fleet.core import emperors
from fleet.layout import Layout
from fleet.processes import cmdline, process_table
from fleet.published import records


@dataclass(frozen=True)
class Reading:
    """One role at one time: a single process (`pid`) or a group (`count` processes, pid None)."""

    t: float
    role: str
    pid: int | None
    count: int
    pss: int  # bytes
    anon: int  # bytes
    fds: int


def anonymous(pid: int) -> int:
    """Anonymous memory of one process in bytes, 0 if unknown."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def vassal_name(pid: int) -> str:
    """From the process title `[fleet NAME] uWSGI master` (the launcher, briefly, before it becomes uwsgi)."""
    title = cmdline(pid)
    if title.startswith("[fleet ") and "]" in title:
        return title[len("[fleet ") : title.index("]")]
    return "starting"


def roles(layout: Layout) -> dict[str, list[int]]:
    """{role: pids} of every fleet process now."""
    table = process_table()
    children: dict[int, list[int]] = {}
    for pid, fields in table.items():
        if fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(pid)
    found: dict[str, list[int]] = {}
    for part, pid in sorted(records.running(layout).items()):
        found[part] = [pid]
        if part == "nginx":
            found["nginx workers"] = children.get(pid, [])
        elif emperors.is_emperor(part):
            for master in children.get(pid, []):
                found.setdefault(f"vassal {vassal_name(master)}", []).extend([master, *children.get(master, [])])
    return found


def read(t: float, role: str, pids: list[int]) -> Reading:
    single = len(pids) == 1 and not role.startswith(("vassal ", "nginx workers"))
    return Reading(
        t=round(t, 2),
        role=role,
        pid=pids[0] if single else None,
        count=len(pids),
        pss=sum(rss_and_pss(p)[1] for p in pids),
        anon=sum(anonymous(p) for p in pids),
        fds=sum(open_fds(p) for p in pids),
    )


class Sampler:
    """Samples every `interval` s in a thread until stopped; `readings` holds them all."""

    def __init__(self, layout: Layout, t0: float, interval: float = 2.0):
        self.layout, self.t0, self.interval = layout, t0, interval
        self.readings: list[Reading] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="soak-sampler")

    def sample(self) -> list[Reading]:
        now = time.monotonic() - self.t0
        batch = [read(now, role, pids) for role, pids in roles(self.layout).items()]
        self.readings.extend(batch)
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)  # the sampling period, not a synchronisation

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
