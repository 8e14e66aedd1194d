"""Backends that crash again and again after a healthy start: failed, kept out, retried with backoff."""

from __future__ import annotations

from dataclasses import replace

from fleet.core import flapping
from fleet.core.model import Backend, Model
from fleet.core.observations import FileInfo, Observed, Probe, Wanted
from fleet.core.reconcile import decide
from fleet.core.settings import Settings
from fleet.core.states import State
from fleet.core.stats import EmperorStats, VassalProcess

S = State
SETTINGS = Settings()
V1 = 1_700_000_000 * 10**9
FILES = Wanted({"a": FileInfo(V1), "b": FileInfo(V1)})


def emperor(respawns: int) -> EmperorStats:
    return EmperorStats(
        {
            "a": VassalProcess("a", 100 + respawns, 1_700_000_000, True, True, respawns, False),
            "b": VassalProcess("b", 200, 1_700_000_000, True, True, 0, False),
        },
        {},
    )


def healthy(name: str) -> Backend:
    return Backend(name, S.HEALTHY, since=0.0, mtime_ns=V1, served_mtime_ns=V1)


def crash(m: Model, respawns: int, now: float):
    """A pass whose Emperor reading shows `a` respawned up to `respawns` times."""
    d = decide(FILES, Observed(routed=frozenset({"a", "b"}), emperor=emperor(respawns)), m, SETTINGS, now)
    return d


def test_a_respawn_of_a_healthy_backend_is_noted_but_two_are_not_flapping():
    m = Model({"a": healthy("a"), "b": healthy("b")}, emperor=emperor(0))
    d = crash(m, 2, 10.0)
    assert d.model.backends["a"].state is S.HEALTHY
    assert d.model.backends["a"].crashes == (10.0, 10.0)


def test_three_crashes_within_the_window_fail_it_out_of_nginx_until_its_retry():
    m = Model({"a": healthy("a"), "b": healthy("b")}, emperor=emperor(0))
    d = crash(m, 3, 10.0)
    a = d.model.backends["a"]
    assert a.state is S.FAILED and a.retry_at == 10.0 + SETTINGS.flap_backoff
    assert "crashed 3 times in 60 s; retrying in 10 s" in a.error
    assert [type(x).__name__ for x in d.actions] == ["Route"] and d.actions[0].names == {"b"}
    assert d.wake_after <= SETTINGS.tick
    # It answers its probes between crashes: still not routed before its retry.
    again = decide(FILES, Observed(routed=frozenset({"b"}), probes={"a": Probe(True)}), d.model, SETTINGS, 15.0)
    assert again.model.backends["a"].state is S.FAILED and not again.actions
    assert again.wake_after == SETTINGS.tick
    soon = decide(FILES, Observed(routed=frozenset({"b"})), d.model, SETTINGS, 19.75)
    assert soon.wake_after == 0.25, "it looks again when its retry is due"


def test_after_its_backoff_it_starts_again_and_is_routed_once_it_answers():
    a = replace(healthy("a"), state=S.FAILED, retry_at=20.0, crashes=(5.0, 6.0, 7.0), error="crashed")
    m = Model({"a": a, "b": healthy("b")}, emperor=emperor(3))
    d = decide(FILES, Observed(routed=frozenset({"b"})), m, SETTINGS, 20.0)
    assert [(t.old, t.new) for t in d.transitions] == [(S.FAILED, S.STARTING)]
    ok = decide(FILES, Observed(routed=frozenset({"b"}), probes={"a": Probe(True)}), d.model, SETTINGS, 20.1)
    assert ok.model.backends["a"].state is S.HEALTHY
    assert ok.actions[0].names == {"a", "b"}


def test_a_crash_soon_after_its_retry_fails_it_again_for_twice_as_long():
    a = replace(healthy("a"), crashes=(5.0, 6.0, 7.0))
    m = Model({"a": a, "b": healthy("b")}, emperor=emperor(3))
    d = crash(m, 4, 30.0)
    assert d.model.backends["a"].state is S.FAILED
    assert d.model.backends["a"].retry_at == 30.0 + 2 * SETTINGS.flap_backoff


def test_crashes_older_than_the_window_are_forgotten():
    a = replace(healthy("a"), crashes=(5.0, 6.0))
    m = Model({"a": a, "b": healthy("b")}, emperor=emperor(0))
    d = crash(m, 1, 65.5)  # 5.0 is 60.5 s old: out of the window; 6.0 is in
    assert d.model.backends["a"].state is S.HEALTHY
    assert d.model.backends["a"].crashes == (6.0, 65.5)


def test_ejections_count_as_crashes():
    a = replace(healthy("a"), crashes=(1.0, 2.0), probe_failures=1)
    m = Model({"a": a, "b": healthy("b")})
    failed = Probe(False, "GET /healthz: connection refused")
    d = decide(FILES, Observed(routed=frozenset({"a", "b"}), probes={"a": failed, "b": Probe(True)}), m, SETTINGS, 3.0)
    assert d.model.backends["a"].state is S.FAILED
    assert "last: stopped answering health probes" in d.model.backends["a"].error


def test_respawns_are_counted_between_two_readings_only():
    assert flapping.respawns_since(None, emperor(3), "a") == 0
    assert flapping.respawns_since(emperor(1), emperor(3), "a") == 2
    assert flapping.respawns_since(emperor(3), emperor(3), "zz") == 0
