"""`fleet down`: stop what `fleet up` started, in order and gracefully, whatever died before."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TextIO

from fleet import processes
from fleet.core import emperors
from fleet.errors import NotRunning
from fleet.layout import Layout
from fleet.ops.supervisor import STOPPING, stop_in_order
from fleet.published.records import orphaned_groups, running


def down(layout: Layout, quiet: bool = False, out: TextIO = sys.stdout) -> int:
    """Stop what `fleet up` started, in order, gracefully; SIGKILL only what overstays its timeout."""
    records = layout.processes_files()
    alive = running(layout) | orphaned_groups(layout)
    if not records:
        # No record (e.g. it was deleted): fall back on the pid files the components write themselves,
        # if they still name this cluster's processes.
        pidfiles = [("nginx", layout.nginx_pid)] + [(p.stem, p) for p in sorted(layout.run.glob("emperor*.pid"))]
        for name, pidfile in pidfiles:
            try:
                recorded = int(pidfile.read_text().strip())
                if str(layout.root).encode() in Path(f"/proc/{recorded}/cmdline").read_bytes():
                    alive[name] = recorded
            except (OSError, ValueError):
                pass
    if not alive:
        for record in records:
            record.unlink(missing_ok=True)
        if quiet:
            return 0
        raise NotRunning(f"the cluster at {layout.root} is not running (nothing to stop)")
    supervisor = alive.pop("supervisor", None)
    if supervisor is not None and supervisor != os.getpid():
        # The supervisor stops its parts in order; whatever it leaves is stopped below.
        if not quiet:
            out.write(f"fleet: stopping the supervisor (pid {supervisor}) and its parts...\n")
            out.flush()
        processes.stop(supervisor, signal.SIGTERM, sum(t for _, t in STOPPING.values()) + 5)
        alive = {name: pid for name, pid in (running(layout) | orphaned_groups(layout)).items() if name != "supervisor"}

    def say(line: str) -> None:
        if not quiet:
            out.write(line + "\n")
            out.flush()

    stop_in_order(alive, say)
    for record in records:
        record.unlink(missing_ok=True)
    layout.state_file.unlink(missing_ok=True)
    tidy(layout)
    if not quiet:
        out.write("fleet: stopped\n")
    return 0


def tidy(layout: Layout) -> None:
    """A supervisor that did not stop cleanly leaves the vassals' sockets behind: remove them once the
    Emperors are gone."""
    if any(emperors.is_emperor(name) for name in running(layout)):
        return
    for leftover in layout.sockets.glob("*.socket"):
        leftover.unlink(missing_ok=True)
