"""fleet.core.looking: what to observe each pass (the Emperor, probes, vassal stats, log reasons) and at what rate.

Reading the Emperor's stats wakes it to rescan vassals/, so what_to_observe() holds it while a backend must first
leave nginx and drain; probes of routed backends are rate-limited by health_interval, and a routed backend whose
stats show its users got answers is not probed as well; every stats socket is read each second only while someone
watches or something just changed.
"""

from __future__ import annotations

import pytest

from fleet.core.looking import answered, what_to_observe
from fleet.core.model import Backend, Model, Reload
from fleet.core.observations import FileInfo, Look, Wanted
from fleet.core.settings import Settings
from fleet.core.states import State
from fleet.core.stats import BlacklistEntry, EmperorStats, Served, VassalProcess, VassalStats, Worker

S = State
SETTINGS = Settings()
T0 = 1000.0
NOW = T0 + 0.1
V1, V2 = 1_700_000_000 * 10**9, 1_700_000_005 * 10**9


def backend(name: str, state: State, **kw) -> Backend:
    return Backend(name, state, **{"since": T0, "mtime_ns": V1, **kw})


def model(*backends: Backend, read_at: float = NOW, health_at: float = NOW, usage_at: float = NOW, **kw) -> Model:
    """By default the Emperor was just read, a health round and a usage round just done: nothing is due."""
    return Model({b.name: b for b in backends}, emperor_read_at=read_at, health_at=health_at, usage_at=usage_at, **kw)


def emperor(*vassals: str, blacklist: tuple[str, ...] = ()) -> EmperorStats:
    procs = {n: VassalProcess(n, 100, 1_700_000_000, True, True, 0, False) for n in vassals}
    return EmperorStats(procs, {n: BlacklistEntry(n, 3, 2) for n in blacklist})


def want(**files: int | FileInfo) -> Wanted:
    return Wanted({n: f if isinstance(f, FileInfo) else FileInfo(f) for n, f in files.items()})


def look(m: Model, w: Wanted, now: float = NOW) -> Look:
    return what_to_observe(m, w, now, SETTINGS)


def told(name: str, state: State) -> Backend:
    """A reloading or removing backend the Emperor has been told about (at T0)."""
    return backend(name, state, told_at=T0, reload=Reload(frozenset({11}), None) if state == S.RELOADING else None)


# ---- the Emperor: read for new and changed files and when due; held while a backend must leave nginx ---


def test_a_new_file_is_probed_and_the_emperor_read_to_start_it():
    assert look(model(), want(a=V1)) == Look(emperor=True, probe=frozenset({"a"}))


def test_a_new_file_with_a_problem_is_not_probed_but_the_emperor_is_read():
    assert look(model(), want(a=FileInfo(V1, "line 1: bad"))) == Look(emperor=True)


def test_the_emperor_is_held_right_after_a_file_is_deleted():
    m = model(backend("a", S.HEALTHY), backend("b", S.HEALTHY), read_at=float("-inf"))
    seen = look(m, want(b=V1, c=V1))  # even with a new file and the Emperor overdue
    assert not seen.emperor
    assert "c" in seen.probe and "a" not in seen.probe


def test_the_emperor_is_held_right_after_a_healthy_backends_file_changed_and_its_workers_are_read():
    m = model(backend("a", S.HEALTHY), backend("b", S.HEALTHY), read_at=float("-inf"))
    seen = look(m, want(a=V2, b=V1, c=V1))
    assert not seen.emperor
    assert seen.stats == {"a"}  # its workers before the reload


@pytest.mark.parametrize("state", [S.RELOADING, S.REMOVING])
def test_the_emperor_is_held_while_a_backend_drains_before_its_reload_or_removal(state):
    b = backend("a", state, drain_until=T0 + 2, reload=Reload(frozenset({11}), None) if state == S.RELOADING else None)
    wanted = want(a=V1, c=V1) if state == S.RELOADING else want(c=V1)
    seen = look(model(b, read_at=float("-inf")), wanted)  # even with a new file and the Emperor overdue
    assert not seen.emperor
    assert "a" in seen.stats  # to see when it is idle


