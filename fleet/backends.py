"""A backend as the control plane tracks it, its states, and the routing policy (pure)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger("fleet.control")

STARTING, HEALTHY, RELOADING, DRAINING, FAILED = "starting", "healthy", "reloading", "draining", "failed"


@dataclass
class Backend:
    """What the control plane knows of one vassal."""

    name: str
    state: str
    mtime_ns: int  # the file version the control plane has acted on
    since: float  # when the backend entered its state (monotonic)
    error: str = ""
    routed: bool = False
    served_mtime_ns: int = 0  # the file version now serving (set when a start or reload completes)
    old_workers: frozenset[int] = frozenset()
    reload_again: bool = False
    probe_failures: int = 0
    ready_at: float | None = None  # healthy, waiting to be routed with its batch
    file_gone: bool = False
    last_mod_before: int | None = None  # the Emperor's last_mod for it before this reload was asked
    nudged: bool = False  # reloaded through its master FIFO

    def enter(self, state: str, now: float, error: str = "") -> None:
        if state != self.state:
            log.info("%s: %s -> %s%s", self.name, self.state, state, f" ({error})" if error else "")
        self.state, self.since, self.error = state, now, error


def wanted_routes(
    routed_now: set[str], backends: Mapping[str, Backend], now: float, batch_window: float, adding: bool
) -> set[str]:
    """Which backends nginx should route to now.

    Removals (draining, failed, reloading with a peer to take its traffic) apply at once. Additions
    are batched: while any backend is still starting, newly healthy ones wait (at most
    `batch_window`), so a burst of 50 new files costs one nginx reload, not 50.
    """
    keep = set()
    for name in routed_now:
        b = backends.get(name)
        if b is None or b.state in (DRAINING, FAILED, STARTING):
            continue
        keep.add(name)
    # A reloading backend keeps its traffic only if no other backend can take it.
    reloading = {n for n in keep if backends[n].state == RELOADING}
    others = keep - reloading
    if others:
        keep = others
    if not adding:
        return keep
    ready = {n for n, b in backends.items() if b.state == HEALTHY and n not in keep}
    if not ready:
        return keep
    still_starting = any(b.state == STARTING and not b.error for b in backends.values())
    oldest = min(backends[n].ready_at or now for n in ready)
    if still_starting and now - oldest < batch_window and keep:
        return keep
    return keep | ready
