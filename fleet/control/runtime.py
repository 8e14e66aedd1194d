"""The control plane's loop: observe -> decide -> act -> publish -> tell the subscribers, woken by file
events and by the core's own "look again after" (never a sleep that waits for something to happen).
The subscribers (metrics, the admin listener's feed) are given to it: see fleet.control.main."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from fleet import uwsgi
from fleet.control.certs import CertWatcher
from fleet.control.deploying import DeployRunner
from fleet.control.effects import Effects
from fleet.control.observe import ClusterObserver
from fleet.control.publish import Publisher
from fleet.control.subscribers import PassReport, Subscriber
from fleet.core.apps import DEFAULT_APP, App
from fleet.core.looking import what_to_observe
from fleet.core.model import Model
from fleet.core.reconcile import decide
from fleet.core.settings import Settings
from fleet.layout import Layout
from fleet.proxy import nginx
from fleet.proxy.answers import AnswerLog
from fleet.proxy.apps import static_location
from fleet.proxy.router import NginxRouter
from fleet.proxy.static import DEFAULT_MAX_AGE, Mount, StaticFolders, url_prefix
from fleet.published.events import Bus, Event, EventFile, log_event
from fleet.published.snapshot import Counters, Snapshot
from fleet.vassalfile import vassals

log = logging.getLogger("fleet.control")
DEPLOY_TICK = 0.2


class Runtime:
    def __init__(
        self,
        layout: Layout,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.monotonic,
        subscribers: Iterable[Subscriber] = (),
        uwsgi_bin: str | None = None,
        caps: vassals.Caps | None = None,
        tls_pair: tuple[str, str] | None = None,
        static_max_age: int = DEFAULT_MAX_AGE,
    ):
        self.layout, self.settings, self.clock = layout, settings or Settings(), clock
        # The caps `fleet up` chose reach this process on its command line, as its other settings do.
        self.cluster = ClusterObserver(
            layout, self.settings, lambda: uwsgi.known_options(uwsgi.binary(uwsgi_bin)), caps
        )
        # Each app's static folder beside its location (fleet.proxy.apps); the default app's is static.conf.
        self.router = NginxRouter(layout, clock, static=self._app_static)
        self.static_max_age = static_max_age
        self.effects = Effects(layout, self.router, self.settings.emperors)
        self.static = StaticFolders(layout, static_max_age, nginx.worker_user())
        # What each backend answered, for outlier ejection (passive health): read every pass.
        self.answers = AnswerLog(layout.nginx_dir / "answers.log", lambda: nginx.reopen_logs(layout), clock=clock)
        # A usage round of the pass reads every vassal's stats socket (each second while someone watches,
        # see fleet.core.looking); the publisher and the subscribers get those reads instead of reading again.
        # The publisher reads only a backend whose state moved since (see Publisher.publish).
        self.publisher = Publisher(layout, self.settings, self.cluster.stats, clock)
        # When the admin listener last answered a request (the status page, /metrics): set by fleet.control.main.
        self.admin_asked_at: Callable[[], float] = lambda: float("-inf")
        self.subscribers = tuple(subscribers)
        self.bus = Bus()
        own: tuple[Callable[[Event], None], ...] = (log_event, EventFile(layout.events_file), self.publisher.on_event)
        for on_event in (*own, *(s.on_event for s in self.subscribers)):
            self.bus.subscribe(on_event)
        # HTTPS: the certificate and key files, looked at about once a second for a rotation.
        self.certs = CertWatcher(layout, *tls_pair, clock=clock) if tls_pair else None
        self.model = Model()
        self.passes, self.last_pass_ms = 0, 0.0
        self.weights: dict[str, int] = {}
        self.deploys = DeployRunner(layout, clock())
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def step(self) -> float:
        """One pass; returns how long until the next one at the latest."""
        started = time.perf_counter()
        now = self.clock()
        wanted = replace(self.cluster.wanted(), watched_at=self._watched_at(now))
        look = what_to_observe(self.model, wanted, now, self.settings)
        router = self.router
        names = set(self.model.backends) | set(wanted.files)  # new files too: their usage from the first pass
        observed = self.cluster.observe(look, router.routed, router.error, router.failed_at, names)
        answers = self.answers.read(router.slot_names())
        observed = replace(observed, apps=router.apps, members=dict(router.members), answers=answers)
        read = {name: observed.stats.get(name) for name in sorted(names)} if observed.usage else None
        decision = decide(wanted, observed, self.model, self.settings, now)
        self.model = decision.model
        wall = time.time()
        for transition in decision.transitions:
            self.bus.notify(Event.of(transition, wall))
        self.effects.apply(decision.actions)
        self.serve_static()
        self.weights = self.cluster.weights(wanted)
        # A deploy in progress sets its app's weights (the canary's share; 0 for what it takes out).
        self.weights.update(self.deploys.step(self.model, router.routed, self.answers.timed, now))
        router.reweigh(self.weights)
        self.passes += 1
        self.last_pass_ms = (time.perf_counter() - started) * 1000
        counters = Counters(
            self.passes,
            self.last_pass_ms,
            router.changes,
            router.last_change_ms,
            router.reloads + self.static.reloads,  # every reload of nginx: routing or static folders
            router.last_reload_ms,
            router.errors,
        )
        watched = now - wanted.watched_at <= self.settings.watch_window
        self.publisher.publish(
            self.model,
            router.routed,
            counters,
            router.error,
            os.getpid(),
            self.weights,
            list(router.slot_names().values()),  # every app's slots: a backend's count is its own app's
            self.deploys.published(),
            read,
            watched,
        )
        report = PassReport(
            self.snapshot(), counters, self.model.emperor, self.last_pass_ms / 1000, read or {}, self.publisher.usage_at
        )
        for subscriber in self.subscribers:
            subscriber.on_pass(report)
        wake = decision.wake_after
        # A deploy looks often: its steps wait on backends and answers (not watched: it writes run/deploy/).
        if self.deploys.running:
            wake = min(wake, DEPLOY_TICK)
        if self.certs is None:
            return wake
        self.certs.look()
        return min(wake, self.certs.due_in())

    def _app_static(self, app: App) -> str:
        """The nginx location serving an app's static folder under its path ("" for none, or the default app)."""
        if app.name == DEFAULT_APP or not app.static:
            return ""
        mount = self.cluster.app_static(app)
        if mount is None or mount.path is None:
            return ""
        try:
            return static_location(url_prefix(app.path, mount.prefix), mount.path, self.static_max_age)
        except ValueError as e:
            log.error("app %s: its static folder is not served by nginx: %s", app.name, e)
            return ""

    def serve_static(self) -> None:
        """nginx serves the static folder the default app's valid backends agree on (none: no file, or
        no valid one). Derived from the files, not from health: a backend coming or going reloads nothing."""
        agreed = self.cluster.static
        if agreed is None or agreed.path is None:
            self.static.update([])
            return
        self.static.update([Mount(url_prefix("/", agreed.prefix), agreed.path)])  # the default app's path: /

    def _watched_at(self, now: float) -> float:
        """When someone last wanted fresh usage, on our clock: the admin listener's last request, or the
        last `fleet status` (it touches run/usage-wanted)."""
        try:
            touched = now - max(0.0, time.time() - self.layout.usage_wanted.stat().st_mtime)
        except OSError:
            touched = float("-inf")
        return max(touched, self.admin_asked_at())

    def snapshot(self) -> Snapshot:
        """The last published snapshot (what run/state.json holds)."""
        return self.publisher.last or Snapshot()

    def step_safely(self) -> float:
        try:
            return self.step()
        except Exception:
            log.exception("control plane pass failed; trying again")
            return self.settings.tick

    def run(self, polling: bool = False) -> None:
        """Pass after pass until SIGTERM/SIGINT; the signal handlers and file events only set flags.
        `polling`: no file events, only the passes (the setting --file-watch poll)."""
        from fleet.control.watch import watch_folders

        def on_signal(*_: object) -> None:
            self.stopping.set()
            self.wake.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        # Polling: no inotify (a bind mount that does not forward events, e.g. Docker Desktop); every pass
        # scans vassals/ anyway, so changes are seen within the idle tick (0.5 s).
        watcher = (
            None
            if polling
            else watch_folders([self.layout.vassals, self.layout.drain_dir, self.layout.weights_dir], self.wake)
        )
        log.info("watching %s%s", self.layout.vassals, " (polling)" if polling else "")
        wake_after = self.step_safely()
        try:
            while not self.stopping.is_set():
                if self.wake.wait(wake_after) and not self.stopping.is_set():
                    time.sleep(self.settings.debounce)  # let the rest of a burst of file events land
                self.wake.clear()
                if not self.stopping.is_set():
                    wake_after = self.step_safely()
                    if watcher is not None and wake_after >= self.settings.tick:
                        wake_after = self.settings.event_tick  # nothing in flight, and file events wake us
        finally:
            if watcher is not None:
                watcher.stop()
            log.info("control plane stopped")
