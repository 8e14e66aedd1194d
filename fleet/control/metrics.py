"""Prometheus metrics of one control plane: every counter fleet keeps lives here, never in the pure core.

A pure subscriber of the control-plane loop: `on_event` (each transition: counts, hot-add and reload
durations) and `on_pass` (after each pass: the published snapshot, the routing counters, the Emperor's last
answer, the pass duration, and the vassals' stats documents the pass read, of which the workers' details
are kept). It reads nothing itself: a scrape formats what is held, plus what the two sources it is given
tell at that moment (nginx's own view, which of fleet's parts run).
A backend's series come from the current snapshot: a new one appears by the next scrape, a removed one goes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from fleet.control.subscribers import PassReport
from fleet.core import outliers
from fleet.core.states import State
from fleet.core.stats import EmperorStats, VassalStats
from fleet.proxy.nginxstats import Connections
from fleet.published.events import Event
from fleet.published.snapshot import Counters, Snapshot

prometheus_client.disable_created_metrics()  # no `_created` series: they double every counter's lines

STATES = tuple(s.value for s in State)
DURATION_BUCKETS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
PASS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class Usage:
    """One read of a vassal's stats socket, beyond what `fleet status` shows."""

    at: float  # the control plane's clock
    busy: int
    idle: int
    requests: int
    exceptions: int
    rps: float  # requests per second since the previous read


def usage_of(stats: VassalStats, at: float, previous: Usage | None) -> Usage:
    """Busy and idle workers, requests and exceptions from a vassal's stats, and the request rate since
    `previous`."""
    rps = 0.0
    if previous is not None and at > previous.at:
        # After a reload the counts start again from zero: count from there.
        done = stats.requests - previous.requests if stats.requests >= previous.requests else stats.requests
        rps = done / (at - previous.at)
    return Usage(at, stats.busy, stats.idle, stats.requests, stats.exceptions, round(rps, 2))


class Metrics:
    def __init__(
        self,
        parts: Callable[[], dict[str, bool]],
        nginx_view: Callable[[], tuple[Connections | None, dict[str, int]]],
        wall: Callable[[], float] = time.time,
    ):
        """`parts`: whether each of fleet's parts runs; `nginx_view`: nginx's connections now (None: not
        answering) and its answers by status class since the control plane started. Both asked at scrape."""
        self.parts, self.nginx_view, self.wall = parts, nginx_view, wall
        self.registry = CollectorRegistry()
        r = self.registry
        self.transitions = Counter("fleet_transitions", "Backend state transitions.", ["from", "to"], registry=r)
        self.ejections = Counter(
            "fleet_ejections",
            "Backends taken out of routing while healthy, by reason: 5xx, timeouts, 5xx_rate (outliers), probes.",
            ["reason"],
            registry=r,
        )
        self.hot_add = Histogram(
            "fleet_hot_add_seconds",
            "From a new vassal file seen to the backend healthy.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.reload = Histogram(
            "fleet_reload_seconds", "From reloading to healthy again.", buckets=DURATION_BUCKETS, registry=r
        )
        self.sync = Histogram("fleet_sync_seconds", "One control-plane pass.", buckets=PASS_BUCKETS, registry=r)
        r.register(_Collector(self))
        self.snapshot, self.counters = Snapshot(), Counters()
        self.emperor: EmperorStats | None = None
        self._lock = threading.Lock()
        self._usage: dict[str, Usage] = {}
        self._reloads: dict[str, int] = {}
        self._added: dict[str, float] = {}  # new file -> when it was seen (event time)
        self._reloading: dict[str, float] = {}  # reload in progress -> when it began

    # ---- fed by the control plane ------------------------------------------------------------------

    def on_event(self, e: Event) -> None:
        """A transition: count it, and time hot adds and reloads."""
        self.transitions.labels(e.old or "new", e.new or "gone").inc()
        if e.new == State.EJECTED:
            self.ejections.labels(outliers.kind(e.reason)).inc()
        with self._lock:
            if e.old is None and e.new == State.STARTING:
                self._added[e.name] = e.at
            elif e.old == State.STARTING:
                began = self._added.pop(e.name, None)
                if e.new == State.HEALTHY and began is not None:
                    self.hot_add.observe(max(0.0, e.at - began))
            if e.new == State.RELOADING:
                self._reloads[e.name] = self._reloads.get(e.name, 0) + 1
                self._reloading.setdefault(e.name, e.at)  # changed again meanwhile: one reload, timed from the first
            elif e.old == State.RELOADING:
                began = self._reloading.pop(e.name, None)
                if e.new == State.HEALTHY and began is not None:
                    self.reload.observe(max(0.0, e.at - began))
            if e.new is None:
                for kept in (self._usage, self._reloads, self._added, self._reloading):
                    kept.pop(e.name, None)

    def on_pass(self, report: PassReport) -> None:
        self.snapshot, self.counters, self.emperor = report.snapshot, report.counters, report.emperor
        self.sync.observe(report.seconds)
        with self._lock:
            for name, stats in report.stats.items():
                if stats is None:  # not answering: its workers are not known, not as last seen
                    self._usage.pop(name, None)
                else:
                    self._usage[name] = usage_of(stats, report.stats_at, self._usage.get(name))

    # ---- read by the admin server ------------------------------------------------------------------

    def scrape(self) -> bytes:
        """The Prometheus text format."""
        return generate_latest(self.registry)

    def usage(self, name: str) -> Usage | None:
        return self._usage.get(name)

    def reloads(self, name: str) -> int:
        return self._reloads.get(name, 0)

    def respawns(self, name: str) -> int:
        vassal = self.emperor.vassals.get(name) if self.emperor else None
        return vassal.respawns if vassal else 0


