"""fleet.core.reconcile: `decide()` on each kind of observation, one pass or several in a row.

Times are passed explicitly; between passes a test plays the world (nginx applies a Route, the Emperor
reloads or stops a vassal, workers finish their requests). `World` also runs `what_to_observe()` first and observes
only what it asks for, as the runtime does.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from fleet.core.actions import ClearBlacklist, Forget, ReloadThroughFifo, Route, WakeEmperor
from fleet.core.looking import what_to_observe
from fleet.core.model import Backend, Model, Reload
from fleet.core.observations import FileInfo, Look, Observed, Probe, Wanted
from fleet.core.reconcile import Decision, decide
from fleet.core.settings import Settings
from fleet.core.states import State
from fleet.core.stats import BlacklistEntry, EmperorStats, VassalProcess, VassalStats, Worker

S = State
SETTINGS = Settings()
T0 = 1000.0
SECOND = 1_700_000_000  # a file's mtime, whole seconds (the Emperor's last_mod)
V1 = SECOND * 10**9  # the file's first version (mtime_ns)
V2 = (SECOND + 5) * 10**9  # changed in a later second
V3 = (SECOND + 9) * 10**9
OK = Probe(True)
REFUSED = Probe(False, "GET /healthz: connection refused")
BUSY = Probe(False, "GET /healthz: no answer in time", busy=True)


def backend(name: str, state: State, **kw) -> Backend:
    """A backend in `state` since T0 on version V1 (serving it, unless it never started)."""
    served = 0 if state in (S.STARTING, S.FAILED) else V1
    return Backend(name, state, **{"since": T0, "mtime_ns": V1, "served_mtime_ns": served, **kw})


def model(*backends: Backend, **kw) -> Model:
    return Model(backends={b.name: b for b in backends}, **kw)


def emperor(blacklist: tuple[str, ...] = (), **last_mods: int) -> EmperorStats:
    """The Emperor's stats: each vassal running (ready, accepting) with this last_mod, and its blacklist."""
    vassals = {n: VassalProcess(n, 100 + i, m, True, True, 0, False) for i, (n, m) in enumerate(last_mods.items())}
    return EmperorStats(vassals, {n: BlacklistEntry(n, 3, 2) for n in blacklist})


def want(drain: tuple[str, ...] = (), **files: int | FileInfo) -> Wanted:
    """The files in vassals/ (name=mtime_ns, or a FileInfo with a problem) and `fleet rm`'s drain requests."""
    infos = {n: f if isinstance(f, FileInfo) else FileInfo(f) for n, f in files.items()}
    return Wanted(infos, frozenset(drain))


def vassal(*pids: int, busy: tuple[int, ...] = (), accepting: bool = True) -> VassalStats:
    """A vassal's own stats: its workers (idle unless listed in `busy`)."""
    return VassalStats(1, tuple(Worker(p, accepting, "busy" if p in busy else "idle", 0) for p in pids))


def step(m: Model, w: Wanted, now: float, routed: tuple[str, ...] | set[str] = (), **seen) -> Decision:
    """One pass of decide() on exactly these observations."""
    return decide(w, Observed(routed=frozenset(routed), **seen), m, SETTINGS, now)


def moves(d: Decision) -> list[tuple[str, State | None, State | None]]:
    return [(t.name, t.old, t.new) for t in d.transitions]


def route(*names: str) -> Route:
    return Route(frozenset(names))


def assert_route_first(d: Decision) -> None:
    """A routing change always comes before the Emperor hears of anything."""
    kinds = [type(a) for a in d.actions]
    if Route in kinds:
        assert kinds.index(Route) == 0
        assert kinds.count(Route) == 1


class World:
    """Choose what to observe, observe it, decide; then nginx applies the Route (it succeeds)."""

    def __init__(self, wanted: Wanted, m: Model, routed: set[str], em: EmperorStats | None = None):
        self.wanted, self.model, self.routed, self.emperor = wanted, m, frozenset(routed), em
        self.probes: dict[str, Probe] = {}
        self.stats: dict[str, VassalStats] = {}
        self.reasons: dict[str, str] = {}
        self.look = Look()

    def step(self, now: float) -> Decision:
        look = self.look = what_to_observe(self.model, self.wanted, now, SETTINGS)
        observed = Observed(
            routed=self.routed,
            emperor=self.emperor if look.emperor else None,
            probes={n: p for n, p in self.probes.items() if n in look.probe},
            stats={n: s for n, s in self.stats.items() if n in look.stats},
            reasons={n: r for n, r in self.reasons.items() if n in look.reasons},
        )
        d = decide(self.wanted, observed, self.model, SETTINGS, now)
        assert_route_first(d)
        self.model = d.model
        for action in d.actions:
            if isinstance(action, Route):
                self.routed = action.names
        return d


# ---- a file is added -------------------------------------------------------------------------------


def test_a_new_file_starts_a_backend():
    d = step(Model(), want(a=V1), T0, probes={"a": Probe(False, "its socket does not exist yet")})
    assert moves(d) == [("a", None, S.STARTING)]
    assert d.transitions[0].reason == "new vassal file"
    a = d.model.backends["a"]
    assert (a.state, a.since, a.mtime_ns, a.served_mtime_ns) == (S.STARTING, T0, V1, 0)
    assert a.last_probe == "its socket does not exist yet"
    assert d.actions == ()
    assert d.wake_after == SETTINGS.busy_interval


def test_a_new_file_with_a_problem_fails_with_the_problem_text():
    problem = "line 3: unknown uWSGI option `procesess`"
    d = step(Model(), want(a=FileInfo(V1, problem)), T0)
    assert moves(d) == [("a", None, S.FAILED)]
    assert d.transitions[0].reason == problem
    assert d.model.backends["a"].error == problem
    assert d.actions == ()
    assert d.wake_after == SETTINGS.tick


def test_a_new_file_nginx_already_routes_and_that_answers_is_adopted_healthy():
    # A restarted control plane keeps routing what still serves: no 503 window, no routing change.
    d = step(Model(), want(a=V1, b=V1), T0, routed={"a", "b"}, probes={"a": OK, "b": OK})
    assert moves(d) == [("a", None, S.HEALTHY), ("b", None, S.HEALTHY)]
    assert {t.reason for t in d.transitions} == {"already routed and serving"}
    a = d.model.backends["a"]
    assert (a.served_mtime_ns, a.ready_at) == (V1, None)
    assert d.actions == ()
    assert d.wake_after == SETTINGS.tick


