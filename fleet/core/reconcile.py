"""The control plane's decisions (pure): what to look at, and what to do about what was seen.

Level-based, like a Kubernetes reconciler: each pass reads the whole wanted state (the files) and the
observed one (probes, stats, what nginx routes), and returns the backends' new states, the actions that
bring the world closer to them, and when to look again. Nothing here sleeps: a drain is a deadline a
later pass checks. Ordering is the point: a backend leaves nginx before the Emperor is told to stop or
reload it, and joins nginx only after it answers a health probe.
"""

from __future__ import annotations

from dataclasses import replace

from fleet.core import apps, flapping, handoff, outliers
from fleet.core.actions import ClearBlacklist, Forget, ReloadThroughFifo, Route
from fleet.core.decision import Decision, Pass
from fleet.core.looking import answered, health_round
from fleet.core.model import Backend, Model, Transition
from fleet.core.observations import Observed, Wanted
from fleet.core.routing import wanted_routes
from fleet.core.settings import Settings
from fleet.core.states import IN_FLIGHT, State, check_transition
from fleet.core.stats import Served

S = State


def decide(wanted: Wanted, observed: Observed, model: Model, s: Settings, now: float) -> Decision:
    """From what is wanted and what was observed: the new model, the transitions, the actions, when to look again."""
    p = Pass(model, observed, s, now)
    resolved = apps.resolve({n: f.app for n, f in wanted.files.items() if not f.problem}, list(model.backends))
    if resolved.problems:  # a vassal that breaks an app rule cannot run as what its file says
        files = {n: replace(f, problem=f.problem or resolved.problems.get(n, "")) for n, f in wanted.files.items()}
        wanted = replace(wanted, files=files)
    _apply_files(p, wanted)
    for name, b in p.backends.items():
        if (app := resolved.app_of.get(name, b.app)) != b.app:
            p.backends[name] = replace(b, app=app)
    for name in list(p.backends):
        _progress(p, p.backends[name], wanted)
    suspects = _outliers(p)
    routes = wanted_routes(observed.routed, p.backends, now, s.batch_window)
    wake_after = s.busy_interval if _in_flight(p.backends, routes, now) else s.tick
    if suspects:
        wake_after = min(wake_after, s.outlier_recheck)
    retries = [b.retry_at - now for b in p.backends.values() if b.retry_at is not None]
    retries += [until - now for b in p.backends.values() if _held(b, now) and (until := b.outlier.ejected_until)]
    wake_after = max(0.0, min([wake_after, *retries]))
    # An app enters nginx with its first routed backend (its upstream and slots in the same reload: creating
    # an app reloads nginx once); once in, it stays while it has files (a JSON 503 while none serves).
    live = {p.backends[n].app for n in routes} | {a.name for a in observed.apps}
    # The default app's static folder is served apart (static.conf): changing it is no change of the apps.
    table = tuple(replace(a, static="") if a.name == apps.DEFAULT_APP else a for a in resolved.apps if a.name in live)
    new_apps = table if table != observed.apps else None
    app_of = tuple(sorted((n, p.backends[n].app) for n in routes if p.backends[n].app != apps.DEFAULT_APP))
    moved = dict(app_of) != {n: a for n, a in observed.members.items() if n in routes}  # a backend changed app
    if routes != observed.routed or new_apps is not None or moved:
        failed_at = observed.routing_failed_at if observed.routing_failed_at is not None else now
        retry_at = failed_at + s.routing_retry
        if not observed.routing_error or now >= retry_at:
            p.actions.insert(0, Route(routes, new_apps, app_of))
        else:
            wake_after = min(wake_after, retry_at - now)
    for name in observed.routed & set(p.backends):
        if p.backends[name].ready_at is not None:  # its batch is in nginx now
            p.backends[name] = replace(p.backends[name], ready_at=None)
    handoff.tell_all(p, routes)
    health = health_round(model, now, s)
    rounds = model.probe_rounds + (1 if health else 0)
    _note_counts(p, model.probe_rounds, rounds)
    new_model = Model(
        backends=p.backends,
        emperor=p.emperor,
        emperor_read_at=now if observed.emperor is not None else model.emperor_read_at,
        health_at=now if health else model.health_at,
        probe_rounds=rounds,
        usage_at=now if observed.usage else model.usage_at,
    )
    known = {n: b.app for n, b in model.backends.items()} | resolved.app_of  # a deleted file: its last app
    transitions = tuple(replace(t, app=known.get(t.name, t.app)) for t in p.transitions)
    return Decision(new_model, transitions, tuple(p.actions), wake_after)