class _Collector:
    """The series read at scrape time from what Metrics holds."""

    def __init__(self, m: Metrics):
        self.m = m

    def collect(self) -> Iterator[Metric]:
        m = self.m
        snap, counters, now = m.snapshot, m.counters, m.wall()
        v = ["vassal"]
        state = GaugeMetricFamily("fleet_vassal_state", "1 for the backend's current state.", labels=[*v, "state"])
        routed = GaugeMetricFamily("fleet_vassal_routed", "1 if nginx sends the backend new requests.", labels=v)
        workers = GaugeMetricFamily("fleet_vassal_workers", "Workers by status.", labels=[*v, "status"])
        requests = CounterMetricFamily("fleet_vassal_requests", "Requests its workers served.", labels=v)
        exceptions = CounterMetricFamily("fleet_vassal_exceptions", "Exceptions its workers raised.", labels=v)
        respawns = CounterMetricFamily("fleet_vassal_respawns", "The Emperor's respawns of it (reloads too).", labels=v)
        reloads = CounterMetricFamily("fleet_vassal_reloads", "Times fleet reloaded it.", labels=v)
        memory = GaugeMetricFamily("fleet_vassal_memory_bytes", "PSS of its master and workers.", labels=v)
        weight = GaugeMetricFamily("fleet_vassal_weight", "Its weight (0: a warm standby, sent nothing).", labels=v)
        slots = GaugeMetricFamily(
            "fleet_vassal_slots", "nginx slots pointing at it (its share of new requests).", labels=v
        )
        age = GaugeMetricFamily(
            "fleet_vassal_seconds_since_transition", "Seconds since it entered its state.", labels=v
        )
        for name, b in snap.backends.items():
            for s in STATES:
                state.add_metric([name, s], 1.0 if b.state == s else 0.0)
            routed.add_metric([name], 1.0 if name in snap.routed else 0.0)
            usage = m.usage(name)
            workers.add_metric([name, "busy"], usage.busy if usage else 0)
            workers.add_metric([name, "idle"], usage.idle if usage else 0)
            requests.add_metric([name], usage.requests if usage else b.requests)
            exceptions.add_metric([name], usage.exceptions if usage else 0)
            respawns.add_metric([name], m.respawns(name))
            reloads.add_metric([name], m.reloads(name))
            memory.add_metric([name], b.memory)
            weight.add_metric([name], b.weight)
            slots.add_metric([name], b.slots)
            age.add_metric([name], max(0.0, round(now - b.since, 3)))
        yield from (state, routed, workers, requests, exceptions, respawns, reloads, memory, weight, slots, age)

        yield from _deploy_series(snap.deploy)

        yield CounterMetricFamily("fleet_nginx_reloads", "nginx reloads by fleet.", value=counters.nginx_reloads)
        yield CounterMetricFamily(
            "fleet_routing_changes", "Routing changes (slots re-pointed).", value=counters.routing_changes
        )
        yield CounterMetricFamily(
            "fleet_routing_errors", "Routing changes nginx refused.", value=counters.routing_errors
        )
        up = GaugeMetricFamily("fleet_up", "1 if this part of fleet runs.", labels=["part"])
        for part, running in m.parts().items():
            up.add_metric([part], 1.0 if running else 0.0)
        yield up

        connections, answers = m.nginx_view()
        if connections is not None:
            conns = GaugeMetricFamily("fleet_nginx_connections", "nginx's client connections.", labels=["state"])
            for key in ("active", "reading", "writing", "waiting"):
                conns.add_metric([key], getattr(connections, key))
            yield conns
            yield CounterMetricFamily(
                "fleet_nginx_connections_accepted", "Client connections nginx accepted.", value=connections.accepted
            )
            yield CounterMetricFamily("fleet_nginx_requests", "Requests nginx read.", value=connections.requests)
        responses = CounterMetricFamily(
            "fleet_nginx_responses",
            "nginx's answers by status class since the control plane started.",
            labels=["class"],
        )
        for cls, count in answers.items():
            responses.add_metric([cls], count)
        yield responses


def _deploy_series(deploy: dict | None) -> Iterator[Metric]:
    """The deploy in progress: its phase, the canary's share, and what it measured against its bounds."""
    running = GaugeMetricFamily("fleet_deploy_running", "1 while a deploy runs.", labels=["app", "version", "phase"])
    if deploy is None:
        yield running
        return
    plan = deploy["plan"]
    running.add_metric([plan["app"], plan["version"], deploy["phase"]], 1.0)
    yield running
    labels = ["app", "version"]
    key = [plan["app"], plan["version"]]
    for name, help_text, value in (
        ("fleet_deploy_canary_percent", "The new version's share of new requests (percent).", deploy["percent"]),
        ("fleet_deploy_canary_answers", "The canary's answers in this step.", deploy["window"]["answers"]),
        ("fleet_deploy_canary_error_rate", "The canary's 5xx rate in this step (percent).", deploy["error_rate"]),
        ("fleet_deploy_canary_p99_ms", "The canary's p99 in this step (ms).", deploy["p99"]),
        ("fleet_deploy_max_error_rate", "The 5xx rate bound (percent).", plan["max_error_rate"]),
        ("fleet_deploy_max_p99_ms", "The p99 bound (ms).", plan["max_p99"]),
    ):
        family = GaugeMetricFamily(name, help_text, labels=labels)
        family.add_metric(key, float(value))
        yield family
