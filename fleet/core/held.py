"""A vassal's held socket while no vassal serves it (pure): how long what waits on it may wait.

The supervisor holds every vassal's listening socket (fleet/ops/sockets.py), so connections queued on it
outlive a crash of the vassal and are served by the respawned workers. But a connection queued where no
vassal will come (a respawn throttled after a failed start, an app that no longer imports, an Emperor
restarting with a growing backoff) would wait until its client gives up: connect() succeeded into the
backlog, so nginx never sees a refusal. After `grace` seconds without a vassal, the holder refuses what
waits (nginx retries a GET on another backend, or answers a fast 502), until a vassal takes it again.

An outage starts when a vassal exits, unless that vassal's start failed: it was launched after the
Emperor's throttle (`THROTTLED` or more after the exit before it: a vassal that failed to start is retried
after 1 s, 2 s, ...; a crashed one that had served is respawned at once) and lived less than
`FAILED_START`. Then the outage goes on from its beginning, so a loop of failing starts cannot keep a
connection waiting much longer than `grace`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# Seconds without a vassal process: from a crashed master's exit to its successor's launcher asking for the
# socket took 0.06-0.08 s here with a core busy (the supervisor logs each); the successor's workers accept
# ~0.3 s later, and meanwhile the socket has a vassal, so that time does not count.
GRACE = 2.0
FAILED_START = 1.0  # seconds: a throttled vassal that exits younger than this never served
THROTTLED = 0.9  # seconds from an exit to the next launch: the Emperor throttled it (its least is 1 s)


@dataclass(frozen=True)
class Outage:
    """What the holder knows of one socket's vassals (monotonic seconds)."""

    down_since: float | None = None  # when the outage began; None: never down
    launched_at: float | None = None  # when a vassal last took the socket
    exited_at: float | None = None  # when a vassal last exited


def launched(o: Outage, now: float) -> Outage:
    """A vassal's launcher took the socket at `now`."""
    return replace(o, launched_at=now)


def exited(o: Outage, now: float) -> Outage:
    """The vassal that had the socket exited at `now`."""
    launch, before = o.launched_at, o.exited_at
    throttled = launch is not None and before is not None and launch - before >= THROTTLED
    failed_start = throttled and launch is not None and now - launch < FAILED_START
    down_since = o.down_since if failed_start and o.down_since is not None else now
    return replace(o, down_since=down_since, exited_at=now)


def refuse_in(o: Outage, running: bool, now: float, grace: float = GRACE) -> float | None:
    """Seconds until what waits on the socket is refused (0: refuse now); None: nothing to refuse (a vassal
    runs, or none ever exited)."""
    if running or o.down_since is None:
        return None
    return max(0.0, o.down_since + grace - now)