def test_a_new_file_nginx_routes_but_that_does_not_answer_starts_and_leaves_nginx():
    d = step(Model(), want(a=V1, b=V1), T0, routed={"a", "b"}, probes={"a": OK, "b": REFUSED})
    assert moves(d) == [("a", None, S.HEALTHY), ("b", None, S.STARTING)]
    assert d.actions == (route("a"),)


def test_a_new_unrouted_file_that_already_answers_becomes_healthy_in_the_same_pass():
    d = step(Model(), want(a=V1), T0, probes={"a": OK})
    assert moves(d) == [("a", None, S.STARTING), ("a", S.STARTING, S.HEALTHY)]
    assert d.actions == (route("a"),)  # nothing else routed: it joins at once


# ---- starting backends become healthy and join nginx ------------------------------------------------


def test_a_starting_backend_that_answers_becomes_healthy_and_joins_nginx():
    m = model(backend("a", S.STARTING), backend("b", S.HEALTHY))
    d = step(m, want(a=V1, b=V1), T0 + 1, routed={"b"}, probes={"a": OK, "b": OK})
    assert moves(d) == [("a", S.STARTING, S.HEALTHY)]
    assert d.transitions[0].reason == "answers its health probe"
    assert d.actions == (route("a", "b"),)
    a = d.model.backends["a"]
    assert (a.since, a.served_mtime_ns, a.error, a.probe_failures) == (T0 + 1, V1, "", 0)
    assert a.ready_at == T0 + 1  # until nginx is seen routing it (the Route may be refused)
    assert d.wake_after == SETTINGS.tick

    d = step(d.model, want(a=V1, b=V1), T0 + 1.5, routed={"a", "b"})
    assert d.model.backends["a"].ready_at is None
    assert (moves(d), d.actions) == ([], ())


def test_a_starting_backend_that_does_not_answer_keeps_starting():
    m = model(backend("a", S.STARTING), backend("b", S.HEALTHY))
    d = step(m, want(a=V1, b=V1), T0 + 1, routed={"b"}, probes={"a": REFUSED})
    assert moves(d) == []
    assert d.actions == ()
    assert d.model.backends["a"].last_probe == REFUSED.detail
    assert d.wake_after == SETTINGS.busy_interval


def test_several_starting_backends_join_nginx_in_one_routing_change():
    starting = [backend(n, S.STARTING) for n in "abc"]
    w = World(want(x=V1, a=V1, b=V1, c=V1), model(backend("x", S.HEALTHY), *starting), routed={"x"})
    w.probes = {"x": OK, "a": OK, "b": REFUSED, "c": REFUSED}
    d = w.step(T0 + 1)
    assert moves(d) == [("a", S.STARTING, S.HEALTHY)]
    assert d.actions == ()  # b and c are still starting: a waits for its batch
    assert d.model.backends["a"].ready_at == T0 + 1
    assert d.wake_after == SETTINGS.busy_interval

    w.probes["b"] = OK
    d = w.step(T0 + 1.5)
    assert moves(d) == [("b", S.STARTING, S.HEALTHY)]
    assert d.actions == ()

    w.probes["c"] = OK
    d = w.step(T0 + 2)
    assert moves(d) == [("c", S.STARTING, S.HEALTHY)]
    assert d.actions == (route("x", "a", "b", "c"),)
    assert d.wake_after == SETTINGS.tick
    d = w.step(T0 + 2.5)
    assert d.actions == ()
    assert all(b.ready_at is None for b in d.model.backends.values())


def test_a_batch_waits_for_a_slow_starter_no_longer_than_the_batch_window():
    starting = [backend(n, S.STARTING) for n in "ab"]
    w = World(want(x=V1, a=V1, b=V1), model(backend("x", S.HEALTHY), *starting), routed={"x"})
    w.probes = {"x": OK, "a": OK, "b": REFUSED}
    assert w.step(T0 + 1).actions == ()
    assert w.step(T0 + 1 + SETTINGS.batch_window - 0.01).actions == ()
    d = w.step(T0 + 1 + SETTINGS.batch_window)
    assert d.actions == (route("x", "a"),)
    assert d.model.backends["b"].state == S.STARTING


# ---- a file changes: reload --------------------------------------------------------------------------


def changed_with_a_peer() -> World:
    """a and b healthy and routed on V1; a's file just changed to V2; a's workers are 11 and 12."""
    em = emperor(a=SECOND, b=SECOND)
    m = model(backend("a", S.HEALTHY), backend("b", S.HEALTHY), emperor=em, emperor_read_at=T0 - 1)
    w = World(want(a=V2, b=V1), m, routed={"a", "b"}, em=em)
    w.probes = {"a": OK, "b": OK}
    w.stats = {"a": vassal(11, 12)}
    return w


def test_a_changed_backend_with_a_peer_leaves_nginx_first_and_the_emperor_is_not_told_yet():
    w = changed_with_a_peer()
    d = w.step(T0)
    assert not w.look.emperor  # reading the Emperor would wake it: a must leave nginx first
    assert moves(d) == [("a", S.HEALTHY, S.RELOADING)]
    assert d.transitions[0].reason == "its file changed"
    assert d.actions == (route("b"),)
    a = d.model.backends["a"]
    assert a.reload == Reload(frozenset({11, 12}), SECOND)
    assert (a.mtime_ns, a.served_mtime_ns) == (V2, V1)
    assert (a.drain_until, a.told_at, a.ready_at) == (T0 + SETTINGS.drain_wait, None, None)
    assert d.wake_after == SETTINGS.busy_interval