@pytest.mark.parametrize("state", [S.RELOADING, S.REMOVING])
def test_once_told_the_emperor_is_read_at_the_urgent_period(state):
    wanted = want(a=V1) if state == S.RELOADING else want()
    assert not look(model(told("a", state), read_at=NOW - SETTINGS.emperor_urgent_poll + 0.01), wanted).emperor
    assert look(model(told("a", state), read_at=NOW - SETTINGS.emperor_urgent_poll), wanted).emperor


@pytest.mark.parametrize("state", [S.STARTING, S.FAILED, S.EJECTED])
def test_a_changed_file_of_a_backend_out_of_nginx_reads_the_emperor_and_its_workers(state):
    seen = look(model(backend("a", state)), want(a=V2))
    assert seen.emperor
    assert "a" in seen.stats


def test_all_healthy_the_emperor_is_read_at_the_idle_period():
    a = backend("a", S.HEALTHY)
    assert not look(model(a, read_at=NOW - SETTINGS.emperor_idle_poll + 0.01), want(a=V1)).emperor
    assert look(model(a, read_at=NOW - SETTINGS.emperor_idle_poll), want(a=V1)).emperor


@pytest.mark.parametrize("state", [S.STARTING, S.FAILED, S.EJECTED, S.DRAINING])
def test_anything_unsettled_the_emperor_is_read_at_the_poll_period(state):
    a, b = backend("a", S.HEALTHY), backend("b", state)
    assert not look(model(a, b, read_at=NOW - SETTINGS.emperor_poll + 0.01), want(a=V1, b=V1)).emperor
    assert look(model(a, b, read_at=NOW - SETTINGS.emperor_poll), want(a=V1, b=V1)).emperor


def test_an_empty_fleet_reads_the_emperor_when_due():
    assert look(model(read_at=float("-inf")), want()) == Look(emperor=True)
    assert look(model(), want()) == Look()


# ---- probes: starting ones every pass, healthy and failed ones each health_interval ------------------


@pytest.mark.parametrize("state", [S.STARTING, S.EJECTED, S.RELOADING])
def test_starting_ejected_and_reloading_backends_are_probed_every_pass(state):
    assert look(model(backend("a", state)), want(a=V1)).probe == {"a"}


def test_healthy_backends_are_probed_only_each_health_interval():
    a = backend("a", S.HEALTHY)
    assert look(model(a, health_at=NOW - SETTINGS.health_interval + 0.01), want(a=V1)).probe == set()
    assert look(model(a, health_at=NOW - SETTINGS.health_interval), want(a=V1)).probe == {"a"}


def test_failed_backends_are_probed_each_health_interval_in_case_the_emperor_retried_them():
    m = model(backend("a", S.FAILED), health_at=float("-inf"))
    assert look(m, want(a=V1)).probe == {"a"}
    assert look(model(backend("a", S.FAILED)), want(a=V1)).probe == set()


def test_a_failed_backend_is_not_probed_while_blacklisted_or_while_its_file_has_a_problem():
    blacklisted = model(backend("a", S.FAILED), health_at=float("-inf"), emperor=emperor(blacklist=("a",)))
    assert look(blacklisted, want(a=V1)).probe == set()
    m = model(backend("a", S.FAILED), health_at=float("-inf"))
    assert look(m, want(a=FileInfo(V1, "line 1: bad"))).probe == set()


@pytest.mark.parametrize("state", [S.DRAINING, S.REMOVING])
def test_draining_and_removing_backends_are_never_probed(state):
    wanted = want(a=V1) if state == S.DRAINING else want()
    assert look(model(backend("a", state), health_at=float("-inf")), wanted).probe == set()


# ---- vassal stats: reloading backends, changed files, removals that drain ----------------------------


def test_stats_are_read_for_reloading_backends_told_or_not():
    assert look(model(told("a", S.RELOADING)), want(a=V1)).stats == {"a"}
    untold = backend("a", S.RELOADING, reload=Reload(frozenset({11}), None))
    assert look(model(untold), want(a=V1)).stats == {"a"}