def _in_flight(backends: dict[str, Backend], routes: frozenset[str], now: float) -> bool:
    return any(
        (b.state in IN_FLIGHT and not _held(b, now)) or (b.state == S.HEALTHY and b.name not in routes)
        for b in backends.values()
    )


def _held(b: Backend, now: float) -> bool:
    """An outlier within its ejection time: nothing to look at until it ends."""
    return b.state == S.EJECTED and outliers.held(b.outlier, now)


def _outliers(p: Pass) -> bool:
    """Note the answers of the routed healthy backends and eject the outliers among them (passive health).
    True if one that stays routed answered 5xx since the last pass: look again soon."""
    s, now = p.s, p.now
    judged: dict[str, outliers.Record] = {}
    for name, b in p.backends.items():
        if b.state == S.HEALTHY and name in p.observed.routed:
            judged[name] = outliers.note(b.outlier, p.observed.answers.get(name, ()), now, s)
        elif b.outlier.recent or b.outlier.interval:
            p.backends[name] = replace(b, outlier=outliers.forget_answers(b.outlier))
    out = sum(1 for b in p.backends.values() if b.state == S.EJECTED and outliers.held(b.outlier, now))
    eject, kept = outliers.decide(judged, s, out)
    for name, record in judged.items():
        b = p.backends[name]
        if name in eject:
            why = eject[name]
            record = outliers.eject(record, now, s)
            p.move(b, S.EJECTED, why, error=why, outlier=record, probe_failures=0, ready_at=None)
        else:
            # The panic note stays while the verdict holds, and goes with it.
            error = kept.get(name, "" if b.error.startswith(outliers.PREFIX) else b.error)
            if record is not b.outlier or error != b.error:  # else the same backend: no new one each pass
                p.backends[name] = replace(b, outlier=record, error=error)
    return any(
        name not in eject and name not in kept and any(x >= 500 for x in p.observed.answers.get(name, ()))
        for name in judged
    )


def _note_counts(p: Pass, done: int, rounds: int) -> None:
    """Each healthy backend's request counts as its stats were read this pass (with the probe sent this
    pass; the later ones are counted by round: `done` health rounds before this pass, `rounds` after it):
    the next read then tells its users' answers from our probes. Only while healthy: a backend starting,
    ejected or reloading is probed each pass, not each round, so its counts start again when it is healthy."""
    for name, b in list(p.backends.items()):
        if b.state != S.HEALTHY:
            if b.served is not None:
                p.backends[name] = replace(b, served=None)
            continue
        if (stats := p.observed.stats.get(name)) is None:
            continue  # nothing to note: the probes since its last read are counted by round
        probe = p.observed.probes.get(name)
        probed = probe is not None and not probe.traffic
        # This pass's probe counted too when one was sent: a usage round reads after its probes (a read made
        # before them, to see whether traffic stands for one, then asks one more answer of the users: safe).
        before = b.served.since(rounds if probed else done) if b.served is not None else None
        answered_at = p.now if before is not None and answered(before, stats) else b.answered_at
        p.backends[name] = replace(b, served=Served.of(stats, p.now, probed, rounds), answered_at=answered_at)


def _apply_files(p: Pass, wanted: Wanted) -> None:
    """New, changed and deleted files, and `fleet rm` drain requests."""
    for name, b in list(p.backends.items()):
        if name not in wanted.files and b.state != S.REMOVING:
            drain_until, settled_at = p.now + p.s.drain_wait, p.settled_at(name)
            p.move(
                b,
                S.REMOVING,
                "its file was deleted",
                drain_until=drain_until,
                settled_at=settled_at,
                told_at=None,
                reload=None,
            )
    for name, file in wanted.files.items():
        if name not in p.backends:
            _new_file(p, name, file.mtime_ns, file.problem)
            continue
        b = p.backends[name]
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
        if file.problem and b.state not in (S.FAILED, S.REMOVING, S.DRAINING):
            # Its own file did not change, but another did: e.g. its app's first vassal moved elsewhere.
            b = p.move(b, S.FAILED, file.problem, error=file.problem, ready_at=None, reload=None, told_at=None)
        if name in wanted.drain and b.state not in (S.DRAINING, S.REMOVING):
            p.move(b, S.DRAINING, "`fleet rm` asked to drain it", ready_at=None, reload=None, told_at=None)
        elif b.state == S.DRAINING and name not in wanted.drain:
            p.move(b, S.STARTING, "no longer asked to drain")