def test_a_changed_backend_is_told_to_the_emperor_once_out_of_nginx_and_idle():
    w = changed_with_a_peer()
    w.step(T0)
    w.stats["a"] = vassal(11, 12, busy=(12,))  # still finishing what nginx sent it
    d = w.step(T0 + 0.02)
    assert not w.look.emperor and "a" in w.look.stats
    assert (moves(d), d.actions) == ([], ())
    assert d.model.backends["a"].told_at is None

    w.stats["a"] = vassal(11, 12)  # idle, but what nginx sent just before may wait in its backlog
    assert w.step(T0 + SETTINGS.drain_settle - 0.01).actions == ()
    d = w.step(T0 + SETTINGS.drain_settle)
    assert d.actions == (WakeEmperor(),)
    assert moves(d) == []
    assert d.model.backends["a"].told_at == T0 + SETTINGS.drain_settle


def test_a_changed_backend_still_busy_is_told_when_its_drain_deadline_passes():
    w = changed_with_a_peer()
    w.step(T0)
    w.stats["a"] = vassal(11, 12, busy=(11, 12))
    assert w.step(T0 + 1).actions == ()
    assert w.step(T0 + SETTINGS.drain_wait - 0.01).actions == ()
    d = w.step(T0 + SETTINGS.drain_wait)
    assert d.actions == (WakeEmperor(),)


def test_a_whole_reload_with_a_peer_ends_healthy_and_routed_on_the_new_version():
    w = changed_with_a_peer()
    w.step(T0)
    assert w.step(T0 + SETTINGS.drain_settle).actions == (WakeEmperor(),)
    w.emperor = emperor(a=SECOND + 5, b=SECOND)  # the Emperor reloads a: new workers
    w.stats["a"] = vassal(21, 22)
    d = w.step(T0 + 0.3)
    assert w.look.emperor and "a" in w.look.stats and "a" in w.look.probe
    assert moves(d) == [("a", S.RELOADING, S.HEALTHY)]
    assert d.actions == (route("a", "b"),)
    a = d.model.backends["a"]
    assert (a.served_mtime_ns, a.reload, a.told_at) == (V2, None, None)
    assert d.wake_after == SETTINGS.tick
    assert w.step(T0 + 0.5).model.backends["a"].ready_at is None  # nginx routes it now


def test_a_changed_backend_without_a_peer_keeps_its_traffic_and_the_emperor_is_told_at_once():
    m = model(backend("a", S.HEALTHY), emperor=emperor(a=SECOND))
    d = step(m, want(a=V2), T0, routed={"a"}, stats={"a": vassal(11, 12, busy=(11,))})
    assert moves(d) == [("a", S.HEALTHY, S.RELOADING)]
    assert d.actions == (WakeEmperor(),)  # no routing change: requests wait in its backlog
    assert d.model.backends["a"].told_at == T0
    assert d.wake_after == SETTINGS.busy_interval


def test_a_changed_backend_whose_peer_leaves_keeps_its_traffic_and_route_comes_first():
    m = model(backend("a", S.HEALTHY), backend("b", S.HEALTHY, probe_failures=1), emperor=emperor(a=SECOND))
    d = step(m, want(a=V2, b=V1), T0, routed={"a", "b"}, probes={"b": REFUSED}, stats={"a": vassal(11, 12)})
    assert moves(d) == [("a", S.HEALTHY, S.RELOADING), ("b", S.HEALTHY, S.EJECTED)]
    assert d.actions == (route("a"), WakeEmperor())


def reloading(**kw) -> Model:
    """a reloading from V1 to V2 (told at T0, old workers 11 and 12) out of nginx; b healthy and routed."""
    a = backend("a", S.RELOADING, mtime_ns=V2, told_at=T0, reload=Reload(frozenset({11, 12}), SECOND), **kw)
    return model(a, backend("b", S.HEALTHY), emperor=emperor(a=SECOND, b=SECOND))


def test_a_reload_finishes_when_every_worker_is_new_and_accepting_and_the_probe_answers():
    d = step(reloading(), want(a=V2, b=V1), T0 + 1, routed={"b"}, stats={"a": vassal(21, 22)}, probes={"a": OK})
    assert moves(d) == [("a", S.RELOADING, S.HEALTHY)]
    assert d.transitions[0].reason == "reload finished"
    assert d.actions == (route("a", "b"),)
    a = d.model.backends["a"]
    assert (a.served_mtime_ns, a.reload, a.told_at) == (V2, None, None)


@pytest.mark.parametrize(
    "stats, probe",
    [
        pytest.param(vassal(11, 22), OK, id="an-old-worker-remains"),
        pytest.param(vassal(21, 22, accepting=False), OK, id="new-workers-not-accepting-yet"),
        pytest.param(vassal(21, 22), REFUSED, id="the-probe-fails"),
        pytest.param(None, OK, id="no-stats"),
        pytest.param(vassal(), OK, id="no-workers"),
    ],
)
def test_a_reload_is_not_finished_before_all_of_it_is_seen(stats, probe):
    seen = {"stats": {"a": stats}} if stats is not None else {}
    d = step(reloading(), want(a=V2, b=V1), T0 + 0.5, routed={"b"}, probes={"a": probe}, **seen)
    assert (moves(d), d.actions) == ([], ())
    assert d.model.backends["a"].state == S.RELOADING
    assert d.wake_after == SETTINGS.busy_interval


def test_a_second_change_within_the_same_second_is_reloaded_through_the_fifo_when_told():
    # The Emperor already reloaded a for V2 (last_mod = V2's second); V2 + 0.4 s is in the same second.
    again = V2 + 400_000_000
    m = model(backend("a", S.HEALTHY, mtime_ns=V2, served_mtime_ns=V2), emperor=emperor(a=SECOND + 5))
    d = step(m, want(a=again), T0, routed={"a"}, stats={"a": vassal(11, 12)})
    assert moves(d) == [("a", S.HEALTHY, S.RELOADING)]
    assert set(d.actions) == {WakeEmperor(), ReloadThroughFifo("a")} and len(d.actions) == 2
    assert d.model.backends["a"].reload.nudged


def test_a_second_change_within_the_same_second_with_a_peer_is_reloaded_through_the_fifo_once_drained():
    again = V2 + 400_000_000
    em = emperor(a=SECOND + 5, b=SECOND)
    m = model(backend("a", S.HEALTHY, mtime_ns=V2, served_mtime_ns=V2), backend("b", S.HEALTHY), emperor=em)
    w = World(want(a=again, b=V1), m, routed={"a", "b"}, em=em)
    w.stats = {"a": vassal(11, 12)}
    assert w.step(T0).actions == (route("b"),)
    d = w.step(T0 + SETTINGS.drain_settle)
    assert set(d.actions) == {WakeEmperor(), ReloadThroughFifo("a")} and len(d.actions) == 2


