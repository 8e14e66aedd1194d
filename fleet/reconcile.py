"""The control plane's decisions (pure): what to look at, and what to do about what was seen.

Level-based, like a Kubernetes reconciler: each pass reads the whole wanted state (the files) and the
observed one (probes, stats, what nginx routes), and returns the backends' new states, the actions that
bring the world closer to them, and when to look again. Nothing here sleeps: a drain is a deadline a
later pass checks. Ordering is the point: a backend leaves nginx before the Emperor is told to stop or
reload it, and joins nginx only after it answers a health probe.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fleet.actions import Action, ClearBlacklist, Forget, ReloadThroughFifo, Route, WakeEmperor
from fleet.model import Backend, Model, Reload, Transition, move
from fleet.observations import Observed, Wanted
from fleet.plan import health_round
from fleet.routing import wanted_routes
from fleet.settings import Settings
from fleet.states import IN_FLIGHT, State, check_transition
from fleet.stats import EmperorStats, VassalStats

S = State


@dataclass(frozen=True)
class Decision:
    model: Model
    transitions: tuple[Transition, ...]
    actions: tuple[Action, ...]
    wake_after: float  # look again after at most this many seconds (a file event may come sooner)


class _Pass:
    """The working state of one decision: backends as they become, and what was decided."""

    def __init__(self, model: Model, observed: Observed, s: Settings, now: float):
        self.backends = dict(model.backends)
        self.observed, self.s, self.now = observed, s, now
        self.emperor: EmperorStats | None = observed.emperor or model.emperor
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
        drain_until = self.now + self.s.drain_wait
        return self.move(b, S.RELOADING, reason, reload=reload, told_at=None, drain_until=drain_until, ready_at=None)


def decide(wanted: Wanted, observed: Observed, model: Model, s: Settings, now: float) -> Decision:
    """From what is wanted and what was observed: the new model, the transitions, the actions, when to look again."""
    p = _Pass(model, observed, s, now)
    _apply_files(p, wanted)
    for name in list(p.backends):
        _progress(p, p.backends[name], wanted)
    routes = wanted_routes(observed.routed, p.backends, now, s.batch_window)
    wake_after = s.busy_interval if _in_flight(p.backends, routes) else s.tick
    if routes != observed.routed:
        failed_at = observed.routing_failed_at if observed.routing_failed_at is not None else now
        retry_at = failed_at + s.routing_retry
        if not observed.routing_error or now >= retry_at:
            p.actions.insert(0, Route(routes))
        else:
            wake_after = min(wake_after, retry_at - now)
    for name in observed.routed & set(p.backends):
        if p.backends[name].ready_at is not None:  # its batch is in nginx now
            p.backends[name] = replace(p.backends[name], ready_at=None)
    _tell_all(p, routes)
    new_model = Model(
        backends=p.backends,
        emperor=p.emperor,
        emperor_read_at=now if observed.emperor is not None else model.emperor_read_at,
        health_at=now if health_round(model, now, s) else model.health_at,
    )
    return Decision(new_model, tuple(p.transitions), tuple(p.actions), wake_after)


def _in_flight(backends: dict[str, Backend], routes: frozenset[str]) -> bool:
    return any(b.state in IN_FLIGHT or (b.state == S.HEALTHY and b.name not in routes) for b in backends.values())


def _apply_files(p: _Pass, wanted: Wanted) -> None:
    """New, changed and deleted files, and `fleet rm` drain requests."""
    for name, b in list(p.backends.items()):
        if name not in wanted.files and b.state != S.REMOVING:
            p.move(b, S.REMOVING, "its file was deleted", drain_until=p.now + p.s.drain_wait, told_at=None, reload=None)
    for name, file in wanted.files.items():
        b = p.backends.get(name)
        if b is None:
            _new_file(p, name, file.mtime_ns, file.problem)
            continue
        if b.state == S.REMOVING and not file.problem:
            reload = p.old_version(name) if file.mtime_ns != b.mtime_ns else None
            b = replace(b, mtime_ns=file.mtime_ns)
            p.move(b, S.STARTING, "its file is back", error="", told_at=None, drain_until=None, reload=reload)
        elif file.mtime_ns != b.mtime_ns:
            b = replace(b, mtime_ns=file.mtime_ns)
            p.backends[name] = b
            if file.problem and b.state == S.FAILED:
                p.backends[name] = replace(b, error=file.problem)
            elif file.problem:
                p.move(b, S.FAILED, file.problem, error=file.problem, ready_at=None, reload=None, told_at=None)
            elif b.state == S.FAILED:
                p.move(b, S.STARTING, "its file changed", error="", reload=p.old_version(name))
                p.actions.append(ClearBlacklist())
                if p.emperor is not None:  # SIGURG empties it: do not fail the fixed file on the old list
                    p.emperor = replace(p.emperor, blacklist={})
                p.wake_emperor = True
            elif b.state in (S.EJECTED, S.STARTING):
                reload = p.old_version(name)
                if b.state == S.EJECTED:
                    p.move(b, S.STARTING, "its file changed", error="", reload=reload)
                else:
                    p.backends[name] = replace(b, since=p.now, reload=reload)  # its start timeout begins again
            elif b.state == S.RELOADING:
                p.backends[name] = replace(b, reload=replace(b.reload, again=True)) if b.reload else b
            elif b.state == S.HEALTHY:
                p.start_reload(b, "its file changed")
        b = p.backends[name]
        if name in wanted.drain and b.state not in (S.DRAINING, S.REMOVING):
            p.move(b, S.DRAINING, "`fleet rm` asked to drain it", ready_at=None, reload=None, told_at=None)
        elif b.state == S.DRAINING and name not in wanted.drain:
            p.move(b, S.STARTING, "no longer asked to drain")


def _new_file(p: _Pass, name: str, mtime_ns: int, problem: str) -> None:
    b = Backend(name, S.STARTING, p.now, mtime_ns)
    if problem:
        b = replace(b, state=S.FAILED, error=problem)
        reason = problem
    elif name in p.observed.routed and name in p.observed.probes and (p.probe_ok(name) or p.observed.probes[name].busy):
        # A restarted control plane keeps routing what still serves: no 503 window.
        b = replace(b, state=S.HEALTHY, served_mtime_ns=mtime_ns)
        reason = "already routed and serving"
    else:
        reason = "new vassal file"
    check_transition(name, None, b.state)
    p.backends[name] = b
    p.transitions.append(Transition(name, None, b.state, reason))


def _progress(p: _Pass, b: Backend, wanted: Wanted) -> None:
    """Move one backend on what was observed of it."""
    name, s, now = b.name, p.s, p.now
    probe = p.observed.probes.get(name)
    accepting = p.emperor is not None and name in p.emperor.vassals and p.emperor.vassals[name].accepting
    if b.state in (S.STARTING, S.EJECTED):
        if p.blacklisted(name) and not accepting:
            p.fail(b, f"keeps exiting at start; see {name}.log")
        elif (
            probe is not None
            and probe.ok
            and (b.reload is None or _reload_finished(p.observed.stats.get(name), b.reload))
        ):
            reason = "answers its health probe" if b.state == S.STARTING else "answers its health probe again"
            changes = dict(served_mtime_ns=b.mtime_ns, error="", probe_failures=0, ready_at=now, reload=None)
            p.move(b, S.HEALTHY, reason, **changes)
        else:
            if probe is not None:
                b = p.backends[name] = replace(b, last_probe=probe.detail)
            if b.reload is not None and not b.reload.nudged and now - b.since > s.nudge_after:
                if not _reload_started(p.observed.stats.get(name), b.reload) and b.reload.old_workers:
                    # The old version still runs and the Emperor missed the change (same second).
                    p.actions.append(ReloadThroughFifo(name))
                    b = p.backends[name] = replace(b, reload=replace(b.reload, nudged=True))
            if now - b.since > s.start_timeout:
                got = f"; last probe: {b.last_probe}" if b.last_probe else ""
                if "expected" in b.last_probe:
                    got += "; set health_path or health_status in a [fleet] section of its file"
                since = "start" if b.state == S.STARTING else "it was ejected"
                p.fail(b, f"not healthy {s.start_timeout:.0f} s after {since}{got}; see {name}.log")
    elif b.state == S.HEALTHY and probe is not None:
        if probe.ok or probe.busy:
            p.backends[name] = replace(b, probe_failures=0)
        elif b.probe_failures + 1 >= s.probe_failures_to_eject:
            why = f"stopped answering health probes ({probe.detail})"
            p.move(b, S.EJECTED, why, error=why, probe_failures=0, last_probe=probe.detail, ready_at=None)
        else:
            p.backends[name] = replace(b, probe_failures=b.probe_failures + 1, last_probe=probe.detail)
    elif b.state == S.RELOADING and b.told_at is not None:
        _progress_reload(p, b)
    elif b.state == S.REMOVING and b.told_at is not None:
        gone = p.observed.emperor is not None and name not in p.observed.emperor.vassals
        if gone or now - b.since > s.reload_timeout:
            p.actions.append(Forget(name))
            del p.backends[name]
            p.transitions.append(Transition(name, S.REMOVING, None, "its processes are gone"))
    elif b.state == S.FAILED and probe is not None and probe.ok and not p.blacklisted(name):
        if not wanted.files[name].problem:
            p.move(b, S.HEALTHY, "answers its health probe again", error="", served_mtime_ns=b.mtime_ns, ready_at=now)


def _reload_finished(stats: VassalStats | None, reload: Reload) -> bool:
    """Every worker is new and accepting (the app's answer is checked by the probe)."""
    if stats is None or not stats.workers:
        return False
    return all(w.pid not in reload.old_workers and w.accepting for w in stats.workers)


def _reload_started(stats: VassalStats | None, reload: Reload) -> bool:
    if stats is None:
        return True  # the master is busy or re-executing: something is happening
    return any(w.pid not in reload.old_workers or not w.accepting for w in stats.workers)


def _progress_reload(p: _Pass, b: Backend) -> None:
    name, s, now, reload = b.name, p.s, p.now, b.reload or Reload(frozenset(), None)
    stats = p.observed.stats.get(name)
    if _reload_finished(stats, reload) and p.probe_ok(name):
        if reload.again:
            p.start_reload(b, "its file changed during the reload")
            return
        p.move(b, S.HEALTHY, "reload finished", served_mtime_ns=b.mtime_ns, reload=None, told_at=None, ready_at=now)
    elif p.blacklisted(name):
        p.fail(b, f"exited during reload; see {name}.log")
    elif now - b.since > s.reload_timeout:
        p.fail(b, f"reload not finished after {s.reload_timeout:.0f} s; see {name}.log")
    elif not reload.nudged and now - (b.told_at or now) > s.nudge_after and not _reload_started(stats, reload):
        p.actions.append(ReloadThroughFifo(name))
        p.backends[name] = replace(b, reload=replace(reload, nudged=True))


def _tell_all(p: _Pass, routes: frozenset[str]) -> None:
    """Tell the Emperor to reload or stop the backends that are out of nginx and drained.

    Waking the Emperor makes it act on every changed file at once, so it is woken only when no other
    backend still has to leave nginx or drain first (each drain is bounded by its deadline).
    """
    pending = [b for b in p.backends.values() if b.state in (S.RELOADING, S.REMOVING) and b.told_at is None]
    ready = {b.name: _ready_to_tell(p, b, routes) for b in pending}
    if not all(ready.values()):
        return
    for b in pending:
        _tell(p, p.backends[b.name])
    if pending or p.wake_emperor:
        p.actions.append(WakeEmperor())


def _ready_to_tell(p: _Pass, b: Backend, routes: frozenset[str]) -> bool:
    if b.state == S.RELOADING and b.reload is not None and not b.reload.old_workers:
        stats = p.observed.stats.get(b.name)
        if stats is None and p.now < (b.drain_until or p.now):
            return False  # the workers to replace are not known yet: ask again
        if stats is not None:
            reload = replace(b.reload, old_workers=frozenset(w.pid for w in stats.workers))
            p.backends[b.name] = replace(b, reload=reload)
    stats = p.observed.stats.get(b.name)
    idle = stats is None or all(w.status == "idle" for w in stats.workers)
    drained = b.name not in p.observed.routed and (idle or p.now >= (b.drain_until or p.now))
    keeps_traffic = b.state == S.RELOADING and b.name in routes  # alone: requests wait in its backlog
    return drained or keeps_traffic


def _tell(p: _Pass, b: Backend) -> None:
    reload = b.reload
    if reload is not None and p.emperor is not None and b.name in p.emperor.vassals:
        # The Emperor sees a change only when the mtime's whole second moves past the last one it saw:
        # a second change within one second is lost. The vassal's master FIFO reloads it anyway.
        second = b.mtime_ns // 1_000_000_000
        if reload.last_mod_before is not None and second <= reload.last_mod_before:
            p.actions.append(ReloadThroughFifo(b.name))
            reload = replace(reload, nudged=True)
    p.backends[b.name] = replace(b, told_at=p.now, reload=reload)
