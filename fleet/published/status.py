"""`fleet status`: one row per backend, from the control plane's published snapshot."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TextIO

from fleet.core.states import State
from fleet.layout import Layout
from fleet.published.parts import PartStatus
from fleet.published.snapshot import Snapshot
from fleet.vassalfile import vassals


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
    weight: int = 100
    share: float = 0.0  # percent of new requests (its slots over all slots)
    app: str = "default"


def rows(layout: Layout) -> list[Row]:
    return rows_of(Snapshot.read(layout), layout)


def want_usage(layout: Layout) -> None:
    """Tell the control plane that someone reads the usage: it then reads the stats sockets each second for
    a while (else every 10 s). Best effort: a reader that may not write run/ still gets the last snapshot."""
    with contextlib.suppress(OSError):
        layout.usage_wanted.touch()


def rows_of(snap: Snapshot, layout: Layout) -> list[Row]:
    """The rows of `snap` and of the vassal files it does not know yet (the admin server holds its own snapshot)."""
    names = sorted(set(snap.backends) | set(vassals.present(layout.vassals)))
    unseen = State.STARTING if snap.control_pid else "not running"  # a file the control plane has not seen
    result = []
    for name in names:
        b = snap.backend(name)
        if b is None:
            result.append(Row(name, unseen, None, 0, 0, 0, False, ""))
            continue
        # Its share of its own app's new requests (each app has its own slots).
        app_total = sum(o.slots for o in snap.backends.values() if o.app == b.app)
        share = round(100.0 * b.slots / app_total, 1) if app_total else 0.0
        routed = name in snap.routed
        result.append(
            Row(name, b.state, b.pid, b.workers, b.requests, b.memory, routed, b.error, b.weight, share, b.app)
        )
    return result


def render_table(table: list[Row]) -> str:
    if not table:
        return "no backends: drop a file into vassals/ or run `fleet add NAME`\n"
    apps = len({r.app for r in table}) > 1  # the APP column only where there is more than one
    header: tuple[str, ...] = ("NAME", *(("APP",) if apps else ()), "STATE", "PID", "WORKERS", "REQUESTS", "MEMORY")
    header += ("WEIGHT", "ERROR")
    lines = [header]
    for r in table:
        state = r.state + ("" if r.routed or r.state != State.HEALTHY else " (unrouted)")
        lines.append(
            (
                r.name,
                *((r.app,) if apps else ()),
                state,
                str(r.pid or "-"),
                str(r.workers),
                str(r.requests),
                f"{r.memory / 2**20:.1f} MiB",
                f"{r.weight} ({r.share:g}%)" if r.routed else str(r.weight),
                r.error,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])) + "  " + line[-1])
    return "\n".join(s.rstrip() for s in out) + "\n"


def render_json(
    table: list[Row], parts: list[PartStatus] | None = None, https: dict | None = None, deploy: dict | None = None
) -> str:
    doc: dict[str, object] = {"parts": [asdict(p) for p in parts or []], "backends": [asdict(r) for r in table]}
    if https is not None:  # the certificate served, and the last pair refused (fleet/proxy/tls.py)
        doc["https"] = https
    if deploy is not None:  # only while one runs: the keys stay fixed otherwise
        doc["deploy"] = deploy
    return json.dumps(doc, indent=1) + "\n"


def render_parts(parts: list[PartStatus], https: str = "") -> str:
    """fleet's own parts, first: a part that is down is the first thing an operator must know; then the
    certificate HTTPS serves, if any (`https`, a line or two)."""
    if not parts:
        return "fleet is not running here: start it with `fleet up`\n"
    words = {True: "up", False: "DOWN", None: "?"}
    cells = [f"{p.name} {words[p.up]}" + (f" (pid {p.pid})" if p.pid and p.up else "") for p in parts]
    details = [f"  {p.name}: {p.detail}" for p in parts if p.up is False and p.detail]
    lines = "".join(d + "\n" for d in details) + (f"{https}\n" if https else "")
    return "fleet: " + ", ".join(cells) + "\n" + lines + "\n"


def watch(
    layout: Layout,
    parts: Callable[[], list[PartStatus]],
    interval: float = 1.0,
    out: TextIO = sys.stdout,
    sleep: Callable[[float], None] = time.sleep,
    frames: int | None = None,
) -> int:
    """`fleet status --watch`: redraw the parts and the table every `interval` s until Ctrl-C (or `frames`)."""
    clear = "\x1b[H\x1b[2J" if out.isatty() else "\n"
    shown = 0
    try:
        while frames is None or shown < frames:
            want_usage(layout)
            header = f"fleet status every {interval:g} s, {time.strftime('%H:%M:%S')} (Ctrl-C to stop)\n\n"
            out.write(clear + header + render_parts(parts()) + render_table(rows(layout)))
            out.flush()
            shown += 1
            if frames is None or shown < frames:
                sleep(interval)  # the refresh period of a display, not a wait for something
    except KeyboardInterrupt:
        out.write("\n")
    return 0