def test_a_change_in_a_later_second_is_left_to_the_emperor():
    m = model(backend("a", S.HEALTHY), emperor=emperor(a=SECOND))
    d = step(m, want(a=V2), T0, routed={"a"}, stats={"a": vassal(11, 12)})
    assert d.actions == (WakeEmperor(),)
    assert not d.model.backends["a"].reload.nudged


def test_a_reload_the_emperor_never_starts_is_done_through_the_fifo_after_nudge_after():
    same = {"routed": {"b"}, "stats": {"a": vassal(11, 12)}, "probes": {"a": OK}}  # the old workers answer
    m = reloading()
    d = step(m, want(a=V2, b=V1), T0 + SETTINGS.nudge_after, **same)
    assert d.actions == ()
    d = step(m, want(a=V2, b=V1), T0 + SETTINGS.nudge_after + 0.01, **same)
    assert d.actions == (ReloadThroughFifo("a"),)
    assert moves(d) == []
    assert d.model.backends["a"].reload.nudged
    d = step(d.model, want(a=V2, b=V1), T0 + SETTINGS.nudge_after + 0.5, **same)
    assert d.actions == ()  # once


@pytest.mark.parametrize(
    "stats",
    [
        pytest.param(None, id="master-not-answering"),
        pytest.param(vassal(11, 12, accepting=False), id="workers-stopped-accepting"),
        pytest.param(vassal(11, 21), id="a-new-worker"),
    ],
)
def test_a_reload_that_has_started_is_not_nudged(stats):
    seen = {"stats": {"a": stats}} if stats is not None else {}
    d = step(reloading(), want(a=V2, b=V1), T0 + 5, routed={"b"}, probes={"a": REFUSED}, **seen)
    assert d.actions == ()


def test_a_file_changed_during_a_reload_is_reloaded_again_afterwards():
    m = replace(reloading(), emperor=emperor(a=SECOND + 5, b=SECOND))  # the Emperor took V2
    d = step(m, want(a=V3, b=V1), T0 + 0.5, routed={"b"}, stats={"a": vassal(11, 12)}, probes={"a": OK})
    assert (moves(d), d.actions) == ([], ())
    a = d.model.backends["a"]
    assert (a.state, a.mtime_ns, a.reload.again) == (S.RELOADING, V3, True)

    # The first reload finishes: the second starts at once (a is out of nginx and idle).
    d = step(d.model, want(a=V3, b=V1), T0 + 0.8, routed={"b"}, stats={"a": vassal(21, 22)}, probes={"a": OK})
    assert moves(d) == [("a", S.RELOADING, S.RELOADING)]
    assert d.transitions[0].reason == "its file changed during the reload"
    assert d.actions == (WakeEmperor(),)
    a = d.model.backends["a"]
    assert a.reload == Reload(frozenset({21, 22}), SECOND + 5)
    assert a.told_at == T0 + 0.8

    d = step(d.model, want(a=V3, b=V1), T0 + 1.2, routed={"b"}, stats={"a": vassal(31, 32)}, probes={"a": OK})
    assert moves(d) == [("a", S.RELOADING, S.HEALTHY)]
    assert d.model.backends["a"].served_mtime_ns == V3
    assert d.actions == (route("a", "b"),)


def test_a_reload_not_finished_in_time_fails():
    m = reloading()
    d = step(m, want(a=V2, b=V1), T0 + SETTINGS.reload_timeout + 0.01, routed={"b"}, probes={"a": REFUSED})
    assert moves(d) == [("a", S.RELOADING, S.FAILED)]
    assert d.model.backends["a"].error == "reload not finished after 60 s; see a.log"
    assert d.model.backends["a"].reload is None


def test_a_vassal_the_emperor_blacklists_during_its_reload_fails_with_the_reason():
    m = reloading()
    em = emperor(blacklist=("a",), b=SECOND)
    d = step(m, want(a=V2, b=V1), T0 + 1, routed={"b"}, emperor=em, reasons={"a": "SyntaxError (see a.log)"})
    assert moves(d) == [("a", S.RELOADING, S.FAILED)]
    assert d.model.backends["a"].error == "SyntaxError (see a.log)"


# ---- a file is removed; `fleet rm` drains ------------------------------------------------------------


def test_a_removed_file_leaves_nginx_then_the_emperor_is_told_once_drained_then_it_is_forgotten():
    em = emperor(a=SECOND, b=SECOND)
    w = World(want(b=V1), model(backend("a", S.HEALTHY), backend("b", S.HEALTHY), emperor=em), {"a", "b"}, em)
    w.probes = {"b": OK}
    w.stats = {"a": vassal(11, 12, busy=(11,))}
    d = w.step(T0)
    assert not w.look.emperor
    assert moves(d) == [("a", S.HEALTHY, S.REMOVING)]
    assert d.transitions[0].reason == "its file was deleted"
    assert d.actions == (route("b"),)
    a = d.model.backends["a"]
    assert (a.drain_until, a.told_at) == (T0 + SETTINGS.drain_wait, None)
    assert d.wake_after == SETTINGS.busy_interval

    d = w.step(T0 + 0.02)  # out of nginx, still busy
    assert not w.look.emperor and "a" in w.look.stats
    assert (moves(d), d.actions) == ([], ())

    w.stats["a"] = vassal(11, 12)
    d = w.step(T0 + SETTINGS.drain_settle)  # idle, and settled: now the Emperor may stop it
    assert d.actions == (WakeEmperor(),)
    assert d.model.backends["a"].told_at == T0 + SETTINGS.drain_settle

    d = w.step(T0 + 0.3)  # the Emperor still lists it
    assert w.look.emperor and "a" not in w.look.stats
    assert (moves(d), d.actions) == ([], ())

    w.emperor = emperor(b=SECOND)
    d = w.step(T0 + 0.6)
    assert moves(d) == [("a", S.REMOVING, None)]
    assert d.transitions[0].reason == "its processes are gone"
    assert d.actions == (Forget("a"),)
    assert "a" not in d.model.backends
    assert d.wake_after == SETTINGS.tick


