"""fleet.core.outliers (passive health): the rules alone, then through `decide()` pass after pass."""

from __future__ import annotations

from fleet.core import outliers
from fleet.core.looking import what_to_observe
from fleet.core.model import Backend, Model
from fleet.core.observations import FileInfo, Observed, Probe, Wanted
from fleet.core.outliers import Record
from fleet.core.reconcile import Decision, decide
from fleet.core.settings import Settings
from fleet.core.states import State

S = State
SETTINGS = Settings()
T0 = 1000.0
V1 = 1_700_000_000 * 10**9
OK = Probe(True, "GET /healthz -> 200")
BASE = SETTINGS.outlier_ejection


def seen(*statuses: int, now: float = T0) -> Record:
    return outliers.note(Record(), statuses, now, SETTINGS)


# ---- the rules -------------------------------------------------------------------------------------


def test_five_5xx_among_the_last_ten_answers_make_an_outlier():
    records = {"a": seen(200, 500, 200, 500, 500, 200, 500, 500), "b": seen(200)}
    assert outliers.verdict("a", records, SETTINGS) == "answers 5xx: 5 of its last 8 answers 5xx (500)"


def test_four_5xx_among_the_last_ten_do_not():
    records = {"a": seen(500, 500, 500, 500, *[200] * 6), "b": seen(200)}
    assert outliers.verdict("a", records, SETTINGS) == ""


def test_only_the_last_ten_answers_count():
    record = outliers.note(seen(*[500] * 9), [200] * 6, T0 + 0.1, SETTINGS)
    assert record.recent == (500, 500, 500, 500) + (200,) * 6
    assert outliers.verdict("a", {"a": record, "b": seen(200)}, SETTINGS) == ""


def test_consecutive_5xx_eject_at_the_fifth():
    record = Record()
    for i in range(4):
        record = outliers.note(record, [502], T0 + i / 10, SETTINGS)
        assert outliers.verdict("a", {"a": record, "b": seen(200)}, SETTINGS) == ""
    record = outliers.note(record, [502], T0 + 0.5, SETTINGS)
    assert outliers.verdict("a", {"a": record, "b": seen(200)}, SETTINGS).startswith("answers 5xx: 5 of")


def test_timeouts_count_and_are_named():
    records = {"a": seen(*[504] * 5), "b": seen(200)}
    why = outliers.verdict("a", records, SETTINGS)
    assert why == "answers 5xx: 5 of its last 5 answers timed out (504)"
    assert outliers.kind(why) == "timeouts"


def test_a_5xx_rate_twenty_points_above_the_others_makes_an_outlier():
    # 3 of 10 is under the windowed rule, but 30% against the others' 5%.
    a = seen(*[500] * 3, *[200] * 7)
    b = seen(500, *[200] * 19)
    why = outliers.verdict("a", {"a": a, "b": b}, SETTINGS)
    assert why == "answers 5xx: 30% 5xx rate in the last 1 s, the others 5%"
    assert outliers.kind(why) == "5xx_rate"


def test_a_5xx_rate_less_than_twenty_points_above_the_others_does_not():
    a = seen(*[500] * 3, *[200] * 7)
    b = seen(*[500] * 3, *[200] * 17)  # 15%: 15 points below a's
    assert outliers.verdict("a", {"a": a, "b": b}, SETTINGS) == ""


def test_the_relative_rule_needs_enough_answers_on_both_sides():
    assert outliers.verdict("a", {"a": seen(500, 500, 200, 200), "b": seen(*[200] * 20)}, SETTINGS) == ""
    assert outliers.verdict("a", {"a": seen(*[500] * 3, *[200] * 7), "b": seen(200, 200)}, SETTINGS) == ""


def test_answers_older_than_the_interval_leave_the_rate():
    a = seen(*[500] * 3, *[200] * 7)
    later = outliers.note(a, [200], T0 + SETTINGS.outlier_interval + 0.1, SETTINGS)
    assert later.interval == ((T0 + SETTINGS.outlier_interval + 0.1, 1, 0),)


def test_the_last_healthy_backend_is_kept_and_the_reason_says_so():
    eject, kept = outliers.decide({"a": seen(*[500] * 10)}, SETTINGS)
    assert eject == {}
    assert kept == {"a": "answers 5xx: 10 of its last 10 answers 5xx (500); " + outliers.PANIC}


def test_when_the_others_answer_as_badly_nobody_is_ejected():
    records = {"a": seen(*[500] * 6, *[200] * 4), "b": seen(*[500] * 5, *[200] * 5), "c": seen(*[500] * 7, *[200] * 3)}
    assert outliers.decide(records, SETTINGS) == ({}, {})


