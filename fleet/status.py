"""`fleet status`: one row per backend, from the control plane's state and each vassal's stats."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from fleet import uwsgi
from fleet.cluster import present_vassals
from fleet.layout import Layout
from fleet.state import State


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


def memory_of(pids: list[int]) -> int:
    """Proportional set size (shared pages split between sharers), so rows add up honestly."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except (OSError, ValueError, IndexError):
            continue
    return total


def rows(layout: Layout) -> list[Row]:
    state = State.read(layout)
    names = sorted(set(state.backends) | set(present_vassals(layout)))
    result = []
    for name in names:
        b = state.backends.get(name, {"state": "starting", "error": ""})
        pid, workers, requests, pids = None, 0, 0, []
        try:
            doc = uwsgi.read_json_socket(layout.stats_socket(name), 0.5)
            pid = int(doc.get("pid", 0)) or None
            live = [w for w in doc.get("workers", []) if int(w.get("pid", 0)) > 0]
            workers = len(live)
            requests = sum(int(w.get("requests", 0)) for w in live)
            pids = [pid or 0] + [int(w["pid"]) for w in live]
        except (OSError, ValueError):
            pass
        result.append(
            Row(
                name,
                b["state"],
                pid,
                workers,
                requests,
                memory_of(pids),
                name in state.routed,
                b.get("error", ""),
            )
        )
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