def test_stats_are_read_for_a_removal_until_the_emperor_is_told():
    assert look(model(backend("a", S.REMOVING)), want()).stats == {"a"}
    assert look(model(told("a", S.REMOVING)), want()).stats == set()


@pytest.mark.parametrize("state", [S.HEALTHY, S.STARTING, S.FAILED, S.EJECTED, S.DRAINING])
def test_stats_are_not_read_for_settled_unchanged_backends(state):
    assert look(model(backend("a", state), health_at=float("-inf")), want(a=V1)).stats == set()


@pytest.mark.parametrize("state", [S.STARTING, S.EJECTED])
def test_stats_are_read_for_a_starting_backend_awaiting_new_workers_for_its_changed_file(state):
    b = backend("a", state, reload=Reload(frozenset({11, 12}), None))
    assert look(model(b), want(a=V1)).stats == {"a"}


def test_stats_are_read_for_every_changed_file():
    m = model(backend("a", S.HEALTHY), backend("b", S.STARTING), backend("c", S.HEALTHY))
    assert look(m, want(a=V2, b=V2, c=V1)).stats == {"a", "b"}


# ---- failure reasons from the vassal's log ----------------------------------------------------------


@pytest.mark.parametrize("state", [S.STARTING, S.EJECTED, S.RELOADING])
def test_reasons_are_read_when_the_emperor_is_read(state):
    a = told("a", state) if state == S.RELOADING else backend("a", state)
    assert look(model(a, read_at=float("-inf")), want(a=V1)).reasons == {"a"}
    assert look(model(a), want(a=V1)).reasons == set()


def test_reasons_are_read_for_a_vassal_the_emperor_blacklisted():
    m = model(backend("a", S.STARTING), emperor=emperor(blacklist=("a",)))
    assert look(m, want(a=V1)).reasons == {"a"}


@pytest.mark.parametrize(
    "state, timeout", [(S.STARTING, SETTINGS.start_timeout), (S.RELOADING, SETTINGS.reload_timeout)]
)
def test_reasons_are_read_once_a_start_or_reload_has_timed_out(state, timeout):
    m = model(backend("a", state), read_at=T0 + timeout)  # the Emperor not due: only the timeout counts
    assert look(m, want(a=V1), T0 + timeout).reasons == set()
    assert look(m, want(a=V1), T0 + timeout + 0.01).reasons == {"a"}


def test_reasons_are_not_read_for_healthy_or_failed_backends():
    m = model(backend("a", S.HEALTHY), backend("b", S.FAILED), read_at=float("-inf"), health_at=float("-inf"))
    assert look(m, want(a=V1, b=V1)).reasons == set()


# ---- usage rounds: each second while watched or just changed, else every usage_idle_interval -------------

OLD = T0 - 3600.0  # a backend in its state since long ago: nothing changed lately


def settled(name: str = "a", **kw) -> Backend:
    return backend(name, S.HEALTHY, since=OLD, **kw)


def watched(at: float) -> Wanted:
    return Wanted({"a": FileInfo(V1)}, watched_at=at)


def test_nobody_watching_and_nothing_changed_usage_is_read_every_usage_idle_interval():
    a = settled()
    assert not look(model(a, usage_at=NOW - SETTINGS.usage_idle_interval + 0.01), want(a=V1)).usage
    assert look(model(a, usage_at=NOW - SETTINGS.usage_idle_interval), want(a=V1)).usage


def test_while_someone_watches_usage_is_read_every_usage_interval():
    m = model(settled(), usage_at=NOW - SETTINGS.usage_interval)
    assert look(m, watched(NOW - SETTINGS.watch_window)).usage
    assert not look(m, watched(NOW - SETTINGS.watch_window - 0.01)).usage  # watched too long ago
    assert not look(model(settled(), usage_at=NOW - SETTINGS.usage_interval + 0.01), watched(NOW)).usage


