"""Routing (I/O, no decisions): make nginx send new connections to exactly a given set of backends.

Slots (see fleet.upstreams) are re-pointed with an atomic rename of a new symlink, so a routing change
takes effect on the next connect and reloads nothing. nginx is reloaded (after `nginx -t`; the last
good config is kept on failure) only when the slot count changes: more backends than the slots share
well, or none at all (then nginx answers a JSON 503).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from fleet.errors import FleetError
from fleet.layout import Layout
from fleet.proxy import nginx
from fleet.proxy.upstreams import assign, render, rendered_slots, slot_count, slot_path

log = logging.getLogger("fleet.control")


class NginxRouter:
    """`routed` is what nginx routes to: at start, read back from the slots (a restarted control plane
    keeps routing what serves); then what the last successful change applied."""

    def __init__(self, layout: Layout, clock: Callable[[], float] = time.monotonic):
        self.layout, self.clock = layout, clock
        self.slots = self._configured_slots()
        self.routed = frozenset(self._slot_targets(self.slots))
        self._assigned: tuple[tuple[frozenset[str], int], list[str]] = ((frozenset(), -1), [])
        self.error = ""
        self.failed_at: float | None = None
        self.changes = self.reloads = self.errors = 0
        self.last_change_ms = self.last_reload_ms = 0.0

    def route(self, names: frozenset[str]) -> None:
        started = time.perf_counter()
        slots = slot_count(len(names), self.slots)
        try:
            for index, name in enumerate(assign(names, slots)):
                self._point(index, name)
            if slots != self.slots:
                self._configure(slots)
        except (FleetError, OSError) as e:
            self.error, self.failed_at = str(e), self.clock()
            self.errors += 1
            raise
        self.error, self.failed_at = "", None
        self.changes += 1
        self.last_change_ms = (time.perf_counter() - started) * 1000
        added, removed = sorted(names - self.routed), sorted(self.routed - names)
        log.info(
            "routing %s in %.1f ms%s%s",
            ", ".join(sorted(names)) or "nothing (JSON 503)",
            self.last_change_ms,
            f"; added {', '.join(added)}" if added else "",
            f"; removed {', '.join(removed)}" if removed else "",
        )
        self.routed = names

    def slot_names(self) -> list[str]:
        """The backend each slot points at now (index: the slot number): worked out again only when the
        routing changed (every pass asks, for the answer log)."""
        if self._assigned[0] != (self.routed, self.slots):
            self._assigned = ((self.routed, self.slots), assign(self.routed, self.slots))
        return self._assigned[1]

    def _point(self, index: int, name: str) -> None:
        """Re-point one slot at `name`'s socket: a new symlink renamed over the old one (atomic)."""
        slot = slot_path(self.layout.slots, index)
        target = str(self.layout.socket(name))
        try:
            if os.readlink(slot) == target:
                return
        except OSError:
            pass
        tmp = slot.with_name(f".{slot.name}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, slot)

    def _configure(self, slots: int) -> None:
        started = time.perf_counter()
        self.layout.slots.mkdir(parents=True, exist_ok=True)
        nginx.apply_upstreams(self.layout, render(slots, self.layout.slots, self.layout.sockets))
        self.slots = slots
        self.reloads += 1
        self.last_reload_ms = (time.perf_counter() - started) * 1000
        log.info("nginx reloaded with %d slots in %.0f ms", slots, self.last_reload_ms)

    def _configured_slots(self) -> int:
        try:
            return rendered_slots(self.layout.upstreams_conf.read_text())
        except OSError:
            return 0

    def _slot_targets(self, slots: int) -> set[str]:
        names = set()
        for index in range(slots):
            try:
                target = os.readlink(slot_path(self.layout.slots, index))
            except OSError:
                continue
            name = os.path.basename(target).rsplit(".", 1)[0]
            if target == str(self.layout.socket(name)):
                names.add(name)
        return names