def test_a_removed_backend_that_was_not_routed_is_told_at_once():
    d = step(model(backend("a", S.STARTING)), want(), T0)
    assert moves(d) == [("a", S.STARTING, S.REMOVING)]
    assert d.actions == (WakeEmperor(),)


def test_a_removal_is_forgotten_after_the_reload_timeout_even_if_the_emperor_still_lists_it():
    a = backend("a", S.REMOVING, told_at=T0 + 0.1)
    d = step(model(a), want(), T0 + SETTINGS.reload_timeout, emperor=emperor(a=SECOND))
    assert d.actions == ()
    d = step(model(a), want(), T0 + SETTINGS.reload_timeout + 0.01, emperor=emperor(a=SECOND))
    assert moves(d) == [("a", S.REMOVING, None)]
    assert d.actions == (Forget("a"),)


def test_a_removed_file_dropped_in_again_starts_again():
    a = backend("a", S.REMOVING, told_at=T0 + 0.1)
    d = step(model(a), want(a=V2), T0 + 1)
    assert moves(d) == [("a", S.REMOVING, S.STARTING)]
    assert d.model.backends["a"].told_at is None


def test_fleet_rm_drains_a_backend_out_of_nginx_without_telling_the_emperor():
    m = model(backend("a", S.HEALTHY), backend("b", S.HEALTHY))
    d = step(m, want(a=V1, b=V1, drain=("a",)), T0, routed={"a", "b"})
    assert moves(d) == [("a", S.HEALTHY, S.DRAINING)]
    assert d.actions == (route("b"),)
    assert d.wake_after == SETTINGS.busy_interval

    d = step(d.model, want(a=V1, b=V1, drain=("a",)), T0 + 1, routed={"b"})
    assert (moves(d), d.actions) == ([], ())


def test_a_drain_request_taken_back_starts_the_backend_again():
    m = model(backend("a", S.DRAINING), backend("b", S.HEALTHY))
    d = step(m, want(a=V1, b=V1), T0 + 1, routed={"b"}, probes={"a": REFUSED})
    assert moves(d) == [("a", S.DRAINING, S.STARTING)]


def test_a_drained_backend_whose_file_is_deleted_is_removed_and_told_at_once():
    m = model(backend("a", S.DRAINING), backend("b", S.HEALTHY))
    d = step(m, want(b=V1), T0 + 1, routed={"b"})
    assert moves(d) == [("a", S.DRAINING, S.REMOVING)]
    assert d.actions == (WakeEmperor(),)


# ---- health probes ------------------------------------------------------------------------------------


def two_routed(**a) -> Model:
    return model(backend("a", S.HEALTHY, **a), backend("b", S.HEALTHY))


def test_one_failed_probe_does_not_eject():
    d = step(two_routed(), want(a=V1, b=V1), T0, routed={"a", "b"}, probes={"a": REFUSED, "b": OK})
    assert (moves(d), d.actions) == ([], ())
    a = d.model.backends["a"]
    assert (a.probe_failures, a.last_probe) == (1, REFUSED.detail)


def test_a_second_failed_probe_in_a_row_ejects_and_unroutes():
    failed = Probe(False, "GET /healthz -> 500")
    d = step(two_routed(probe_failures=1), want(a=V1, b=V1), T0, routed={"a", "b"}, probes={"a": failed})
    assert moves(d) == [("a", S.HEALTHY, S.EJECTED)]
    why = "stopped answering health probes (GET /healthz -> 500)"
    assert d.transitions[0].reason == why
    assert d.actions == (route("b"),)
    a = d.model.backends["a"]
    assert (a.error, a.last_probe, a.probe_failures) == (why, "GET /healthz -> 500", 0)
    assert d.wake_after == SETTINGS.busy_interval


@pytest.mark.parametrize("probe", [BUSY, OK], ids=["busy", "ok"])
def test_a_busy_or_answering_backend_is_not_ejected_and_its_count_starts_over(probe):
    d = step(two_routed(probe_failures=1), want(a=V1, b=V1), T0, routed={"a", "b"}, probes={"a": probe})
    assert (moves(d), d.actions) == ([], ())
    assert d.model.backends["a"].probe_failures == 0


def test_an_ejected_backend_that_answers_again_is_healthy_and_routed_again():
    m = model(backend("a", S.EJECTED, error="stopped answering health probes (x)"), backend("b", S.HEALTHY))
    d = step(m, want(a=V1, b=V1), T0 + 1, routed={"b"}, probes={"a": OK})
    assert moves(d) == [("a", S.EJECTED, S.HEALTHY)]
    assert d.transitions[0].reason == "answers its health probe again"
    assert d.model.backends["a"].error == ""
    assert d.actions == (route("a", "b"),)


def test_an_ejected_backend_that_still_does_not_answer_stays_out():
    m = model(backend("a", S.EJECTED), backend("b", S.HEALTHY))
    d = step(m, want(a=V1, b=V1), T0 + 1, routed={"b"}, probes={"a": REFUSED})
    assert (moves(d), d.actions) == ([], ())
    assert d.model.backends["a"].last_probe == REFUSED.detail
    assert d.wake_after == SETTINGS.busy_interval


# ---- failures -----------------------------------------------------------------------------------------


def test_a_starting_vassal_the_emperor_blacklists_fails_with_the_reason_from_its_log():
    reason = "ModuleNotFoundError: No module named 'wsgi' (see run/logs/a.log)"
    em = emperor(blacklist=("a",))
    d = step(model(backend("a", S.STARTING)), want(a=V1), T0 + 1, emperor=em, reasons={"a": reason})
    assert moves(d) == [("a", S.STARTING, S.FAILED)]
    assert d.transitions[0].reason == reason
    assert d.model.backends["a"].error == reason
    assert d.wake_after == SETTINGS.tick


def test_a_blacklisted_vassal_without_a_reason_in_its_log_fails_with_a_generic_one():
    d = step(model(backend("a", S.STARTING)), want(a=V1), T0 + 1, emperor=emperor(blacklist=("a",)))
    assert d.model.backends["a"].error == "keeps exiting at start; see a.log"


