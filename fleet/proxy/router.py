"""Routing (I/O, no decisions): make nginx send new connections to exactly a given set of backends.

Each app has its own upstream of slots (see fleet.proxy.upstreams; the default app keeps upstreams.conf and
slots/, an app NAME run/nginx/apps/NAME/). Slots are re-pointed with an atomic rename of a new symlink, so a
routing change takes effect on the next connect and reloads nothing. nginx is reloaded (after `nginx -t`;
the last good config is kept on failure), once for all the files that change, only when an app's slot
count changes (more backends than its slots share well, or none at all: then nginx answers a JSON 503), or
when the apps themselves change: one is created or removed, or moves to another host name or path.
Weights (fleet.core.weights) only re-point slots, each app's among its own backends.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from fleet.core.apps import DEFAULT, DEFAULT_APP, App, groups
from fleet.core.weights import DEFAULT_WEIGHT
from fleet.errors import FleetError
from fleet.layout import Layout
from fleet.proxy import apps as rendered_apps
from fleet.proxy import nginx
from fleet.proxy.upstreams import assign, render, rendered_slots, slot_count, slot_path

log = logging.getLogger("fleet.control")


class NginxRouter:
    """`routed` is what nginx routes to: at start, read back from the slots (a restarted control plane
    keeps routing what serves); then what the last successful change applied. `apps`: the apps nginx's
    config serves, and `members` the app of each routed backend outside the default app."""

    def __init__(
        self, layout: Layout, clock: Callable[[], float] = time.monotonic, static: Callable[[App], str] | None = None
    ):
        self.layout, self.clock, self.static = layout, clock, static
        self.apps = self._configured_apps()
        self.slots = {app.name: self._configured_slots(app.name) for app in self.apps}
        # The backend each slot of each app points at ("": none).
        self.pointed = {app.name: self._slot_targets(app.name, self.slots[app.name]) for app in self.apps}
        self.members: dict[str, str] = {}
        routed: set[str] = set()
        for app, pointed in self.pointed.items():
            for name in filter(None, pointed):
                routed.add(name)
                if app != DEFAULT_APP:
                    self.members[name] = app
        self.routed = frozenset(routed)
        self.weights: dict[str, int] = {}  # the last weights given (absent: the default)
        self._reweighed: tuple | None = None  # what the last reweigh worked from (routed, slots, weights, pointed)
        self.error = ""
        self.failed_at: float | None = None
        self.changes = self.reloads = self.errors = 0
        self.last_change_ms = self.last_reload_ms = 0.0

    def route(
        self, names: frozenset[str], apps: tuple[App, ...] | None = None, app_of: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Route to exactly `names` (a backend's app: `app_of`, else the default app); with `apps`, first
        make nginx serve exactly those apps."""
        started = time.perf_counter()
        target = apps if apps is not None else self.apps
        members = dict(app_of)
        by_app = groups(names, members)
        served = {a.name for a in target}
        if unserved := sorted(n for app, ns in by_app.items() if app not in served for n in ns):
            log.warning("not routing %s: nginx does not serve their app yet", ", ".join(unserved))
        slots = {a.name: slot_count(len(by_app.get(a.name, ())), self.slots.get(a.name, 0)) for a in target}
        try:
            for app in target:
                self._point_all(app.name, assign(by_app.get(app.name, set()), slots[app.name], self.weights))
            if target != self.apps or slots != self.slots:
                self._configure(target, slots)
        except (FleetError, OSError) as e:
            self.error, self.failed_at = str(e), self.clock()
            self.errors += 1
            raise
        names = frozenset(n for n in names if members.get(n, DEFAULT_APP) in served)
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
        self.members = {n: members[n] for n in names if n in members}

    def app_of(self, name: str) -> str:
        return self.members.get(name, DEFAULT_APP)

    def reweigh(self, weights: Mapping[str, int]) -> bool:
        """Share each app's slots among its backends by these weights (no reload: slots are re-pointed);
        True if a slot moved."""
        self.weights = dict(weights)
        # Worked out again only when something it depends on changed: the smooth round robin costs slots x
        # backends (at 200 idle backends it was 9 of every 10 ms the control plane spent).
        key = (
            self.routed,
            tuple(sorted(self.members.items())),
            tuple(sorted(self.slots.items())),
            tuple(sorted(self.weights.items())),
            tuple(sorted((app, tuple(names)) for app, names in self.pointed.items())),
        )
        if key == self._reweighed:
            return False
        self._reweighed = key
        by_app = groups(self.routed, self.members)
        moved = False
        for app, count in self.slots.items():
            wanted = assign(by_app.get(app, set()), count, self.weights)
            if not wanted or wanted == self.pointed.get(app):
                continue
            try:
                self._point_all(app, wanted)
            except OSError as e:
                self._reweighed = None  # so that the next pass tries again
                log.error("cannot re-point the slots for the new weights: %s; trying again next pass", e)
                return moved
            moved = True
        if moved:
            self.changes += 1
            shown = ", ".join(f"{n}={self.weights.get(n, DEFAULT_WEIGHT)}" for n in sorted(self.routed))
            log.info("weights %s: slots re-pointed", shown)
        return moved

    def slot_names(self) -> dict[str, str]:
        """The backend each slot points at now: "N" for the default app's slot N, "APP/N" for another's
        (as nginx.conf's answers log names them)."""
        found: dict[str, str] = {}
        for app, pointed in self.pointed.items():
            for index, name in enumerate(pointed):
                if name:
                    found[str(index) if app == DEFAULT_APP else f"{app}/{index}"] = name
        return found

    def _point_all(self, app: str, names: list[str]) -> None:
        for index, name in enumerate(names):
            self._point(app, index, name)
        self.pointed[app] = list(names)

    def _point(self, app: str, index: int, name: str) -> None:
        """Re-point one slot at `name`'s socket: a new symlink renamed over the old one (atomic)."""
        slots_dir = self.layout.app_slots(app)
        slot = slot_path(slots_dir, index)
        target = str(self.layout.socket(name))
        try:
            if os.readlink(slot) == target:
                return
        except OSError:
            pass
        slots_dir.mkdir(parents=True, exist_ok=True)
        tmp = slot.with_name(f".{slot.name}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, slot)

    def _configure(self, target: tuple[App, ...], slots: dict[str, int]) -> None:
        started = time.perf_counter()
        layout = self.layout
        files: dict[Path, str] = {}
        for app in target:
            layout.app_slots(app.name).mkdir(parents=True, exist_ok=True)
            body = render(slots[app.name], layout.app_slots(app.name), layout.sockets)
            files[layout.app_upstreams(app.name)] = body
        files[layout.apps_conf] = rendered_apps.render_http(
            target, layout.app_upstreams, layout.nginx_dir, layout.root, self.static
        )
        files[layout.apps_default_conf] = rendered_apps.render_default(target, layout.root, self.static)
        reloaded = nginx.apply_files(layout, files)
        if target != self.apps:
            log.info("nginx serves the apps: %s", "; ".join(f"{a.name} ({a.where()})" for a in target))
        self.apps, self.slots = target, slots
        self.pointed = {a.name: self.pointed.get(a.name, []) for a in target}
        if not reloaded:  # every file already as wanted (e.g. read back after a restart)
            return
        self.reloads += 1
        self.last_reload_ms = (time.perf_counter() - started) * 1000
        log.info(
            "nginx reloaded with %s in %.0f ms",
            ", ".join(f"{n} slots" if a == DEFAULT_APP else f"{n} slots for {a}" for a, n in slots.items()),
            self.last_reload_ms,
        )

    def _configured_apps(self) -> tuple[App, ...]:
        try:
            found = rendered_apps.read_table(self.layout.apps_default_conf.read_text())
        except OSError:
            found = None
        return found if found is not None else (DEFAULT,)

    def _configured_slots(self, app: str) -> int:
        try:
            return rendered_slots(self.layout.app_upstreams(app).read_text())
        except OSError:
            return 0

    def _slot_targets(self, app: str, slots: int) -> list[str]:
        names = []
        for index in range(slots):
            try:
                target = os.readlink(slot_path(self.layout.app_slots(app), index))
            except OSError:
                names.append("")
                continue
            name = os.path.basename(target).rsplit(".", 1)[0]
            names.append(name if target == str(self.layout.socket(name)) else "")
        return names
