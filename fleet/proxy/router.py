"""Routing (I/O, no decisions): make nginx send new connections to exactly a given set of backends.

Slots (see fleet.upstreams) are re-pointed with an atomic rename of a new symlink, so a routing change
takes effect on the next connect and reloads nothing. nginx is reloaded (after `nginx -t`; the last
good config is kept on failure) only when the slot count changes: more backends than the slots share
well, or none at all (then nginx answers a JSON 503). Weights (fleet.core.weights) only re-point slots.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping

from fleet.core.weights import DEFAULT_WEIGHT
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
        self.pointed = self._slot_targets(self.slots)  # the backend each slot points at ("": none)
        self.routed = frozenset(n for n in self.pointed if n)
        self.weights: dict[str, int] = {}  # the last weights given (absent: the default)
        self._reweighed: tuple | None = None  # what the last reweigh worked from (routed, slots, weights, pointed)
        self.error = ""
        self.failed_at: float | None = None
        self.changes = self.reloads = self.errors = 0
        self.last_change_ms = self.last_reload_ms = 0.0

    def route(self, names: frozenset[str]) -> None:
        started = time.perf_counter()
        slots = slot_count(len(names), self.slots)
        try:
            self._point_all(assign(names, slots, self.weights))
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

    def reweigh(self, weights: Mapping[str, int]) -> bool:
        """Share the slots by these weights (no reload: slots are re-pointed); True if a slot moved."""
        self.weights = dict(weights)
        # Worked out again only when something it depends on changed: the smooth round robin costs slots x
        # backends (at 200 idle backends it was 9 of every 10 ms the control plane spent).
        key = (self.routed, self.slots, tuple(sorted(self.weights.items())), tuple(self.pointed))
        if key == self._reweighed:
            return False
        self._reweighed = key
        wanted = assign(self.routed, self.slots, self.weights)
        if not wanted or wanted == self.pointed:
            return False
        try:
            self._point_all(wanted)
        except OSError as e:
            self._reweighed = None  # so that the next pass tries again
            log.error("cannot re-point the slots for the new weights: %s; trying again next pass", e)
            return False
        self.changes += 1
        shown = ", ".join(f"{n}={self.weights.get(n, DEFAULT_WEIGHT)}" for n in sorted(self.routed))
        log.info("weights %s: slots re-pointed", shown)
        return True

    def slot_names(self) -> list[str]:
        """The backend each slot points at now (index: the slot number)."""
        return list(self.pointed)

    def _point_all(self, names: list[str]) -> None:
        for index, name in enumerate(names):
            self._point(index, name)
        self.pointed = list(names)

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

    def _slot_targets(self, slots: int) -> list[str]:
        names = []
        for index in range(slots):
            try:
                target = os.readlink(slot_path(self.layout.slots, index))
            except OSError:
                names.append("")
                continue
            name = os.path.basename(target).rsplit(".", 1)[0]
            names.append(name if target == str(self.layout.socket(name)) else "")
        return names
