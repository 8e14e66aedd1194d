"""What to observe each pass (pure): only what a decision can depend on, at the rate it needs.

Looking is not free: reading the Emperor's stats wakes it to rescan vassals/ (so not while a backend
must first leave nginx), and probing 50 vassals every 20 ms would cost a core. So a routed backend whose
traffic shows it answers (its workers' request count moved since the last look, no new exception) is not
probed as well, and the stats sockets are read every second only while someone watches the usage or
something just changed; otherwise every usage_idle_interval, for state.json's totals.
"""

from __future__ import annotations

from fleet.core import outliers
from fleet.core.model import Backend, Model
from fleet.core.observations import Look, Wanted
from fleet.core.settings import Settings
from fleet.core.states import State
from fleet.core.stats import Served, VassalStats

S = State


def health_round(model: Model, now: float, s: Settings) -> bool:
    return now - model.health_at >= s.health_interval


def usage_round(model: Model, wanted: Wanted, now: float, s: Settings) -> bool:
    """Every backend's stats socket is read: at usage_interval while someone watched within watch_window or
    a backend changed state that recently, else at usage_idle_interval."""
    recent = now - s.watch_window
    lively = wanted.watched_at >= recent or any(b.since >= recent for b in model.backends.values())
    return now - model.usage_at >= (s.usage_interval if lively else s.usage_idle_interval)


def answered(before: Served, stats: VassalStats | None) -> bool:
    """Whether `stats`, read now, show that the vassal answered users since `before`: the same master, its
    workers' request count moved beyond our own probes, and no new exception. A 5xx the app itself returns
    is not told apart here (nginx's answers are): this stands for "answers", as a probe does."""
    return (
        stats is not None
        and stats.pid == before.pid
        and stats.requests > before.requests
        and stats.exceptions <= before.exceptions
    )


def _holding_emperor(model: Model, wanted: Wanted) -> bool:
    """Reading the Emperor's stats wakes it: not while a backend must first leave nginx and drain."""
    for name, b in model.backends.items():
        file = wanted.files.get(name)
        if b.state in (S.RELOADING, S.REMOVING) and b.told_at is None:
            return True  # draining before the Emperor hears of it
        if file is None and b.state != S.REMOVING:
            return True  # just deleted: it leaves nginx first
        if file is not None and file.mtime_ns != b.mtime_ns and b.state == S.HEALTHY:
            return True  # just changed: it leaves nginx (and drains) before it reloads
    return False


def _emperor_period(model: Model, s: Settings) -> float:
    backends = model.backends.values()
    if any(b.told_at is not None and b.state in (S.RELOADING, S.REMOVING) for b in backends):
        return s.emperor_urgent_poll
    return s.emperor_poll if any(b.state != S.HEALTHY for b in backends) else s.emperor_idle_poll


def what_to_observe(model: Model, wanted: Wanted, now: float, s: Settings) -> Look:
    """What to observe this pass: only what a decision can depend on, at the rate it needs."""
    backends = model.backends
    new = {n for n in wanted.files if n not in backends}
    changed = {n for n, f in wanted.files.items() if n in backends and f.mtime_ns != backends[n].mtime_ns}
    due = now - model.emperor_read_at >= _emperor_period(model, s)
    emperor = not _holding_emperor(model, wanted) and bool(new or changed or due)
    health = health_round(model, now, s)
    usage = usage_round(model, wanted, now, s)
    blacklist = model.emperor.blacklist if model.emperor else {}
    probe = {n for n in new if not wanted.files[n].problem}
    stats, reasons = set(changed), set()
    unless_answered: dict[str, Served] = {}
    for name, b in backends.items():
        if b.state == S.EJECTED and outliers.held(b.outlier, now):
            continue  # an outlier within its ejection time: not routed again yet, whatever it answers
        if b.state in (S.STARTING, S.EJECTED, S.RELOADING):
            probe.add(name)
            timeout = s.reload_timeout if b.state == S.RELOADING else s.start_timeout
            if emperor or name in blacklist or now - b.since > timeout:
                reasons.add(name)
        elif health and b.state == S.HEALTHY:
            if (served := _traffic_may_answer(model, b, usage)) is not None:
                unless_answered[name] = served
            else:
                probe.add(name)
        elif health and b.state == S.FAILED and name not in blacklist and name in wanted.files:
            if not wanted.files[name].problem:
                probe.add(name)  # e.g. the app was fixed and the Emperor retried
        if b.state == S.RELOADING or (b.state == S.REMOVING and b.told_at is None) or b.reload is not None:
            stats.add(name)
    unless_answered = {n: served for n, served in unless_answered.items() if n in wanted.files}
    return Look(
        emperor, frozenset(probe & set(wanted.files)), frozenset(stats), frozenset(reasons), usage, unless_answered
    )


def _traffic_may_answer(model: Model, b: Backend, usage: bool) -> Served | None:
    """The counts a healthy backend's stats, read now, must pass to stand for its probe this round, or None
    (probe it): counts read since the last round (so that what they show is from this interval), no probe
    failed since, and its stats read anyway (a usage round) or it answered users when they were read last.
    One that nobody uses gets its probe alone, not a read of its stats as well."""
    served = b.served
    if served is None or served.at < model.health_at or b.probe_failures:
        return None
    if usage or (b.answered_at is not None and b.answered_at >= served.at):
        return served.since(model.probe_rounds)  # with the probes of the rounds since it was read
    return None