def test_of_two_bad_backends_the_worse_is_the_outlier():
    eject, kept = outliers.decide({"a": seen(*[500] * 6, *[200] * 4), "b": seen(*[500] * 10)}, SETTINGS)
    assert list(eject) == ["b"] and kept == {}


def test_at_most_half_of_the_backends_are_ejected_at_once():
    records = {
        "a": seen(*[500] * 10),
        "b": seen(*[500] * 9, 200),
        "c": seen(*[500] * 8, 200, 200),
        "d": seen(*[200] * 20),
    }
    eject, kept = outliers.decide(records, SETTINGS)
    assert list(eject) == ["a", "b"]
    assert kept == {"c": outliers.verdict("c", records, SETTINGS) + "; " + outliers.TOO_MANY + " (2 of 4)"}
    # With one out already, only one more goes.
    eject, kept = outliers.decide({n: records[n] for n in "bcd"}, SETTINGS, ejected=1)
    assert list(eject) == ["b"] and list(kept) == ["c"]


def test_the_ejection_time_doubles_on_repeat_ejections_and_is_capped():
    record, times = Record(), []
    for i in range(8):
        record = outliers.eject(record, T0 + i, SETTINGS)
        assert record.ejected_until is not None
        times.append(record.ejected_until - (T0 + i))
    assert times == [min(SETTINGS.outlier_ejection_max, BASE * 2**i) for i in range(8)]
    assert times[1] == 2 * BASE and times[-1] == SETTINGS.outlier_ejection_max


def test_ejections_older_than_the_memory_are_forgotten():
    record = outliers.eject(outliers.eject(Record(), T0, SETTINGS), T0 + 10, SETTINGS)
    now = T0 + SETTINGS.outlier_memory + 1  # the first is forgotten, the second is not
    later = outliers.eject(record, now, SETTINGS)
    assert later.ejections == (T0 + 10, now)
    assert later.ejected_until == now + 2 * BASE


def test_an_ejection_forgets_the_answers_that_caused_it():
    record = outliers.eject(seen(*[500] * 10), T0, SETTINGS)
    assert record.recent == () and record.interval == ()
    assert outliers.held(record, T0 + BASE - 0.1) and not outliers.held(record, T0 + BASE)


def test_probe_ejections_have_their_own_kind():
    assert outliers.kind("stopped answering health probes (GET /healthz: connection refused)") == "probes"
    assert outliers.kind("answers 5xx: 5 of its last 10 answers 5xx (500)") == "5xx"


# ---- through decide() ------------------------------------------------------------------------------

WANTED = Wanted({"a": FileInfo(V1), "b": FileInfo(V1)})


def healthy(*names: str) -> Model:
    return Model(backends={n: Backend(n, S.HEALTHY, T0, V1, V1) for n in names})


def step(m: Model, now: float, routed: set[str], wanted: Wanted = WANTED, **seen) -> Decision:
    """One pass, observing what `what_to_observe` asks for (probes answer OK unless given)."""
    look = what_to_observe(m, wanted, now, SETTINGS)
    probes = seen.pop("probes", {n: OK for n in look.probe})
    return decide(wanted, Observed(routed=frozenset(routed), probes=probes, **seen), m, SETTINGS, now)


def test_a_backend_answering_5xx_is_ejected_and_leaves_routing_in_the_same_pass():
    d = step(healthy("a", "b"), T0 + 1, {"a", "b"}, answers={"a": (500,) * 5, "b": (200,) * 5})
    assert [(t.name, t.old, t.new, t.reason) for t in d.transitions] == [
        ("a", S.HEALTHY, S.EJECTED, "answers 5xx: 5 of its last 5 answers 5xx (500)")
    ]
    assert d.model.backends["a"].error == "answers 5xx: 5 of its last 5 answers 5xx (500)"
    assert d.actions[0].names == frozenset({"b"})  # type: ignore[union-attr]


def test_answers_add_up_over_passes():
    m = healthy("a", "b")
    for i in range(4):
        d = step(m, T0 + 1 + i / 10, {"a", "b"}, answers={"a": (500,), "b": (200,)})
        assert d.transitions == ()
        m = d.model
    d = step(m, T0 + 1.5, {"a", "b"}, answers={"a": (500,)})
    assert [(t.name, t.new) for t in d.transitions] == [("a", S.EJECTED)]


