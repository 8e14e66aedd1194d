"""What `fleet up` recorded: the pids and start times of the parts (run/processes-COMPONENT.json)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from fleet import processes
from fleet.layout import Layout


@dataclass(frozen=True)
class Entry:
    """One recorded part: its pid, when it started, and whether its pid means anything here."""

    name: str
    pid: int
    started: int | None
    local: bool  # recorded in this pid namespace (not by another container)


def entries(layout: Layout) -> Iterator[Entry]:
    here = processes.pid_namespace()
    for path in layout.processes_files():
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        local = doc.get("pid_namespace", here) == here
        for name, pid in doc.get("pids", {}).items():
            yield Entry(name, int(pid), doc.get("started", {}).get(name), local)


def running(layout: Layout) -> dict[str, int]:
    """The components recorded by `fleet up` that still run (the same processes, not reused pids)."""
    return {e.name: e.pid for e in entries(layout) if processes.is_same(e.pid, e.started)}


def orphaned_groups(layout: Layout) -> dict[str, int]:
    """Recorded parts whose leader is gone but whose process group lives on (nginx's orphaned workers
    after its master was killed): {part: its group id}. processes.stop signals the whole group."""
    return {
        e.name: e.pid
        for e in entries(layout)
        if e.local and not processes.is_alive(e.pid) and processes.group_members(e.pid)
    }


def recorded_caps(layout: Layout) -> dict[str, str]:
    """The vassal caps a running cluster's control plane applies, as environment variables
    (FLEET_MAX_PROCESSES...): {} if none runs here."""
    if "control" not in running(layout):
        return {}
    for path in layout.processes_files():
        try:
            caps = json.loads(path.read_text()).get("caps", {})
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(caps, dict) and caps:
            return {str(k): str(v) for k, v in caps.items()}
    return {}
