"""Which backends nginx should route to (pure): the policy every routing change goes through."""

from __future__ import annotations

from collections.abc import Mapping

from fleet.core.model import Backend
from fleet.core.states import ROUTABLE, State


def wanted_routes(
    routed: frozenset[str], backends: Mapping[str, Backend], now: float, batch_window: float
) -> frozenset[str]:
    """The backends nginx should route to, given what it routes to now.

    Leaving backends (starting, ejected, failed, draining, removing, unknown) leave at once. A reloading
    backend leaves only if another backend keeps serving; alone, it keeps its traffic, which waits in
    its socket's backlog during the reload. New healthy backends join in batches: while another one is
    still starting they wait, at most `batch_window`, so a burst of 50 files costs one routing change.
    """
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