def test_a_blacklisted_vassal_the_emperor_also_lists_as_accepting_keeps_starting():
    em = replace(emperor(a=SECOND), blacklist=emperor(blacklist=("a",)).blacklist)
    d = step(model(backend("a", S.STARTING)), want(a=V1), T0 + 1, emperor=em, probes={"a": REFUSED})
    assert moves(d) == []


def test_a_vassal_not_healthy_by_the_start_timeout_fails_naming_its_last_probe():
    m = model(backend("a", S.STARTING))
    d = step(m, want(a=V1), T0 + SETTINGS.start_timeout, probes={"a": REFUSED})
    assert moves(d) == []
    d = step(m, want(a=V1), T0 + SETTINGS.start_timeout + 0.01, probes={"a": REFUSED})
    assert moves(d) == [("a", S.STARTING, S.FAILED)]
    error = "not healthy 60 s after start; last probe: GET /healthz: connection refused; see a.log"
    assert d.model.backends["a"].error == error


def test_the_start_timeout_names_the_last_probe_seen_in_an_earlier_pass():
    m = model(backend("a", S.STARTING, last_probe="GET /healthz -> 404"))
    d = step(m, want(a=V1), T0 + SETTINGS.start_timeout + 0.01)
    assert d.model.backends["a"].error == "not healthy 60 s after start; last probe: GET /healthz -> 404; see a.log"


def test_the_start_timeout_prefers_the_reason_found_in_the_log_to_the_last_probe():
    m = model(backend("a", S.STARTING))
    reasons = {"a": "OSError: [Errno 98] Address in use (see a.log)"}
    d = step(m, want(a=V1), T0 + SETTINGS.start_timeout + 0.01, probes={"a": REFUSED}, reasons=reasons)
    assert d.model.backends["a"].error == reasons["a"]


def test_a_changed_file_restarts_the_start_timeout():
    m = model(backend("a", S.STARTING))
    d = step(m, want(a=V2), T0 + SETTINGS.start_timeout + 0.01, probes={"a": REFUSED})
    assert moves(d) == []
    assert (d.model.backends["a"].since, d.model.backends["a"].mtime_ns) == (T0 + SETTINGS.start_timeout + 0.01, V2)


def test_a_failed_backend_whose_file_is_fixed_starts_again_with_a_clear_blacklist():
    m = model(backend("a", S.FAILED, error="line 3: unknown uWSGI option `procesess`"))
    d = step(m, want(a=V2), T0 + 5)
    assert moves(d) == [("a", S.FAILED, S.STARTING)]
    assert d.transitions[0].reason == "its file changed"
    assert d.actions == (ClearBlacklist(), WakeEmperor())
    a = d.model.backends["a"]
    assert (a.state, a.since, a.mtime_ns, a.error) == (S.STARTING, T0 + 5, V2, "")
    assert d.wake_after == SETTINGS.busy_interval


def test_a_failed_backend_whose_file_changes_but_still_has_a_problem_stays_failed_with_the_new_problem():
    m = model(backend("a", S.FAILED, error="line 3: old problem"))
    d = step(m, want(a=FileInfo(V2, "line 4: new problem")), T0 + 5)
    assert (moves(d), d.actions) == ([], ())
    assert (d.model.backends["a"].error, d.model.backends["a"].mtime_ns) == ("line 4: new problem", V2)


def test_a_healthy_backend_whose_file_gets_a_problem_fails_and_leaves_nginx():
    d = step(two_routed(), want(a=FileInfo(V2, "line 2: bad"), b=V1), T0, routed={"a", "b"})
    assert moves(d) == [("a", S.HEALTHY, S.FAILED)]
    assert d.model.backends["a"].error == "line 2: bad"
    assert d.actions == (route("b"),)


def test_a_failed_backend_that_answers_again_is_healthy():
    # e.g. the app was fixed and the Emperor retried the vassal.
    m = model(backend("a", S.FAILED, error="keeps exiting at start; see a.log"))
    d = step(m, want(a=V1), T0 + 5, probes={"a": OK}, emperor=emperor(a=SECOND))
    assert moves(d) == [("a", S.FAILED, S.HEALTHY)]
    assert d.actions == (route("a"),)
    assert d.model.backends["a"].served_mtime_ns == V1


def test_a_failed_backend_that_answers_while_blacklisted_stays_failed():
    m = model(backend("a", S.FAILED))
    d = step(m, want(a=V1), T0 + 5, probes={"a": OK}, emperor=emperor(blacklist=("a",)))
    assert moves(d) == []


# ---- routing changes nginx refused --------------------------------------------------------------------


def refused_at(t: float) -> dict:
    return {"routing_error": "nginx: [emerg] invalid number of arguments in upstream.conf", "routing_failed_at": t}


def test_a_routing_change_nginx_refused_is_not_retried_before_routing_retry():
    m = model(backend("a", S.FAILED), backend("b", S.HEALTHY))  # a failed but nginx kept routing it
    d = step(m, want(a=V1, b=V1), T0 + 1.7, routed={"a", "b"}, **refused_at(T0))
    assert d.actions == ()
    assert d.wake_after == pytest.approx(SETTINGS.routing_retry - 1.7)  # sooner than the idle tick

    d = step(m, want(a=V1, b=V1), T0 + SETTINGS.routing_retry, routed={"a", "b"}, **refused_at(T0))
    assert d.actions == (route("b"),)


def test_without_a_routing_error_a_routing_change_goes_out_at_once():
    m = model(backend("a", S.FAILED), backend("b", S.HEALTHY))
    assert step(m, want(a=V1, b=V1), T0, routed={"a", "b"}).actions == (route("b"),)


def test_a_reloading_backend_nginx_still_routes_is_not_told_to_the_emperor():
    m = model(backend("a", S.HEALTHY), backend("b", S.HEALTHY), emperor=emperor(a=SECOND, b=SECOND))
    d = step(m, want(a=V2, b=V1), T0, routed={"a", "b"}, stats={"a": vassal(11, 12)})
    d = step(d.model, want(a=V2, b=V1), T0 + 0.5, routed={"a", "b"}, stats={"a": vassal(11, 12)}, **refused_at(T0))
    assert d.actions == ()  # nginx refused to take a out: the Emperor must not reload it yet
    assert d.model.backends["a"].told_at is None
    d = step(d.model, want(a=V2, b=V1), T0 + 5, routed={"a", "b"}, stats={"a": vassal(11, 12)}, **refused_at(T0))
    assert d.actions == (route("b"),)


