"""Which backends nginx should route to (pure): the policy every routing change goes through."""

from __future__ import annotations

from collections.abc import Mapping

from fleet.core.model import Backend
from fleet.core.states import ROUTABLE, State


def wanted_routes(
    routed: frozenset[str], backends: Mapping[str, Backend], now: float, batch_window: float
) -> frozenset[str]:
    """The backends nginx should route to, given what it routes to now: the policy below, app by app
    (a backend's app is `Backend.app`; one app's backends never stand in for another's).

    Leaving backends (starting, ejected, failed, draining, removing, unknown) leave at once. A reloading
    backend leaves only if another backend of its app keeps serving; alone, it keeps its traffic, which
    waits in its socket's backlog during the reload. New healthy backends join in batches: while another
    one of the app is still starting they wait, at most `batch_window`, so a burst of 50 files costs one
    routing change.
    """
    by_app: dict[str, dict[str, Backend]] = {}
    for name, b in backends.items():
        by_app.setdefault(b.app, {})[name] = b
    wanted: set[str] = set()
    for members in by_app.values():
        wanted |= _app_routes(routed & set(members), members, now, batch_window)
    return frozenset(wanted)


def _app_routes(
    routed: frozenset[str], backends: Mapping[str, Backend], now: float, batch_window: float
) -> frozenset[str]:
    keep = {n for n in routed if n in backends and backends[n].state in ROUTABLE}
    peers = {n for n in keep if backends[n].state == State.HEALTHY}
    if peers:
        keep = peers
    ready = {n for n, b in backends.items() if b.state == State.HEALTHY and n not in keep}
    if not ready:
        return frozenset(keep)
    still_starting = any(b.state == State.STARTING for b in backends.values())
    oldest = min(b.ready_at if b.ready_at is not None else now for n, b in backends.items() if n in ready)
    if still_starting and keep and now - oldest < batch_window:
        return frozenset(keep)
    return frozenset(keep | ready)
