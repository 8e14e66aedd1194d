"""Operator commands that change the fleet: add, rm, reload, check.

Each is a plain file operation (the same one a user can do by hand) plus waiting, with progress,
until the control plane's published snapshot shows the result.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from fleet import processes, uwsgi
from fleet.core.states import State
from fleet.errors import FleetError, InvalidVassal, NotRunning, describe
from fleet.layout import Layout, write_atomically
from fleet.ops.progress import wait_until
from fleet.published.records import running
from fleet.published.snapshot import Snapshot
from fleet.vassalfile import vassals
from fleet.vassalfile.static import StaticMount, agree


def _require_running(layout: Layout) -> None:
    if "control" not in running(layout):
        raise NotRunning(f"the cluster at {layout.root} is not running: start it with `fleet up --detach`")


def _wait(layout: Layout, what: str, done: Callable[[Snapshot], str | None], timeout: float, out: TextIO) -> None:
    """Wait until `done(snapshot)` gives a final word: "ok", or an error message."""

    def check() -> tuple[str | None, str]:
        return done(Snapshot.read(layout)), ""

    wait_until(what, check, timeout, out, interval=0.02, hint=f"see `fleet status` and {layout.logs}")


def check(
    layout: Layout,
    paths: list[Path],
    uwsgi_bin: str | None = None,
    out: TextIO = sys.stdout,
    caps: vassals.Caps | None = None,
) -> int:
    """Validate vassal files without starting them. Exit 1 if any has a problem."""
    if not paths:
        paths = [layout.vassal_file(name) for name in vassals.present(layout.vassals)]
    options = uwsgi.known_options(uwsgi.binary(uwsgi_bin))
    bad = 0
    for path in paths:
        checked = vassals.read(path, options, layout.app, caps)
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


def checked_name(name: str) -> str:
    """`name` if it can be a backend's name (every command that takes one checks it here), else one line."""
    if problem := vassals.name_problem(name):
        raise InvalidVassal(problem.message)
    return name


def existing_vassal(layout: Layout, name: str) -> Path:
    """The file of backend `name`, which must be a valid name with a vassal file: nothing else is touched."""
    path = layout.vassal_file(checked_name(name))
    if not path.is_file():
        raise InvalidVassal(f"there is no backend {name} ({path} does not exist); `fleet status` lists them")
    return path


def add(
    layout: Layout,
    name: str,
    processes_count: int | None,
    timeout: float,
    out: TextIO = sys.stdout,
    caps: vassals.Caps | None = None,
) -> int:
    """Write vassals/NAME.ini atomically, then wait until nginx routes to it. The file is checked
    first (its --processes against `caps`): a file fleet would refuse is never written."""
    path = layout.vassal_file(checked_name(name))
    text = vassals.new_vassal_text(name, processes_count, agreed_static(layout))
    if problems := vassals.parse(path, text.encode(), caps=caps).problems:
        raise InvalidVassal(f"{problems[0].message}; {problems[0].fix}")
    if path.exists():
        raise InvalidVassal(f"{path} already exists; `fleet reload {name}` reloads it")
    _require_running(layout)
    write_atomically(path, text)
    out.write(f"wrote {os.path.relpath(path)}\n")

    def routed(snap: Snapshot) -> str | None:
        b = snap.backend(name)
        if b and b.state == State.FAILED:
            return f"{name} failed: {b.error}. Fix {path} or `fleet rm {name}`."
        return "ok" if b and b.state == State.HEALTHY and name in snap.routed else None

    _wait(layout, f"starting {name}", routed, timeout, out)
    return 0


def agreed_static(layout: Layout) -> StaticMount | None:
    """The [fleet] static the valid vassal files agree on (a new backend must carry it too)."""
    ages = vassals.present(layout.vassals)
    files = [vassals.read(layout.vassal_file(name), app_dir=layout.app) for name in ages]
    mount, _ = agree("static", {f.name: f.static for f in files if f.valid}, ages)
    return mount


def rm(layout: Layout, name: str, timeout: float, out: TextIO = sys.stdout) -> int:
    """Take NAME out of nginx first, then delete its file, then wait until its processes are gone.

    If it stops before the file is deleted (a timeout, Ctrl-C, a file it cannot delete), the drain
    request is withdrawn: the backend goes back into nginx rather than staying out of it for good.
    """
    path = existing_vassal(layout, name)
    _require_running(layout)
    pids = _vassal_pids(layout, name)
    marker = layout.drain_dir / name
    layout.drain_dir.mkdir(parents=True, exist_ok=True)
    marker.touch()

    def unrouted(snap: Snapshot) -> str | None:
        b = snap.backend(name)
        return "ok" if name not in snap.routed and (b is None or b.state in (State.DRAINING, State.REMOVING)) else None

    try:
        _wait(layout, f"taking {name} out of nginx", unrouted, timeout, out)
        path.unlink()
    except OSError as e:
        marker.unlink(missing_ok=True)
        raise FleetError(f"cannot delete {path}: {describe(e)}; {name} goes back into nginx") from None
    except BaseException:
        marker.unlink(missing_ok=True)
        raise
    out.write(f"deleted {os.path.relpath(path)}\n")

    def gone(snap: Snapshot) -> str | None:
        return "ok" if snap.backend(name) is None and not any(processes.is_alive(p) for p in pids) else None

    _wait(layout, f"stopping {name} (in-flight requests finish)", gone, timeout, out)
    return 0


def _vassal_pids(layout: Layout, name: str) -> list[int]:
    try:
        return uwsgi.vassal_stats(layout.stats_socket(name)).pids
    except (OSError, ValueError):
        return []


def reload(layout: Layout, names: list[str], all_: bool, timeout: float, out: TextIO = sys.stdout) -> int:
    """Zero-downtime reload, one backend at a time, each healthy again before the next.

    Stops at the first backend that does not come back, leaving the rest on their old code.
    """
    paths = [existing_vassal(layout, name) for name in names]  # every name checked before anything is touched
    _require_running(layout)
    if all_:
        names = [n for n in sorted(Snapshot.read(layout).backends) if vassals.is_valid_name(n)]
        names = [n for n in names if layout.vassal_file(n).is_file()]
        paths = [layout.vassal_file(n) for n in names]
    if not names:
        raise FleetError("nothing to reload: name backends, or use --all")
    for index, (name, path) in enumerate(zip(names, paths, strict=True), start=1):
        os.utime(path)
        touched_ns = path.stat().st_mtime_ns

        def reloaded(snap: Snapshot, name: str = name, touched_ns: int = touched_ns) -> str | None:
            b = snap.backend(name)
            if b and b.state == State.FAILED:
                return f"{name} failed to reload: {b.error}. Backends not yet reloaded keep their old code."
            done = b and b.state == State.HEALTHY and b.served_mtime_ns >= touched_ns and name in snap.routed
            return "ok" if done else None

        _wait(layout, f"[{index}/{len(names)}] reloading {name}", reloaded, timeout, out)
    return 0