def test_after_a_transition_usage_is_read_every_usage_interval_for_a_watch_window():
    recent = backend("a", S.HEALTHY, since=NOW - SETTINGS.watch_window)
    assert look(model(recent, usage_at=NOW - SETTINGS.usage_interval), want(a=V1)).usage
    older = backend("a", S.HEALTHY, since=NOW - SETTINGS.watch_window - 0.01)
    assert not look(model(older, usage_at=NOW - SETTINGS.usage_interval), want(a=V1)).usage


def test_an_empty_fleet_reads_usage_when_due_too():
    assert look(model(usage_at=float("-inf")), want()) == Look(emperor=False, usage=True)


# ---- health from traffic: a backend whose users got answers is not probed as well ------------------------

ROUND = NOW - SETTINGS.health_interval  # the last health round: one is due now


def counts(requests: int = 10, exceptions: int = 0, at: float = ROUND, pid: int = 1) -> Served:
    return Served(pid, requests, exceptions, at)


def test_a_backend_that_answered_users_at_the_last_read_is_checked_by_its_stats_not_probed():
    a = settled(served=counts(), answered_at=ROUND)
    seen = look(model(a, health_at=ROUND), want(a=V1))
    assert seen.probe == set() and seen.unless_answered == {"a": counts()}


def test_in_a_usage_round_every_healthy_backend_with_fresh_counts_is_checked_by_its_stats_first():
    a = settled(served=counts())  # no traffic seen yet: its stats are read anyway this pass
    seen = look(model(a, health_at=ROUND, usage_at=float("-inf")), want(a=V1))
    assert seen.usage and seen.unless_answered == {"a": counts()} and seen.probe == set()


def test_a_backend_nobody_uses_is_probed_without_a_read_of_its_stats():
    a = settled(served=counts(), answered_at=ROUND - 5)  # its last read showed no new answer
    seen = look(model(a, health_at=ROUND), want(a=V1))
    assert seen.probe == {"a"} and seen.unless_answered == {} and seen.stats == set() and not seen.usage


def test_counts_older_than_the_last_round_cannot_stand_for_a_probe():
    a = settled(served=counts(at=ROUND - 0.01), answered_at=ROUND - 0.01)
    assert look(model(a, health_at=ROUND, usage_at=float("-inf")), want(a=V1)).probe == {"a"}


def test_a_backend_whose_last_probe_failed_is_probed_whatever_its_traffic():
    a = settled(served=counts(), answered_at=ROUND, probe_failures=1)
    seen = look(model(a, health_at=ROUND, usage_at=float("-inf")), want(a=V1))
    assert seen.probe == {"a"} and seen.unless_answered == {}


def test_no_health_round_no_probe_and_no_check_for_a_busy_backend():
    a = settled(served=counts(at=NOW), answered_at=NOW)
    assert look(model(a), want(a=V1)) == Look()


@pytest.mark.parametrize("state", [S.STARTING, S.EJECTED, S.RELOADING])
def test_backends_not_healthy_are_always_probed_whatever_their_traffic(state):
    b = backend("a", state, served=counts(), answered_at=ROUND)
    seen = look(model(b, health_at=ROUND, usage_at=float("-inf")), want(a=V1))
    assert "a" in seen.probe and seen.unless_answered == {}


def stats(requests: int, exceptions: int = 0, pid: int = 1) -> VassalStats:
    return VassalStats(pid, (Worker(pid + 1, True, "idle", requests, exceptions),))


@pytest.mark.parametrize(
    "now, result",
    [
        (stats(11), True),  # one request more than counted (our probes are in the count)
        (stats(10), False),  # nothing but what we sent ourselves
        (stats(15, exceptions=1), False),  # answers, but an exception among them: probe it
        (stats(15, pid=2), False),  # another master: its counts started again
        (stats(3), False),  # counts started again (a reload)
        (None, False),  # its stats did not answer
    ],
)
def test_answered_means_more_requests_than_counted_by_the_same_master_and_no_new_exception(now, result):
    assert answered(counts(requests=10), now) is result
