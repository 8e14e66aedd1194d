"""What the control plane is told each pass: what is wanted, what to look at, and what it saw (pure values)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fleet.core.apps import DEFAULT, App
from fleet.core.stats import EmperorStats, Served, VassalStats


@dataclass(frozen=True)
class FileInfo:
    """One vassal file: its version and, if it cannot run, why."""

    mtime_ns: int
    problem: str = ""  # empty: valid
    app: App = DEFAULT  # the app it serves, and where (its [fleet] section)


@dataclass(frozen=True)
class Wanted:
    """What the operator asks for: the files in vassals/, and the backends `fleet rm` is draining."""

    files: dict[str, FileInfo]
    drain: frozenset[str] = frozenset()
    watched_at: float = float("-inf")  # when someone last wanted fresh usage (status page, /metrics, `fleet status`)


@dataclass(frozen=True)
class Look:
    """What to observe this pass (chosen by the core, done by the observer)."""

    emperor: bool = False  # read its stats (this also wakes it to rescan vassals/)
    probe: frozenset[str] = frozenset()  # health probes
    stats: frozenset[str] = frozenset()  # the vassal's own stats socket (workers)
    reasons: frozenset[str] = frozenset()  # the failure reason in the vassal's log
    usage: bool = False  # read every backend's stats socket, for the published usage
    # Health from traffic: probe these only if their stats, read now, do not show answers since these counts.
    unless_answered: dict[str, Served] = field(default_factory=dict)


@dataclass(frozen=True)
class Probe:
    """The answer to one health probe."""

    ok: bool
    detail: str = ""  # what it got, e.g. "GET /healthz -> 404" or "connection refused"
    busy: bool = False  # not answered, but every worker is busy with a request: alive, just slow
    traffic: bool = False  # not sent: its stats show it answered users since the last look (ok is True)


@dataclass(frozen=True)
class Observed:
    """What the observer saw for a Look, and what nginx routes to."""

    routed: frozenset[str] = frozenset()
    apps: tuple[App, ...] = (DEFAULT,)  # the apps nginx's config serves now
    members: dict[str, str] = field(default_factory=dict)  # the app of each routed backend not in the default app
    emperor: EmperorStats | None = None  # None: not read this pass, or not answering
    probes: dict[str, Probe] = field(default_factory=dict)
    stats: dict[str, VassalStats] = field(default_factory=dict)  # absent: not read or not answering
    reasons: dict[str, str] = field(default_factory=dict)
    routing_error: str = ""  # the last routing change nginx refused ("" when the last one worked)
    routing_failed_at: float | None = None
    # The upstream status of each answer nginx got from a backend since the last pass, oldest first.
    answers: dict[str, tuple[int, ...]] = field(default_factory=dict)
    usage: bool = False  # every backend's stats socket was read (a usage round): `stats` lacks those not answering
