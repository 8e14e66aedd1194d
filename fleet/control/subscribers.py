"""What the control-plane loop tells its subscribers (the metrics, the admin listener's feed): every
transition as it happens, and after each pass what that pass saw and published. The loop reads; its
subscribers only keep a view of what it read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from fleet.core.stats import EmperorStats, VassalStats
from fleet.published.events import Event
from fleet.published.snapshot import Counters, Snapshot


@dataclass(frozen=True)
class PassReport:
    """One control-plane pass, after it published."""

    snapshot: Snapshot  # the last published one (the same object while nothing changed)
    counters: Counters = field(default_factory=Counters)
    emperor: EmperorStats | None = None  # the Emperor's last answer
    seconds: float = 0.0  # how long the pass took, publishing aside
    # The vassals' stats sockets read by this pass (about once a second, for the published usage; most
    # passes read none): None for one that did not answer. Read at `stats_at` on the control plane's clock.
    stats: Mapping[str, VassalStats | None] = field(default_factory=dict)
    stats_at: float = 0.0


class Subscriber(Protocol):
    def on_event(self, event: Event) -> None: ...

    def on_pass(self, report: PassReport) -> None: ...
