"""Routing (I/O, no decisions): make nginx send new requests to a given set of backends."""

from __future__ import annotations

import logging
import time

from fleet import nginx
from fleet.errors import FleetError
from fleet.layout import Layout
from fleet.upstreams import render, routed_names

log = logging.getLogger("fleet.control")


class NginxRouter:
    """Renders run/nginx/upstreams.conf, validates it (`nginx -t`) and reloads nginx gracefully.

    `routed` is what nginx routes to: read back from the file at start (a restarted control plane
    keeps routing what serves), then what the last successful change applied.
    """

    def __init__(self, layout: Layout, clock=time.monotonic):
        self.layout, self.clock = layout, clock
        try:
            self.routed = frozenset(routed_names(layout.upstreams_conf.read_text()))
        except OSError:
            self.routed = frozenset()
        self.error = ""
        self.failed_at: float | None = None
        self.reloads = 0
        self.errors = 0
        self.last_reload_ms = 0.0

    def route(self, names: frozenset[str]) -> None:
        content = render({n: self.layout.socket(n) for n in names}, self.layout.sockets)
        started = time.perf_counter()
        try:
            nginx.apply_upstreams(self.layout, content)
        except FleetError as e:
            self.error, self.failed_at = str(e), self.clock()
            self.errors += 1
            raise
        self.error, self.failed_at = "", None
        self.reloads += 1
        self.last_reload_ms = (time.perf_counter() - started) * 1000
        added, removed = sorted(names - self.routed), sorted(self.routed - names)
        log.info(
            "nginx reloaded in %.0f ms: routing %s%s%s",
            self.last_reload_ms,
            ", ".join(sorted(names)) or "nothing (JSON 503)",
            f"; added {', '.join(added)}" if added else "",
            f"; removed {', '.join(removed)}" if removed else "",
        )
        self.routed = names
