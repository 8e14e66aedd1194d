"""What `fleet up` recorded: the pids and start times of the parts (run/processes-COMPONENT.json)."""

from __future__ import annotations

import json
from pathlib import Path

from fleet import processes
from fleet.layout import Layout


def recorded(paths: list[Path]) -> dict[str, tuple[int, int | None]]:
    """{component: (pid, start time)} from the records `fleet up` wrote."""
    found: dict[str, tuple[int, int | None]] = {}
    for path in paths:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for name, pid in doc.get("pids", {}).items():
            found[name] = (int(pid), doc.get("started", {}).get(name))
    return found


def running(layout: Layout) -> dict[str, int]:
    """The components recorded by `fleet up` that still run (the same processes, not reused pids)."""
    return {
        name: pid
        for name, (pid, started) in recorded(layout.processes_files()).items()
        if processes.is_same(pid, started)
    }


def orphaned_groups(layout: Layout) -> dict[str, int]:
    """Recorded parts whose leader is gone but whose process group lives on (nginx's orphaned workers
    after its master was killed): {part: its group id}. processes.stop signals the whole group."""
    found = {}
    here = processes.pid_namespace()
    for path in layout.processes_files():
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if doc.get("pid_namespace", here) != here:
            continue  # another container's pids mean nothing here
        for name, pid in doc.get("pids", {}).items():
            if not processes.is_alive(int(pid)) and processes.group_members(int(pid)):
                found[name] = int(pid)
    return found
