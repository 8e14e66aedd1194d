"""What the control plane knows of each backend, and of the last look at the Emperor (pure values)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from fleet.core.outliers import Record
from fleet.core.states import State, check_transition
from fleet.core.stats import EmperorStats, Served


@dataclass(frozen=True)
class Reload:
    """A reload in progress: what it started from, and how far it got."""

    old_workers: frozenset[int]  # the worker pids before the reload; all must be replaced
    last_mod_before: int | None  # the Emperor's last_mod for the file before the change
    nudged: bool = False  # already asked through the master FIFO
    again: bool = False  # the file changed again during this reload: reload once more after it


@dataclass(frozen=True)
class Backend:
    """One vassal as the control plane tracks it. Immutable: each decision returns new values."""

    name: str
    state: State
    since: float  # when it entered its state (the control plane's clock)
    mtime_ns: int  # the file version acted on
    served_mtime_ns: int = 0  # the file version serving now (set when a start or reload completes)
    error: str = ""
    ready_at: float | None = None  # healthy, not yet routed: waiting for its batch since then
    probe_failures: int = 0
    last_probe: str = ""  # what the last failed probe got, for the operator
    drain_until: float | None = None  # unrouted: may finish what nginx sent it until then
    settled_at: float | None = None  # left nginx while routed: idle workers prove it drained only from then
    told_at: float | None = None  # when the Emperor was told to reload or stop it
    reload: Reload | None = None
    crashes: tuple[float, ...] = ()  # recent crashes after a healthy start (see fleet.flapping)
    retry_at: float | None = None  # failed for flapping: not started again before then
    outlier: Record = Record()  # its recent answers and outlier ejections (see fleet.core.outliers)
    app: str = "default"  # the app it is a replica of (its file's [fleet] app)
    served: Served | None = None  # its counts at the last read of its stats, with the probes sent since
    answered_at: float | None = None  # the last read of its stats that showed it answered users


@dataclass(frozen=True)
class Transition:
    """One move of one backend, with the reason; the runtime publishes it as an event."""

    name: str
    old: State | None
    new: State | None
    reason: str
    app: str = "default"  # the app the backend is a replica of


def move(backend: Backend, new: State, now: float, reason: str, **changes) -> tuple[Backend, Transition]:
    """`backend` in state `new` from `now`, guarded by the transition table."""
    check_transition(backend.name, backend.state, new)
    moved = replace(backend, state=new, since=now, **changes)
    return moved, Transition(backend.name, backend.state, new, reason)


@dataclass(frozen=True)
class Model:
    """The control plane's whole memory between two passes."""

    backends: dict[str, Backend] = field(default_factory=dict)
    emperor: EmperorStats | None = None  # the last answer of the Emperor's stats socket
    emperor_read_at: float = float("-inf")
    health_at: float = float("-inf")  # the last round of health probes
    probe_rounds: int = 0  # health rounds done (what Served.since counts probes by)
    usage_at: float = float("-inf")  # the last read of every backend's stats socket (the published usage)
