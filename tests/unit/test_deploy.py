"""fleet.core.deploy: each phase, each verdict and each interruption of a deploy, with no process and no file."""

from __future__ import annotations

from dataclasses import replace

from fleet.core import deploy as core
from fleet.core.deploy import Deploy, Plan, Seen

OLD = {"a": "[uwsgi]\nmodule = old\n", "b": "[uwsgi]\nmodule = old\n"}
PLAN = Plan("default", "v2", "[uwsgi]\nmodule = new\n", (20, 50), 5.0, 5.0, 500.0, 30, 1, 10.0)
N1, N2 = "default-v2-1", "default-v2-2"


def healthy(*names: str, **others: str) -> dict[str, str]:
    return dict.fromkeys(names, "healthy") | others


def answers(name: str, ok: int, errors: int = 0, ms: float = 10.0) -> dict:
    return {name: ((200, ms),) * ok + ((500, ms),) * errors}


def in_canary(step: int = 0, now: float = 100.0) -> Deploy:
    return replace(core.begin(PLAN, OLD, 0.0), phase=core.CANARY, step=step, since=now, started=(N1,))


def test_starting_writes_the_surge_of_new_backends_as_standbys():
    orders = core.advance(core.begin(PLAN, OLD, 0.0), Seen(1.0, healthy("a", "b")))
    assert orders.write == {N1: PLAN.text}
    assert orders.deploy.phase == core.STARTING and orders.weights == {N1: 0}


def test_starting_moves_to_the_first_canary_step_once_the_new_backends_are_healthy():
    d = replace(core.begin(PLAN, OLD, 0.0), started=(N1,))
    orders = core.advance(d, Seen(2.0, healthy("a", "b", N1)))
    assert orders.deploy.phase == core.CANARY and orders.deploy.step == 0
    # 20% to the one new backend, 80% to the two old: 20*2 vs 80*1 each, i.e. 40 : 80+80.
    assert orders.weights == {N1: 400, "a": 800, "b": 800}


def test_a_new_backend_not_healthy_within_the_start_timeout_rolls_back():
    d = replace(core.begin(PLAN, OLD, 0.0), started=(N1,))
    orders = core.advance(d, Seen(11.0, healthy("a", "b", **{N1: "starting"})))
    assert orders.deploy.phase == core.ROLLING_BACK
    assert "not healthy within the start timeout (10 s)" in orders.deploy.reason
    assert orders.drain == (N1,) and orders.weights == {N1: 0}


def test_a_new_backend_that_fails_while_starting_rolls_back_at_once():
    d = replace(core.begin(PLAN, OLD, 0.0), started=(N1,))
    orders = core.advance(d, Seen(1.0, healthy("a", "b", **{N1: "failed"})))
    assert orders.deploy.phase == core.ROLLING_BACK and f"{N1} is failed" in orders.deploy.reason


def test_a_canary_step_waits_for_its_interval_before_passing():
    orders = core.advance(in_canary(), Seen(102.0, healthy("a", "b", N1), answers=answers(N1, 100)))
    assert orders.deploy.phase == core.CANARY and orders.deploy.step == 0
    assert orders.deploy.window.answers == 100 and "judging in 3 s" in orders.deploy.note


def test_a_canary_step_passes_after_its_interval_and_the_next_begins_with_a_fresh_window():
    d = replace(in_canary(), window=core.Window(40, 1, (10.0,) * 40))
    orders = core.advance(d, Seen(105.0, healthy("a", "b", N1)))
    assert orders.deploy.step == 1 and orders.deploy.window == core.Window()
    assert orders.weights == {N1: 1000, "a": 500, "b": 500}
    assert any("passed: 40 answers, 5xx 2.5%" in line for line in orders.say)


def test_the_error_rate_above_its_bound_rolls_back_before_the_interval_ends():
    orders = core.advance(in_canary(), Seen(101.0, healthy("a", "b", N1), answers=answers(N1, 20, 10)))
    assert orders.deploy.phase == core.ROLLING_BACK
    assert orders.deploy.reason == "canary step 1 (20%): 5xx rate 33.3% > 5% (10 of 30 answers)"


def test_p99_above_its_bound_rolls_back():
    orders = core.advance(in_canary(), Seen(101.0, healthy("a", "b", N1), answers=answers(N1, 30, ms=900.0)))
    assert orders.deploy.reason == "canary step 1 (20%): p99 900 ms > 500 ms (30 answers)"


def test_no_verdict_on_too_few_answers_even_if_they_are_all_errors():
    orders = core.advance(in_canary(), Seen(101.0, healthy("a", "b", N1), answers=answers(N1, 0, 29)))
    assert orders.deploy.phase == core.CANARY


