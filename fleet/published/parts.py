"""Are fleet's own parts up? The supervisor, the Emperors, nginx and the control plane, as `fleet up`
recorded them. A part recorded in another pid namespace (another container) is checked by what it
serves instead of by pid: the Emperor's stats socket, the control plane's heartbeat in run/state.json."""

from __future__ import annotations

from dataclasses import dataclass

from fleet import processes, uwsgi
from fleet.core import emperors
from fleet.layout import Layout
from fleet.published.records import entries
from fleet.published.snapshot import HEARTBEAT, Snapshot

ORDER = ("supervisor", "emperor", "nginx", "control")  # by kind: emperor-1, emperor-2... are Emperors


@dataclass(frozen=True)
class PartStatus:
    name: str
    up: bool | None  # None: cannot be told from here (it runs in another container)
    pid: int | None
    detail: str = ""


def statuses(layout: Layout) -> list[PartStatus]:
    """One entry per recorded part, in ORDER; empty if `fleet up` recorded nothing (not running)."""
    found: dict[str, PartStatus] = {}
    for e in entries(layout):
        if e.local:
            up = processes.is_same(e.pid, e.started)
            found[e.name] = PartStatus(e.name, up, e.pid, "" if up else "not running")
        else:
            found[e.name] = _remote(layout, e.name)
    return [found[name] for kind in ORDER for name in sorted(found) if _kind(name) == kind]


def running_parts(layout: Layout, asking: str) -> dict[str, bool]:
    """Whether each recorded part runs, as `fleet status` tells it (those that cannot be told from here
    are left out); `asking`, the part that asks, runs."""
    found = {p.name: p.up for p in statuses(layout) if p.up is not None}
    return found | {asking: True}


def _kind(name: str) -> str:
    return "emperor" if emperors.is_emperor(name) else name


def _remote(layout: Layout, name: str) -> PartStatus:
    if _kind(name) == "emperor":
        try:
            uwsgi.emperor_stats(layout.emperor_stats_of(name), timeout=1.0)
            return PartStatus(name, True, None, "answers on its stats socket")
        except (OSError, ValueError):
            return PartStatus(name, False, None, "its stats socket does not answer")
    if name == "control":
        age = Snapshot.read(layout).age()
        fresh = age < 3 * HEARTBEAT
        return PartStatus(name, fresh, None, "" if fresh else f"no heartbeat for {age:.0f} s")
    return PartStatus(name, None, None, "in another container")