# ---- when to look again -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state, routed, expected",
    [
        (S.HEALTHY, {"a"}, SETTINGS.tick),
        (S.FAILED, set(), SETTINGS.tick),
        (S.STARTING, set(), SETTINGS.busy_interval),
        (S.EJECTED, set(), SETTINGS.busy_interval),
        (S.DRAINING, set(), SETTINGS.busy_interval),
        (S.RELOADING, {"a"}, SETTINGS.busy_interval),
        (S.REMOVING, set(), SETTINGS.busy_interval),
    ],
)
def test_wake_after_is_the_busy_interval_while_something_is_in_flight_and_the_tick_when_settled(
    state, routed, expected
):
    a = backend("a", state, told_at=T0 if state in (S.RELOADING, S.REMOVING) else None)
    wanted = want() if state == S.REMOVING else want(a=V1, drain=("a",) if state == S.DRAINING else ())
    d = step(model(a), wanted, T0 + 0.1, routed=routed, emperor=emperor(a=SECOND))
    assert d.wake_after == expected


def test_wake_after_is_the_busy_interval_while_a_healthy_backend_waits_for_its_batch():
    m = model(backend("a", S.HEALTHY), backend("b", S.HEALTHY, ready_at=T0), backend("c", S.STARTING))
    d = step(m, want(a=V1, b=V1, c=V1), T0 + 1, routed={"a"})
    assert d.actions == ()
    assert d.wake_after == SETTINGS.busy_interval


def test_nothing_to_do_for_an_empty_fleet():
    d = step(Model(), want(), T0)
    assert (moves(d), d.actions, d.wake_after) == ([], (), SETTINGS.tick)


def test_the_model_remembers_when_the_emperor_was_read_and_the_last_health_round():
    m = model(backend("a", S.HEALTHY), emperor_read_at=T0 - 3, health_at=T0 - 0.1)
    d = step(m, want(a=V1), T0, routed={"a"})
    assert (d.model.emperor_read_at, d.model.health_at) == (T0 - 3, T0 - 0.1)  # nothing read, no round due
    em = emperor(a=SECOND)
    d = step(m, want(a=V1), T0 + 1, routed={"a"}, emperor=em)
    assert (d.model.emperor, d.model.emperor_read_at, d.model.health_at) == (em, T0 + 1, T0 + 1)


# ---- regressions: bugs found while writing these tests, fixed in the core since ------------------------


def test_a_fixed_file_of_a_blacklisted_vassal_is_not_failed_again_by_the_blacklist_read_before_it_was_cleared():
    em = emperor(blacklist=("a",))
    m = model(backend("a", S.FAILED, error="keeps exiting at start; see a.log"), emperor=em)
    w = World(want(a=V2), m, routed=set(), em=em)  # plan reads the Emperor for the fixed file: it still lists a
    d = w.step(T0 + 5)
    assert w.look.emperor
    assert d.actions == (ClearBlacklist(), WakeEmperor())
    assert moves(d) == [("a", S.FAILED, S.STARTING)]
    assert not d.model.emperor.blacklist  # SIGURG empties it: the next passes must not fail a on the old list
    w.probes["a"] = REFUSED
    assert moves(w.step(T0 + 5.02)) == []


def test_a_removed_file_put_back_unchanged_starts_again():
    # mv out and back, or rsync -a: the same mtime. Left REMOVING, it was Forgotten (its live socket
    # unlinked) after reload_timeout although its file is there.
    m = model(backend("a", S.HEALTHY), backend("b", S.HEALTHY), emperor=emperor(a=SECOND, b=SECOND))
    d = step(m, want(b=V1), T0, routed={"a", "b"})
    assert moves(d) == [("a", S.HEALTHY, S.REMOVING)]
    d = step(d.model, want(a=V1, b=V1), T0 + 0.5, routed={"b"})
    assert moves(d) == [("a", S.REMOVING, S.STARTING)]
    assert d.model.backends["a"].told_at is None


def test_a_batch_whose_route_nginx_refused_is_retried_after_routing_retry():
    # ready_at used to be cleared when the Route was decided: after a refusal the batch counted as ready
    # "now" on every pass and never joined while another backend was starting.
    m = model(backend("x", S.HEALTHY), backend("a", S.HEALTHY, ready_at=T0), backend("c", S.STARTING))
    wanted, c_down = want(x=V1, a=V1, c=V1), {"c": REFUSED}
    d = step(m, wanted, T0 + 3, routed={"x"}, probes=c_down)
    assert d.actions == (route("x", "a"),)  # the batch window is over
    d = step(d.model, wanted, T0 + 3.02, routed={"x"}, probes=c_down, **refused_at(T0 + 3))  # nginx refused it
    assert d.actions == ()
    later = T0 + 3 + SETTINGS.routing_retry
    d = step(d.model, wanted, later, routed={"x"}, probes=c_down, **refused_at(T0 + 3))
    assert d.actions == (route("x", "a"),)


def test_the_emperor_is_not_woken_while_another_backend_still_drains_before_its_reload():
    # WakeEmperor makes it rescan every file: it would reload a before a has drained.
    em = emperor(a=SECOND, b=SECOND)
    m = model(backend("a", S.HEALTHY), backend("b", S.HEALTHY), backend("c", S.FAILED, error="bad"), emperor=em)
    w = World(want(a=V2, b=V1, c=V2), m, routed={"a", "b"}, em=em)
    w.stats = {"a": vassal(11, 12, busy=(11,))}
    d = w.step(T0)
    assert not w.look.emperor
    assert moves(d) == [("a", S.HEALTHY, S.RELOADING), ("c", S.FAILED, S.STARTING)]
    assert d.actions == (route("b"), ClearBlacklist())
    d = w.step(T0 + 0.02)  # a is out of nginx but still busy
    assert d.actions == ()
    w.stats["a"] = vassal(11, 12)
    d = w.step(T0 + SETTINGS.drain_settle)
    assert d.actions == (WakeEmperor(),)
    assert d.model.backends["a"].told_at == T0 + SETTINGS.drain_settle


