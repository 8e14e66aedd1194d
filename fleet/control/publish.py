"""Publishing (I/O, no decisions): the typed snapshot in run/state.json, with each vassal's usage."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from fleet.control.usage import memory_of
from fleet.core.model import Model
from fleet.core.settings import Settings
from fleet.core.stats import VassalStats
from fleet.layout import Layout
from fleet.published.events import Event
from fleet.published.snapshot import BackendView, Counters, Snapshot

RECENT_EVENTS = 50
HEARTBEAT = 2.0  # the snapshot is rewritten at least this often: its age tells that the control plane lives


class Publisher:
    """Writes the snapshot when its meaning changes; subscribes to events to keep the recent ones."""

    def __init__(
        self,
        layout: Layout,
        settings: Settings,
        read_stats: Callable[[str], VassalStats | None],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.layout, self.settings, self.read_stats, self.clock = layout, settings, read_stats, clock
        self.recent: deque[Event] = deque(maxlen=RECENT_EVENTS)
        self.usage: dict[str, tuple[int | None, int, int, int]] = {}  # name -> pid, workers, requests, memory
        self.usage_at = float("-inf")
        self.last: Snapshot | None = None
        self.last_written = float("-inf")
        # PSS costs ~2 ms per process to read (/proc/PID/smaps_rollup): 150 processes every second would
        # be a fifth of a core, so memory is read less often than the rest of the usage.
        self.memory: dict[str, tuple[float, tuple[int, ...], int]] = {}  # name -> (read at, pids, bytes)

    def on_event(self, event: Event) -> None:
        self.recent.append(event)

    def publish(self, model: Model, routed: frozenset[str], counters: Counters, routing_error: str, pid: int) -> None:
        now = self.clock()
        if now - self.usage_at >= self.settings.usage_interval:
            self.usage_at = now
            self.usage = {name: self._usage(name, now) for name in model.backends}
            self.memory = {name: m for name, m in self.memory.items() if name in model.backends}
        wall = time.time()
        views = {}
        for name, b in sorted(model.backends.items()):
            vassal_pid, workers, requests, memory = self.usage.get(name, (None, 0, 0, 0))
            views[name] = BackendView(
                name=name,
                state=b.state,
                since=round(wall - (now - b.since), 3),
                routed=name in routed,
                error=b.error,
                pid=vassal_pid,
                workers=workers,
                requests=requests,
                memory=memory,
                mtime_ns=b.mtime_ns,
                served_mtime_ns=b.served_mtime_ns,
            )
        snapshot = Snapshot(pid, wall, tuple(sorted(routed)), views, counters, routing_error, tuple(self.recent))
        if self.last is not None and _same(snapshot, self.last) and now - self.last_written < HEARTBEAT:
            return
        self.last, self.last_written = snapshot, now
        snapshot.write(self.layout)

    def _usage(self, name: str, now: float) -> tuple[int | None, int, int, int]:
        stats = self.read_stats(name)
        if stats is None:
            return None, 0, 0, 0
        pids = tuple(stats.pids)
        at, seen_pids, memory = self.memory.get(name, (float("-inf"), (), 0))
        if pids != seen_pids or now - at >= self.settings.memory_interval:  # new processes: read at once
            memory = memory_of(list(pids))
            self.memory[name] = (now, pids, memory)
        return stats.pid, len(stats.workers), sum(w.requests for w in stats.workers), memory


def _same(a: Snapshot, b: Snapshot) -> bool:
    """Equal but for the time written, the per-pass counters and the running totals (requests, memory):
    then there is nothing new to write before the heartbeat."""
    return _meaning(a) == _meaning(b)


def _meaning(s: Snapshot) -> Snapshot:
    counters = Counters(nginx_reloads=s.counters.nginx_reloads, routing_errors=s.counters.routing_errors)
    backends = {name: replace(b, requests=0, memory=0) for name, b in s.backends.items()}
    return replace(s, written_at=0, counters=counters, backends=backends)
