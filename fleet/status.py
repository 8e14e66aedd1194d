"""`fleet status`: one row per backend, from the control plane's published snapshot."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from fleet.layout import Layout
from fleet.lifecycle import present_vassals
from fleet.snapshot import Snapshot


@dataclass(frozen=True)
class Row:
    name: str
    state: str
    pid: int | None
    workers: int
    requests: int
    memory: int  # bytes, proportional set size of the master and its workers
    routed: bool
    error: str


def rows(layout: Layout) -> list[Row]:
    snap = Snapshot.read(layout)
    names = sorted(set(snap.backends) | set(present_vassals(layout)))
    result = []
    for name in names:
        b = snap.backend(name)
        if b is None:  # a file the control plane has not seen yet
            result.append(Row(name, "starting", None, 0, 0, 0, False, ""))
            continue
        result.append(Row(name, b.state, b.pid, b.workers, b.requests, b.memory, name in snap.routed, b.error))
    return result


def render_table(table: list[Row]) -> str:
    if not table:
        return "no backends: drop a file into vassals/ or run `fleet add NAME`\n"
    header = ("NAME", "STATE", "PID", "WORKERS", "REQUESTS", "MEMORY", "ERROR")
    lines = [header]
    for r in table:
        state = r.state + ("" if r.routed or r.state != "healthy" else " (unrouted)")
        lines.append(
            (
                r.name,
                state,
                str(r.pid or "-"),
                str(r.workers),
                str(r.requests),
                f"{r.memory / 2**20:.1f} MiB",
                r.error,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])) + "  " + line[-1])
    return "\n".join(s.rstrip() for s in out) + "\n"


def render_json(table: list[Row]) -> str:
    return json.dumps([asdict(r) for r in table], indent=1) + "\n"