def test_a_backend_that_must_keep_its_traffic_waits_to_be_told_while_another_drains():
    # a has no peer (b leaves): it keeps its traffic, but waking the Emperor for it would stop b undrained.
    em = emperor(a=SECOND, b=SECOND)
    w = World(want(a=V2), model(backend("a", S.HEALTHY), backend("b", S.HEALTHY), emperor=em), {"a", "b"}, em)
    w.stats = {"a": vassal(11, 12), "b": vassal(13, 14, busy=(13,))}
    d = w.step(T0)
    assert moves(d) == [("b", S.HEALTHY, S.REMOVING), ("a", S.HEALTHY, S.RELOADING)]
    assert d.actions == (route("a"),)
    d = w.step(T0 + SETTINGS.drain_wait)  # b's drain deadline: both are told at once
    assert d.actions == (WakeEmperor(),)
    assert {d.model.backends[n].told_at for n in "ab"} == {T0 + SETTINGS.drain_wait}


def test_a_reload_whose_old_workers_were_not_seen_waits_to_see_them_before_the_emperor_is_told():
    # With no old workers known, the OLD workers answering used to count as a finished reload.
    m = model(backend("a", S.HEALTHY), backend("b", S.HEALTHY), emperor=emperor(a=SECOND, b=SECOND))
    d = step(m, want(a=V2, b=V1), T0, routed={"a", "b"})  # a's stats socket did not answer in time
    assert d.model.backends["a"].reload.old_workers == frozenset()
    d = step(d.model, want(a=V2, b=V1), T0 + 0.02, routed={"b"})  # still not answering: not told yet
    assert d.actions == ()
    settled = T0 + SETTINGS.drain_settle
    d = step(d.model, want(a=V2, b=V1), settled, routed={"b"}, stats={"a": vassal(11, 12)})
    assert d.actions == (WakeEmperor(),)
    assert d.model.backends["a"].reload.old_workers == {11, 12}
    # 20 ms later the Emperor has not reloaded a yet: the same workers answer.
    d = step(d.model, want(a=V2, b=V1), settled + 0.02, routed={"b"}, stats={"a": vassal(11, 12)}, probes={"a": OK})
    assert d.model.backends["a"].state == S.RELOADING
    assert d.actions == ()


def test_an_ejected_backend_whose_file_changed_is_not_routed_on_a_probe_of_its_old_version():
    m = model(backend("a", S.EJECTED), backend("b", S.HEALTHY), emperor=emperor(a=SECOND, b=SECOND))
    d = step(m, want(a=V2, b=V1), T0 + 1, routed={"b"}, probes={"a": OK}, stats={"a": vassal(11, 12)})
    assert moves(d) == [("a", S.EJECTED, S.STARTING)]
    assert d.actions == ()
    assert d.model.backends["a"].reload.old_workers == {11, 12}
    # The Emperor restarts it on the new file: new workers, and it is healthy.
    d = step(d.model, want(a=V2, b=V1), T0 + 1.5, routed={"b"}, probes={"a": OK}, stats={"a": vassal(21, 22)})
    assert moves(d) == [("a", S.STARTING, S.HEALTHY)]
    assert d.model.backends["a"].served_mtime_ns == V2
    assert d.actions == (route("a", "b"),)


# ---- bugs found in the core (strict xfail: they pass once fixed) -------------------------------------


def test_an_ejected_backend_whose_file_changed_within_the_emperors_second_is_reloaded_anyway():
    em = emperor(a=SECOND, b=SECOND)
    m = model(backend("a", S.EJECTED), backend("b", S.HEALTHY), emperor=em)
    w = World(want(a=V1 + 300_000_000, b=V1), m, {"b"}, em)  # the Emperor last acted on a in V1's second
    w.probes = {"a": OK, "b": OK}  # the old process answers again
    w.stats = {"a": vassal(11, 12)}
    now = T0 + 1
    while now < T0 + 1 + SETTINGS.start_timeout + 1:
        d = w.step(now)
        if ReloadThroughFifo("a") in d.actions:
            w.stats["a"] = vassal(21, 22)  # the master FIFO reloads it
        now += 0.5
    assert w.model.backends["a"].state == S.HEALTHY


def test_a_removed_file_put_back_changed_is_not_routed_on_a_probe_of_its_old_version():
    em = emperor(a=SECOND, b=SECOND)
    m = model(backend("a", S.HEALTHY), backend("b", S.HEALTHY), emperor=em, emperor_read_at=T0 - 5)
    w = World(want(b=V1), m, {"a", "b"}, em)
    w.probes = {"a": OK, "b": OK}
    w.stats = {"a": vassal(11, 12, busy=(11,))}  # still busy: not told to the Emperor yet
    assert moves(w.step(T0)) == [("a", S.HEALTHY, S.REMOVING)]
    w.wanted = want(a=V2, b=V1)  # e.g. `git checkout` puts it back: a new mtime
    assert moves(w.step(T0 + 0.02)) == [("a", S.REMOVING, S.STARTING)]
    d = w.step(T0 + 0.04)
    assert w.look.emperor  # this read wakes the Emperor: it reloads a for V2 now
    assert d.model.backends["a"].state == S.STARTING
    assert "a" not in w.routed


def test_an_unrouted_backend_idle_at_once_is_not_stopped_before_its_backlog_settles():
    # Idle workers just after nginx stopped routing prove nothing: connections nginx made a moment before
    # may still wait in the socket's backlog, and the Emperor stopping the vassal then would reset them.
    em = emperor(a=SECOND, b=SECOND)
    w = World(want(b=V1), model(backend("a", S.HEALTHY), backend("b", S.HEALTHY), emperor=em), {"a", "b"}, em)
    w.probes = {"b": OK}
    w.stats = {"a": vassal(11, 12)}
    assert w.step(T0).actions == (route("b"),)
    assert w.step(T0 + 0.01).actions == ()
    assert w.step(T0 + SETTINGS.drain_settle - 0.001).actions == ()
    assert w.step(T0 + SETTINGS.drain_settle).actions == (WakeEmperor(),)
