"""The control plane's loop: observe -> decide -> act -> publish, woken by file events and by the core's
own "look again after" (never a sleep that waits for something to happen)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable

from fleet import limits, uwsgi
from fleet.control.admin import AdminServer, Feed
from fleet.control.effects import Effects
from fleet.control.metrics import Metrics
from fleet.control.observe import Observer
from fleet.control.publish import Publisher
from fleet.core.model import Model
from fleet.core.plan import plan
from fleet.core.reconcile import decide
from fleet.core.settings import Settings
from fleet.layout import Layout
from fleet.proxy.router import NginxRouter
from fleet.published.events import Bus, Event, EventFile, log_event, read_events
from fleet.published.snapshot import Counters, Snapshot
from fleet.vassalfile import vassals

log = logging.getLogger("fleet.control")


class Runtime:
    def __init__(self, layout: Layout, settings: Settings | None = None, clock: Callable[[], float] = time.monotonic):
        self.layout, self.settings, self.clock = layout, settings or Settings(), clock
        # The caps `fleet up` chose reach this process through its environment (Limits.environment).
        chosen = limits.resolve({})
        caps = vassals.Caps(processes=chosen.max_processes, threads=chosen.max_threads)
        self.observer = Observer(layout, self.settings, lambda: uwsgi.known_options(uwsgi.binary()), caps)
        self.router = NginxRouter(layout, clock)
        self.effects = Effects(layout, self.router)
        # Every counter lives in the metrics, fed by the bus and by each pass; they share the once-a-second
        # read of each vassal's stats socket with the published usage. The feed tells the status page.
        self.metrics = Metrics(layout, clock)
        self.feed = Feed(seed=read_events(layout.events_file))
        self.publisher = Publisher(layout, self.settings, self.metrics.read_stats, clock)
        self.bus = Bus()
        subscribers = (log_event, EventFile(layout.events_file), self.publisher.on_event)
        for subscriber in (*subscribers, self.metrics.on_event, self.feed.on_event):
            self.bus.subscribe(subscriber)
        self.model = Model()
        self.passes, self.last_pass_ms = 0, 0.0
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def step(self) -> float:
        """One pass; returns how long until the next one at the latest."""
        started = time.perf_counter()
        now = self.clock()
        wanted = self.observer.wanted()
        look = plan(self.model, wanted, now, self.settings)
        router = self.router
        observed = self.observer.observe(look, router.routed, router.error, router.failed_at)
        decision = decide(wanted, observed, self.model, self.settings, now)
        self.model = decision.model
        wall = time.time()
        for transition in decision.transitions:
            self.bus.notify(Event.of(transition, wall))
        self.effects.apply(decision.actions)
        self.passes += 1
        self.last_pass_ms = (time.perf_counter() - started) * 1000
        counters = Counters(
            self.passes,
            self.last_pass_ms,
            router.changes,
            router.last_change_ms,
            router.reloads,
            router.last_reload_ms,
            router.errors,
        )
        self.publisher.publish(self.model, router.routed, counters, router.error, os.getpid())
        self.metrics.on_pass(self.snapshot(), counters, self.model.emperor, self.last_pass_ms / 1000)
        self.feed.on_pass(self.snapshot())
        return decision.wake_after

    def snapshot(self) -> Snapshot:
        """The last published snapshot (what run/state.json holds)."""
        return self.publisher.last or Snapshot()

    def step_safely(self) -> float:
        try:
            return self.step()
        except Exception:
            log.exception("control plane pass failed; trying again")
            return self.settings.tick

    def run(self) -> None:
        """Pass after pass until SIGTERM/SIGINT; the signal handlers and file events only set flags."""
        from fleet.control.watch import watch

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: (self.stopping.set(), self.wake.set()))
        # FLEET_WATCH=poll: no inotify (a bind mount that does not forward events, e.g. Docker Desktop);
        # every pass scans vassals/ anyway, so changes are seen within the idle tick (0.5 s).
        polling = os.environ.get("FLEET_WATCH", "inotify") == "poll"
        observer = None if polling else watch([self.layout.vassals, self.layout.drain_dir], self.wake)
        log.info("watching %s%s", self.layout.vassals, " (polling)" if polling else "")
        wake_after = self.step_safely()
        try:
            while not self.stopping.is_set():
                if self.wake.wait(wake_after) and not self.stopping.is_set():
                    time.sleep(self.settings.debounce)  # let the rest of a burst of file events land
                self.wake.clear()
                if not self.stopping.is_set():
                    wake_after = self.step_safely()
        finally:
            if observer is not None:
                observer.stop()
            log.info("control plane stopped")


def main(layout: Layout, admin: tuple[str, int] | None = None) -> int:
    """The control plane; with `admin` (address, port), also the admin listener (status page, /metrics)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s.%(msecs)03d %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
    layout.make_run_dirs()
    runtime = Runtime(layout)
    server = None
    if admin is not None:
        server = AdminServer(layout, runtime.metrics, runtime.feed, runtime.snapshot, *admin)
        try:
            server.start()
            log.info("admin listener (status page, /metrics) on %s", server.url)
        except OSError as e:  # the cluster serves without it: the data path must not depend on it
            log.error("admin listener: cannot listen on %s:%d (%s); running without it", *admin, e.strerror or e)
            server = None
    try:
        runtime.run()
    finally:
        if server is not None:
            server.stop()
    return 0