def _new_file(p: Pass, name: str, mtime_ns: int, problem: str) -> None:
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


def _progress(p: Pass, b: Backend, wanted: Wanted) -> None:
    """Move one backend on what was observed of it."""
    name, s, now = b.name, p.s, p.now
    if b.state in (S.HEALTHY, S.EJECTED) and (
        count := flapping.respawns_since(p.old_emperor, p.observed.emperor, name)
    ):
        b = p.backends[name] = flapping.note_crashes(b, count, now, s)
        if flapping.flapping(b, s):
            delay = flapping.retry_delay(b, s)
            why = flapping.describe(b, s, delay)
            p.move(b, S.FAILED, why, error=why, retry_at=now + delay, ready_at=None)
            return
    probe = p.observed.probes.get(name)
    accepting = p.emperor is not None and name in p.emperor.vassals and p.emperor.vassals[name].accepting
    if _held(b, now):
        return  # an outlier stays out for its ejection time, whatever its probe says
    if b.state in (S.STARTING, S.EJECTED):
        if p.blacklisted(name) and not accepting:
            p.fail(b, f"keeps exiting at start; see {name}.log")
        elif (
            probe is not None
            and probe.ok
            and (b.reload is None or handoff.reload_finished(p.observed.stats.get(name), b.reload))
        ):
            reason = "answers its health probe" if b.state == S.STARTING else "answers its health probe again"
            changes = dict(served_mtime_ns=b.mtime_ns, error="", probe_failures=0, ready_at=now, reload=None)
            p.move(b, S.HEALTHY, reason, **changes)
        else:
            if probe is not None:
                b = p.backends[name] = replace(b, last_probe=probe.detail)
            if b.reload is not None and not b.reload.nudged and now - b.since > s.nudge_after:
                if not handoff.reload_started(p.observed.stats.get(name), b.reload) and b.reload.old_workers:
                    # The old version still runs and the Emperor missed the change (same second).
                    p.actions.append(ReloadThroughFifo(name))
                    b = p.backends[name] = replace(b, reload=replace(b.reload, nudged=True))
            if now - max(b.since, b.outlier.ejected_until or b.since) > s.start_timeout:
                got = f"; last probe: {b.last_probe}" if b.last_probe else ""
                if "expected" in b.last_probe:
                    got += "; set health_path or health_status in a [fleet] section of its file"
                since = "start" if b.state == S.STARTING else "it was ejected"
                p.fail(b, f"not healthy {s.start_timeout:.0f} s after {since}{got}; see {name}.log")
    elif b.state == S.HEALTHY and probe is not None:
        if probe.ok or probe.busy:
            if b.probe_failures:  # else it stays as it is: no new value for each backend each round
                p.backends[name] = replace(b, probe_failures=0)
        elif b.probe_failures + 1 >= s.probe_failures_to_eject:
            why = f"stopped answering health probes ({probe.detail})"
            b = flapping.note_crashes(b, 1, now, s)
            if flapping.flapping(b, s):
                delay = flapping.retry_delay(b, s)
                why = f"{flapping.describe(b, s, delay)}; last: {why}"
                p.move(b, S.FAILED, why, error=why, retry_at=now + delay, probe_failures=0, ready_at=None)
            else:
                p.move(b, S.EJECTED, why, error=why, probe_failures=0, last_probe=probe.detail, ready_at=None)
        else:
            p.backends[name] = replace(b, probe_failures=b.probe_failures + 1, last_probe=probe.detail)
    elif b.state == S.RELOADING and b.told_at is not None:
        handoff.progress_reload(p, b)
    elif b.state == S.REMOVING and b.told_at is not None:
        gone = p.observed.emperor is not None and name not in p.observed.emperor.vassals
        if gone or now - b.since > s.reload_timeout:
            p.actions.append(Forget(name))
            del p.backends[name]
            p.transitions.append(Transition(name, S.REMOVING, None, "its processes are gone"))
    elif b.state == S.FAILED and b.retry_at is not None:
        if now >= b.retry_at:
            p.move(b, S.STARTING, "retrying after its crash loop", retry_at=None)
    elif b.state == S.FAILED and probe is not None and probe.ok and not p.blacklisted(name):
        if not wanted.files[name].problem:
            p.move(b, S.HEALTHY, "answers its health probe again", error="", served_mtime_ns=b.mtime_ns, ready_at=now)
