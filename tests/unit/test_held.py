"""How long a connection may wait on a held socket without a vassal (fleet.core.held)."""

from __future__ import annotations

from fleet.core.held import FAILED_START, GRACE, Outage, exited, launched, refuse_in


def test_nothing_is_refused_while_a_vassal_runs_or_before_any_exited():
    assert refuse_in(Outage(), running=False, now=100.0) is None
    o = exited(launched(Outage(), 0.0), 50.0)
    assert refuse_in(o, running=True, now=500.0) is None


def test_what_waits_is_refused_grace_seconds_after_the_vassal_exited():
    o = exited(launched(Outage(), 0.0), 50.0)
    assert refuse_in(o, running=False, now=50.0) == GRACE
    assert refuse_in(o, running=False, now=50.0 + GRACE - 1) == 1.0
    assert refuse_in(o, running=False, now=50.0 + GRACE + 7) == 0.0


def test_a_crash_respawned_at_once_starts_a_new_outage_even_when_it_crashes_young():
    # The only backend killed twice in quick succession: each kill gets the whole grace for its respawn.
    o = exited(launched(Outage(), 0.0), 50.0)
    o = exited(launched(o, 50.1), 50.5)
    assert o.down_since == 50.5


def test_throttled_starts_that_fail_young_continue_the_outage_so_what_waits_is_refused_in_grace():
    # A reload into an app that no longer imports: exit, an immediate respawn that fails, then starts
    # throttled by the Emperor (1 s, 2 s, ...) that fail too: refused GRACE after the outage began.
    o = exited(launched(Outage(), 0.0), 50.0)
    o = exited(launched(o, 50.1), 50.5)  # respawned at once: a new outage from 50.5
    o = exited(launched(o, 51.5), 51.5 + FAILED_START / 2)  # throttled 1 s, failed young
    o = exited(launched(o, 53.9), 53.9 + FAILED_START / 2)  # throttled 2 s, failed young
    assert o.down_since == 50.5
    assert refuse_in(o, running=False, now=54.5) == 0.0


def test_a_throttled_start_that_lived_past_failed_start_served_and_a_later_exit_is_a_new_outage():
    o = exited(launched(Outage(), 0.0), 50.0)
    o = exited(launched(o, 52.0), 52.0 + FAILED_START + 5)
    assert o.down_since == 52.0 + FAILED_START + 5
