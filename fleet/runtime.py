"""The control plane's loop: observe -> decide -> act -> publish, woken by file events and by the core's
own "look again after" (never a sleep that waits for something to happen)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable

from fleet import uwsgi
from fleet.effects import Effects
from fleet.events import Bus, Event, EventFile, log_event
from fleet.layout import Layout
from fleet.model import Model
from fleet.observe import Observer
from fleet.plan import plan
from fleet.publish import Publisher
from fleet.reconcile import decide
from fleet.router import NginxRouter
from fleet.settings import Settings
from fleet.snapshot import Counters

log = logging.getLogger("fleet.control")


class Runtime:
    def __init__(self, layout: Layout, settings: Settings | None = None, clock: Callable[[], float] = time.monotonic):
        self.layout, self.settings, self.clock = layout, settings or Settings(), clock
        self.observer = Observer(layout, self.settings, lambda: uwsgi.known_options(uwsgi.binary()))
        self.router = NginxRouter(layout, clock)
        self.effects = Effects(layout, self.router)
        self.publisher = Publisher(layout, self.settings, self.observer.stats, clock)
        self.bus = Bus()
        for subscriber in (log_event, EventFile(layout.events_file), self.publisher.on_event):
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
        return decision.wake_after

    def step_safely(self) -> float:
        try:
            return self.step()
        except Exception:
            log.exception("control plane pass failed; trying again")
            return self.settings.tick

    def run(self) -> None:
        """Pass after pass until SIGTERM/SIGINT; the signal handlers and file events only set flags."""
        from fleet.watch import watch

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: (self.stopping.set(), self.wake.set()))
        observer = watch([self.layout.vassals, self.layout.drain_dir], self.wake)
        log.info("watching %s", self.layout.vassals)
        wake_after = self.step_safely()
        try:
            while not self.stopping.is_set():
                if self.wake.wait(wake_after) and not self.stopping.is_set():
                    time.sleep(self.settings.debounce)  # let the rest of a burst of file events land
                self.wake.clear()
                if not self.stopping.is_set():
                    wake_after = self.step_safely()
        finally:
            observer.stop()
            log.info("control plane stopped")


def main(layout: Layout) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s.%(msecs)03d %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
    layout.make_run_dirs()
    Runtime(layout).run()
    return 0