def test_an_ejected_outlier_is_neither_probed_nor_routed_within_its_ejection_time_then_comes_back():
    d = step(healthy("a", "b"), T0, {"a", "b"}, answers={"a": (500,) * 5})
    m = d.model
    assert "a" not in what_to_observe(m, WANTED, T0 + 1, SETTINGS).probe  # its probe would answer
    assert d.wake_after == SETTINGS.tick  # nothing in flight: the idle tick, not busy polling
    d = step(m, T0 + BASE - 0.1, {"b"}, probes={"a": OK})
    assert d.transitions == () and d.model.backends["a"].state == S.EJECTED
    assert "a" in what_to_observe(d.model, WANTED, T0 + BASE, SETTINGS).probe
    d = step(d.model, T0 + BASE, {"b"})
    assert [(t.name, t.new, t.reason) for t in d.transitions] == [("a", S.HEALTHY, "answers its health probe again")]
    assert d.model.backends["a"].error == ""


def test_an_outlier_whose_probe_fails_after_its_ejection_time_stays_ejected():
    m = step(healthy("a", "b"), T0, {"a", "b"}, answers={"a": (500,) * 5}).model
    d = step(m, T0 + BASE + 0.5, {"b"}, probes={"a": Probe(False, "GET /healthz -> 500, expected 2xx")})
    assert d.transitions == () and d.model.backends["a"].state == S.EJECTED


def test_a_readmitted_outlier_that_fails_again_is_ejected_twice_as_long():
    m = step(healthy("a", "b"), T0, {"a", "b"}, answers={"a": (500,) * 5}).model
    m = step(m, T0 + BASE, {"b"}).model
    assert m.backends["a"].state == S.HEALTHY
    d = step(m, T0 + BASE + 1, {"a", "b"}, answers={"a": (500,) * 5})
    assert d.model.backends["a"].state == S.EJECTED
    assert d.model.backends["a"].outlier.ejected_until == T0 + BASE + 1 + 2 * BASE


def test_an_outlier_is_judged_on_new_answers_only_once_back():
    m = step(healthy("a", "b"), T0, {"a", "b"}, answers={"a": (500,) * 5}).model
    m = step(m, T0 + BASE, {"b"}).model
    d = step(m, T0 + BASE + 0.1, {"a", "b"}, answers={"a": (500,) * 4 + (200,)})
    assert d.transitions == ()


def test_the_last_healthy_routed_backend_is_kept_and_status_says_why():
    d = step(healthy("a", "b"), T0, {"a"}, answers={"a": (500,) * 10})  # b healthy but not routed yet
    assert d.transitions == ()
    assert d.model.backends["a"].error == "answers 5xx: 10 of its last 10 answers 5xx (500); " + outliers.PANIC
    # Once its answers are good again, the note goes.
    d = step(d.model, T0 + 0.5, {"a"}, answers={"a": (200,) * 10})
    assert d.model.backends["a"].error == ""


def test_a_lone_backend_answering_5xx_is_kept():
    wanted = Wanted({"a": FileInfo(V1)})
    d = step(healthy("a"), T0, {"a"}, wanted=wanted, answers={"a": (500,) * 10})
    assert d.transitions == () and d.model.backends["a"].state == S.HEALTHY
    assert d.model.backends["a"].error.endswith(outliers.PANIC)


def test_answers_of_backends_not_routed_and_healthy_are_not_judged():
    m = healthy("a", "b")
    m = Model(backends={**m.backends, "a": Backend("a", S.RELOADING, T0, V1, V1)})
    d = step(m, T0, {"a", "b"}, answers={"a": (500,) * 10})
    assert all(t.new != S.EJECTED for t in d.transitions)
    assert d.model.backends["a"].outlier.recent == ()


def test_a_few_5xx_make_the_control_plane_look_again_soon():
    d = step(healthy("a", "b"), T0, {"a", "b"}, answers={"a": (500, 200), "b": (200,)})
    assert d.transitions == () and d.wake_after == SETTINGS.outlier_recheck
    d = step(d.model, T0 + 0.1, {"a", "b"}, answers={"a": (200,), "b": (200,)})
    assert d.wake_after == SETTINGS.tick


def test_an_outlier_s_start_timeout_counts_from_the_end_of_its_ejection_time():
    long = Record(ejections=(T0,), ejected_until=T0 + 200)
    m = Model(
        backends={"a": Backend("a", S.EJECTED, T0, V1, V1, outlier=long), "b": Backend("b", S.HEALTHY, T0, V1, V1)}
    )
    bad = {"a": Probe(False, "GET /healthz -> 500, expected 2xx")}
    d = step(m, T0 + 200 + 1, {"b"}, probes=bad)
    assert d.transitions == ()
    d = step(d.model, T0 + 200 + SETTINGS.start_timeout + 1, {"b"}, probes=bad)
    assert [(t.name, t.new) for t in d.transitions] == [("a", S.FAILED)]
    assert "after it was ejected" in d.transitions[0].reason
