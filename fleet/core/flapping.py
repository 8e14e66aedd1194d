"""Backends that keep crashing after a healthy start (pure): noticed, failed, retried with backoff.

A crash is the Emperor respawning the vassal (its `respawns` count went up) or the backend being
ejected for failed probes. `flap_crashes` crashes within `flap_window` seconds make it FAILED, out of
nginx, until `retry_at`; then it starts again and is routed once it answers. Each further crash
within the window doubles the wait.
"""

from __future__ import annotations

from dataclasses import replace

from fleet.core.model import Backend
from fleet.core.settings import Settings
from fleet.core.stats import EmperorStats


def respawns_since(old: EmperorStats | None, new: EmperorStats | None, name: str) -> int:
    """How many times the Emperor respawned `name` between two readings of its stats."""
    if old is None or new is None or name not in old.vassals or name not in new.vassals:
        return 0
    return max(0, new.vassals[name].respawns - old.vassals[name].respawns)


def note_crashes(b: Backend, count: int, now: float, s: Settings) -> Backend:
    """`b` with `count` more crashes at `now`, forgetting those older than the window."""
    recent = tuple(t for t in b.crashes if now - t <= s.flap_window) + (now,) * count
    return replace(b, crashes=recent)


def flapping(b: Backend, s: Settings) -> bool:
    return len(b.crashes) >= s.flap_crashes


def retry_delay(b: Backend, s: Settings) -> float:
    """How long a flapping backend stays out: doubled for each crash past the threshold."""
    extra = max(0, len(b.crashes) - s.flap_crashes)
    return min(s.flap_backoff_max, s.flap_backoff * 2**extra)


def describe(b: Backend, s: Settings, delay: float) -> str:
    return f"crashed {len(b.crashes)} times in {s.flap_window:.0f} s; retrying in {delay:.0f} s"