def test_too_few_answers_after_the_interval_waits_and_says_so_never_promotes():
    d = in_canary(step=1)
    for now in (106.0, 200.0, 10_000.0):
        orders = core.advance(d, Seen(now, healthy("a", "b", N1), answers=answers(N1, 1)))
        d = orders.deploy
        assert d.phase == core.CANARY and d.step == 1
    assert "of 30 answers needed to judge; waiting for traffic" in d.note


def test_the_last_step_passing_starts_the_promotion_with_one_old_backend_drained():
    d = replace(in_canary(step=1), window=core.Window(40, 0, (10.0,) * 40))
    orders = core.advance(d, Seen(105.0, healthy("a", "b", N1)))
    assert orders.deploy.phase == core.PROMOTING
    assert orders.drain == ("a",) and orders.write == {} and orders.weights == {}


def test_promoting_starts_the_next_new_backend_within_the_surge():
    d = replace(in_canary(), phase=core.PROMOTING, removed=("a",))
    orders = core.advance(d, Seen(110.0, healthy("b", N1)))
    assert orders.write == {N2: PLAN.text} and orders.drain == ()


def test_promoting_deletes_a_drained_old_backend_once_nginx_no_longer_routes_it():
    d = replace(in_canary(), phase=core.PROMOTING)
    orders = core.advance(d, Seen(110.0, healthy("b", N1, a="draining"), routed=frozenset({"b", N1})))
    assert orders.delete == ("a",)


def test_promotion_ends_with_as_many_backends_all_new():
    d = replace(in_canary(), phase=core.PROMOTING, started=(N1, N2), removed=("a",))
    orders = core.advance(d, Seen(120.0, healthy(N1, N2)))
    assert orders.deploy.phase == core.PROMOTED and orders.deploy.removed == ("a", "b")


def test_a_cancel_rolls_back_and_the_rollback_ends_when_the_new_are_gone_and_the_old_healthy():
    orders = core.advance(in_canary(), Seen(101.0, healthy("a", "b", N1), cancel=True))
    assert orders.deploy.phase == core.ROLLING_BACK and orders.deploy.reason == "cancelled at canary step 1 (20%)"
    assert orders.weights == {N1: 0} and orders.drain == (N1,)
    done = core.advance(orders.deploy, Seen(103.0, healthy("a", "b")))
    assert done.deploy.phase == core.ROLLED_BACK


def test_a_rollback_during_the_promotion_brings_back_the_old_backends_it_took_out():
    d = replace(in_canary(), phase=core.PROMOTING, started=(N1, N2), removed=("a",))
    orders = core.advance(d, Seen(120.0, healthy(N1, b="draining", **{N2: "failed"})))
    assert orders.deploy.phase == core.ROLLING_BACK
    assert orders.write == {"a": OLD["a"]} and orders.undrain == ("b",)
    assert set(orders.drain) == {N1, N2}


def test_a_finished_deploy_orders_nothing():
    d = replace(in_canary(), phase=core.PROMOTED)
    assert core.advance(d, Seen(1.0, healthy(N1), cancel=True)) == core.Orders(d)


def test_a_resumed_deploy_keeps_its_phase_and_step_and_starts_its_window_and_timeouts_again():
    d = replace(in_canary(step=1), window=core.Window(10, 0, (5.0,) * 10))
    resumed = core.resume(d, 500.0)
    assert (resumed.phase, resumed.step, resumed.since, resumed.window) == (core.CANARY, 1, 500.0, core.Window())
    assert resumed.resumed


def test_a_deploy_survives_its_json_round_trip_but_for_the_latencies():
    d = replace(in_canary(step=1), window=core.Window(10, 2, (5.0,) * 10), note="x")
    back = core.from_dict(core.to_dict(d))
    assert back == replace(d, window=core.Window(10, 2, ()))


def test_no_canary_goes_straight_to_promoting():
    plan = replace(PLAN, canary=())
    orders = core.advance(core.begin(plan, OLD, 0.0), Seen(1.0, healthy("a", "b")))
    assert orders.deploy.phase == core.PROMOTING and orders.write == {N1: plan.text}


def test_percentile_is_the_nearest_rank():
    assert core.percentile(tuple(float(i) for i in range(1, 101)), 99) == 99.0
    assert core.percentile((), 99) == 0.0


def test_probes_are_due_only_in_a_canary_short_of_answers_at_the_rate_asked():
    d = replace(in_canary(), plan=replace(PLAN, probe_rate=4.0))
    assert core.probes_due(d, 100.0, 100.5) == 2
    assert core.probes_due(d, 100.0, 100.1) == 0
    assert core.probes_due(replace(d, window=core.Window(30, 0, ())), 100.0, 101.0) == 0
    assert core.probes_due(replace(d, phase=core.PROMOTING), 100.0, 101.0) == 0
    assert core.probes_due(in_canary(), 100.0, 101.0) == 0  # no --probe-rate
