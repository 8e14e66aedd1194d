"""Handing a backend to the Emperor and back (pure): tell it to reload or stop a backend only once the
backend is out of nginx and drained, and see a reload through to every worker being new."""

from __future__ import annotations

from dataclasses import replace

from fleet.core.actions import ReloadThroughFifo, WakeEmperor
from fleet.core.decision import Pass
from fleet.core.model import Backend, Reload
from fleet.core.states import State
from fleet.core.stats import VassalStats

S = State


def reload_finished(stats: VassalStats | None, reload: Reload) -> bool:
    """Every worker is new and accepting (the app's answer is checked by the probe)."""
    if stats is None or not stats.workers:
        return False
    return all(w.pid not in reload.old_workers and w.accepting for w in stats.workers)


def reload_started(stats: VassalStats | None, reload: Reload) -> bool:
    if stats is None:
        return True  # the master is busy or re-executing: something is happening
    return any(w.pid not in reload.old_workers or not w.accepting for w in stats.workers)


def progress_reload(p: Pass, b: Backend) -> None:
    name, s, now, reload = b.name, p.s, p.now, b.reload or Reload(frozenset(), None)
    stats = p.observed.stats.get(name)
    if reload_finished(stats, reload) and p.probe_ok(name):
        if reload.again:
            p.start_reload(b, "its file changed during the reload")
            return
        p.move(b, S.HEALTHY, "reload finished", served_mtime_ns=b.mtime_ns, reload=None, told_at=None, ready_at=now)
    elif p.blacklisted(name):
        p.fail(b, f"exited during reload; see {name}.log")
    elif now - b.since > s.reload_timeout:
        p.fail(b, f"reload not finished after {s.reload_timeout:.0f} s; see {name}.log")
    elif not reload.nudged and now - (b.told_at or now) > s.nudge_after and not reload_started(stats, reload):
        p.actions.append(ReloadThroughFifo(name))
        p.backends[name] = replace(b, reload=replace(reload, nudged=True))


def tell_all(p: Pass, routes: frozenset[str]) -> None:
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


def _ready_to_tell(p: Pass, b: Backend, routes: frozenset[str]) -> bool:
    if b.state == S.RELOADING and b.reload is not None and not b.reload.old_workers:
        stats = p.observed.stats.get(b.name)
        if stats is None and p.now < (b.drain_until or p.now):
            return False  # the workers to replace are not known yet: ask again
        if stats is not None:
            reload = replace(b.reload, old_workers=frozenset(w.pid for w in stats.workers))
            p.backends[b.name] = replace(b, reload=reload)
    stats = p.observed.stats.get(b.name)
    # Idle workers prove nothing while connections nginx made just before the change may still wait in the
    # socket's backlog (uWSGI cannot count a unix socket's): the Emperor stopping it then resets them.
    idle = (stats is None or all(w.idle for w in stats.workers)) and p.now >= (b.settled_at or p.now)
    drained = b.name not in p.observed.routed and (idle or p.now >= (b.drain_until or p.now))
    keeps_traffic = b.state == S.RELOADING and b.name in routes  # alone: requests wait in its backlog
    return drained or keeps_traffic


def _tell(p: Pass, b: Backend) -> None:
    reload = b.reload
    if reload is not None and p.emperor is not None and b.name in p.emperor.vassals:
        # The Emperor sees a change only when the mtime's whole second moves past the last one it saw:
        # a second change within one second is lost. The vassal's master FIFO reloads it anyway.
        second = b.mtime_ns // 1_000_000_000
        if reload.last_mod_before is not None and second <= reload.last_mod_before:
            p.actions.append(ReloadThroughFifo(b.name))
            reload = replace(reload, nudged=True)
    p.backends[b.name] = replace(b, told_at=p.now, reload=reload)
