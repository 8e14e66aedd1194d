"""Operator commands that change the fleet: add, rm, reload, check.

Each is a plain file operation (the same one a user can do by hand) plus waiting, with progress,
until the control plane reports the result in run/state.json.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from fleet import processes, uwsgi, vassals
from fleet.backends import DRAINING, FAILED, HEALTHY
from fleet.cluster import Progress, running
from fleet.errors import FleetError, InvalidVassal, NotRunning, Timeout
from fleet.layout import Layout, write_atomically
from fleet.state import State


def _require_running(layout: Layout) -> None:
    if "control" not in running(layout):
        raise NotRunning(f"the cluster at {layout.root} is not running: start it with `fleet up --detach`")


def _wait(layout: Layout, what: str, done: Callable[[State], str | None], timeout: float, out: TextIO) -> State:
    """Poll the control plane's state until `done` returns a final word ('ok' or an error)."""
    progress = Progress(out)
    started = time.monotonic()
    while True:
        state = State.read(layout)
        verdict = done(state)
        elapsed = time.monotonic() - started
        if verdict == "ok":
            progress.done(f"{what}: done in {elapsed:.2f} s")
            return state
        if verdict:
            progress.done(f"{what}: {verdict}")
            raise FleetError(verdict)
        if elapsed > timeout:
            progress.done("")
            raise Timeout(f"{what}: not done after {timeout:.0f} s; see `fleet status` and {layout.logs}")
        progress.show(f"{what}...", elapsed)
        time.sleep(0.02)


def check(layout: Layout, paths: list[Path], out: TextIO = sys.stdout) -> int:
    """Validate vassal files without starting them. Exit 1 if any has a problem."""
    if not paths:
        paths = sorted(p for p in layout.vassals.glob("*.ini") if vassals.is_vassal_filename(p.name))
    options = uwsgi.known_options(uwsgi.binary())
    bad = 0
    for path in paths:
        checked = vassals.read(path, options, layout.app)
        shown = os.path.relpath(path)
        if checked.valid:
            out.write(f"{shown}: ok\n")
            continue
        bad += 1
        for problem in checked.problems:
            out.write(problem.format(shown) + "\n")
    if bad:
        out.write(f"{bad} of {len(paths)} file(s) have problems; they are never routed to.\n")
    return 1 if bad else 0


def add(layout: Layout, name: str, processes_count: int | None, timeout: float, out: TextIO = sys.stdout) -> int:
    """Write vassals/NAME.ini atomically, then wait until nginx routes to it."""
    if problem := vassals.name_problem(name):
        raise InvalidVassal(f"{problem.message}; {problem.fix}")
    path = layout.vassal_file(name)
    if path.exists():
        raise InvalidVassal(f"{path} already exists; `fleet reload {name}` reloads it")
    _require_running(layout)
    write_atomically(path, vassals.new_vassal_text(name, processes_count))
    out.write(f"wrote {os.path.relpath(path)}\n")

    def routed(state: State) -> str | None:
        b = state.backends.get(name, {})
        if b.get("state") == FAILED:
            return f"{name} failed: {b.get('error')}. Fix {path} or `fleet rm {name}`."
        return "ok" if b.get("state") == HEALTHY and name in state.routed else None

    _wait(layout, f"starting {name}", routed, timeout, out)
    return 0


def rm(layout: Layout, name: str, timeout: float, out: TextIO = sys.stdout) -> int:
    """Take NAME out of nginx first, then delete its file, then wait until its processes are gone."""
    path = layout.vassal_file(name)
    if not path.exists():
        raise InvalidVassal(f"there is no backend {name} ({path} does not exist)")
    _require_running(layout)
    state = State.read(layout)
    pids = _vassal_pids(layout, name)
    (layout.run / "drain").mkdir(exist_ok=True)
    (layout.run / "drain" / name).touch()

    def unrouted(state: State) -> str | None:
        b = state.backends.get(name)
        return "ok" if name not in state.routed and (b is None or b.get("state") == DRAINING) else None

    if name in state.routed or state.backends.get(name, {}).get("state") not in (None, FAILED):
        _wait(layout, f"taking {name} out of nginx", unrouted, timeout, out)
    path.unlink()
    out.write(f"deleted {os.path.relpath(path)}\n")

    def gone(state: State) -> str | None:
        return "ok" if name not in state.backends and not any(processes.is_alive(p) for p in pids) else None

    _wait(layout, f"stopping {name} (in-flight requests finish)", gone, timeout, out)
    return 0


def _vassal_pids(layout: Layout, name: str) -> list[int]:
    try:
        doc = uwsgi.read_json_socket(layout.stats_socket(name), 0.5)
    except (OSError, ValueError):
        return []
    return [int(doc.get("pid", 0))] + [int(w.get("pid", 0)) for w in doc.get("workers", [])]


def reload(layout: Layout, names: list[str], all_: bool, timeout: float, out: TextIO = sys.stdout) -> int:
    """Zero-downtime reload, one backend at a time, each healthy again before the next.

    Stops at the first backend that does not come back, leaving the rest on their old code.
    """
    _require_running(layout)
    if all_:
        names = sorted(State.read(layout).backends) or []
        names = [n for n in names if layout.vassal_file(n).exists()]
    if not names:
        raise FleetError("nothing to reload: name backends, or use --all")
    for name in names:
        if not layout.vassal_file(name).exists():
            raise InvalidVassal(f"there is no backend {name} ({layout.vassal_file(name)} does not exist)")
    for index, name in enumerate(names, start=1):
        path = layout.vassal_file(name)
        os.utime(path)
        touched_ns = path.stat().st_mtime_ns

        def reloaded(state: State, name: str = name, touched_ns: int = touched_ns) -> str | None:
            b = state.backends.get(name, {})
            if b.get("state") == FAILED:
                return f"{name} failed to reload: {b.get('error')}. Backends not yet reloaded keep their old code."
            done = b.get("state") == HEALTHY and b.get("served_mtime_ns", 0) >= touched_ns and name in state.routed
            return "ok" if done else None

        _wait(layout, f"[{index}/{len(names)}] reloading {name}", reloaded, timeout, out)
    return 0
