"""One decision as it is made (pure): the backends as they become, and the transitions and actions."""

from __future__ import annotations

from dataclasses import dataclass

from fleet.core.actions import Action
from fleet.core.model import Backend, Model, Reload, Transition, move
from fleet.core.observations import Observed
from fleet.core.settings import Settings
from fleet.core.states import State
from fleet.core.stats import EmperorStats

S = State


@dataclass(frozen=True)
class Decision:
    model: Model
    transitions: tuple[Transition, ...]
    actions: tuple[Action, ...]
    wake_after: float  # look again after at most this many seconds (a file event may come sooner)


class Pass:
    """The working state of one decision: backends as they become, and what was decided."""

    def __init__(self, model: Model, observed: Observed, s: Settings, now: float):
        self.backends = dict(model.backends)
        self.observed, self.s, self.now = observed, s, now
        self.emperor: EmperorStats | None = observed.emperor or model.emperor
        self.old_emperor = model.emperor  # the reading before this one: respawns in between are crashes
        self.transitions: list[Transition] = []
        self.actions: list[Action] = []
        self.wake_emperor = False  # for a fixed file (the Emperor forgot its failures)

    def move(self, b: Backend, new: State, reason: str, **changes) -> Backend:
        moved, transition = move(b, new, self.now, reason, **changes)
        self.backends[b.name] = moved
        self.transitions.append(transition)
        return moved

    def fail(self, b: Backend, fallback: str) -> Backend:
        reason = self.observed.reasons.get(b.name) or fallback
        return self.move(b, S.FAILED, reason, error=reason, ready_at=None, reload=None, told_at=None)

    def blacklisted(self, name: str) -> bool:
        return self.emperor is not None and name in self.emperor.blacklist

    def probe_ok(self, name: str) -> bool:
        probe = self.observed.probes.get(name)
        return probe is not None and probe.ok

    def old_version(self, name: str) -> Reload:
        """A changed file while the vassal may still run the old one: healthy only once every worker is
        new (if the Emperor misses the change, it is nudged through the FIFO like a reload)."""
        stats = self.observed.stats.get(name)
        vassal = self.emperor.vassals.get(name) if self.emperor else None
        return Reload(
            old_workers=frozenset(w.pid for w in stats.workers) if stats else frozenset(),
            last_mod_before=vassal.last_mod if vassal else None,
        )

    def start_reload(self, b: Backend, reason: str) -> Backend:
        reload = self.old_version(b.name)
        drain_until, settled_at = self.now + self.s.drain_wait, self.settled_at(b.name)
        return self.move(
            b,
            S.RELOADING,
            reason,
            reload=reload,
            told_at=None,
            drain_until=drain_until,
            settled_at=settled_at,
            ready_at=None,
        )

    def settled_at(self, name: str) -> float | None:
        """For a backend leaving nginx now: when its idle workers will prove it drained (None: not routed)."""
        return self.now + self.s.drain_settle if name in self.observed.routed else None
