"""Publishing (I/O, no decisions): the typed snapshot in run/state.json, with each vassal's usage (its stats
socket, as the pass read it in a usage round: see fleet.core.looking.usage_round)."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence

from fleet.control.usage import memory_of
from fleet.core.model import Model
from fleet.core.settings import Settings
from fleet.core.states import State
from fleet.core.stats import VassalStats
from fleet.core.weights import DEFAULT_WEIGHT
from fleet.layout import Layout
from fleet.published.events import Event
from fleet.published.snapshot import HEARTBEAT, BackendView, Counters, Snapshot

RECENT_EVENTS = 50


class Publisher:
    """Writes the snapshot when its meaning changes; subscribes to events to keep the recent ones."""

    def __init__(
        self,
        layout: Layout,
        settings: Settings,
        read_stats: Callable[[str], VassalStats | None],  # the control plane's reader (ClusterObserver.stats)
        clock: Callable[[], float] = time.monotonic,
    ):
        self.layout, self.settings, self.read_stats, self.clock = layout, settings, read_stats, clock
        self.recent: deque[Event] = deque(maxlen=RECENT_EVENTS)
        self.usage: dict[str, tuple[int | None, int, int, int]] = {}  # name -> pid, workers, requests, memory
        self.usage_at = float("-inf")
        self.usage_states: dict[str, State] = {}  # each backend's state when its usage was last read
        self.last: Snapshot | None = None
        self.last_written = float("-inf")
        # PSS costs ~2 ms per process to read (/proc/PID/smaps_rollup): 150 processes every second would
        # be a fifth of a core, so memory is read less often than the rest of the usage.
        self.memory: dict[str, tuple[float, tuple[int, ...], int]] = {}  # name -> (read at, pids, bytes)
        self.watched = True  # someone watches the usage: memory at memory_interval, else memory_idle_interval
        # The wall clock minus ours, kept while they agree: each `since` then stays the same number from pass
        # to pass (computed afresh, its rounding moved, and an idle fleet's snapshot was rewritten each pass).
        self.wall_offset: float | None = None

    def on_event(self, event: Event) -> None:
        self.recent.append(event)

    def publish(
        self,
        model: Model,
        routed: frozenset[str],
        counters: Counters,
        routing_error: str,
        pid: int,
        weights: Mapping[str, int] | None = None,
        slots: Sequence[str] = (),
        deploy: dict | None = None,
        read: Mapping[str, VassalStats | None] | None = None,
        watched: bool = True,
    ) -> None:
        """Write the snapshot if its meaning changed (or at the heartbeat). `read`: the stats this pass read
        (None: no answer), every backend's in a usage round; None: none read, the usage stays as last read.
        `watched`: someone watches the usage now (memory is read more often then)."""
        now = self.clock()
        self.watched = watched
        if read is not None:
            self.usage_at = now
            usage = {name: self._usage(name, stats, now) for name, stats in read.items()}
            self.usage = usage
            self.memory = {name: m for name, m in self.memory.items() if name in model.backends}
            self.usage_states = {name: b.state for name, b in model.backends.items()}
        else:
            # A backend whose state moved since its usage was read (e.g. it just became healthy) is read
            # now, so that the snapshot a transition writes (and `fleet status` right after `fleet up`)
            # shows its pid and workers, not the usage of what it was.
            moved = [n for n, b in model.backends.items() if self.usage_states.get(n) != b.state]
            # (Not returned: the subscribers' rates need every backend read at one time, `usage_at`.)
            for name in moved:
                self.usage[name] = self._usage(name, self.read_stats(name), now)
                self.usage_states[name] = model.backends[name].state
        wall = time.time()
        if self.wall_offset is None or abs(wall - now - self.wall_offset) > 0.5:
            self.wall_offset = wall - now  # the first pass, or the wall clock was set
        offset = self.wall_offset
        views = {}
        pointed = Counter(slots)  # each backend's slots, counted once (not a pass over the slots per backend)
        for name, b in sorted(model.backends.items()):
            vassal_pid, workers, requests, memory = self.usage.get(name, (None, 0, 0, 0))
            views[name] = BackendView(
                name=name,
                state=b.state,
                since=round(offset + b.since, 3),
                routed=name in routed,
                error=b.error,
                pid=vassal_pid,
                workers=workers,
                requests=requests,
                memory=memory,
                mtime_ns=b.mtime_ns,
                served_mtime_ns=b.served_mtime_ns,
                app=b.app,
                weight=(weights or {}).get(name, DEFAULT_WEIGHT),
                slots=pointed[name],
            )
        snapshot = Snapshot(
            pid, wall, tuple(sorted(routed)), views, counters, routing_error, tuple(self.recent), deploy
        )
        if self.last is None or not _same(snapshot, self.last) or now - self.last_written >= HEARTBEAT:
            self.last, self.last_written = snapshot, now
            snapshot.write(self.layout)

    def _usage(self, name: str, stats: VassalStats | None, now: float) -> tuple[int | None, int, int, int]:
        if stats is None:
            return None, 0, 0, 0
        pids = tuple(stats.pids)
        at, seen_pids, memory = self.memory.get(name, (float("-inf"), (), 0))
        every = self.settings.memory_interval if self.watched else self.settings.memory_idle_interval
        if pids != seen_pids or now - at >= every:  # new processes: read at once
            memory = memory_of(list(pids))
            self.memory[name] = (now, pids, memory)
        return stats.pid, len(stats.workers), stats.requests, memory


def _same(a: Snapshot, b: Snapshot) -> bool:
    """Equal but for the time written, the per-pass counters and the running totals (requests, memory):
    then there is nothing new to write before the heartbeat."""
    return _meaning(a) == _meaning(b)


def _meaning(s: Snapshot) -> tuple:
    """What `_same` compares, as plain tuples: every pass builds it (dataclasses.replace on each backend's
    view cost 200 backends ~7 ms a pass)."""
    backends = tuple(
        (n, b.state, b.since, b.routed, b.error, b.pid, b.workers, b.mtime_ns, b.served_mtime_ns, b.weight, b.slots)
        for n, b in s.backends.items()
    )
    counters = (s.counters.nginx_reloads, s.counters.routing_errors)
    return (s.control_pid, s.routed, backends, counters, s.routing_error, s.events, s.deploy)
