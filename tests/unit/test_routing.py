"""fleet.core.routing: the routing policy (`wanted_routes`): who leaves nginx at once, who joins, and in what batch.

Ported from the tests of the old fleet.control policy: its "ejected" backend (STARTING with an error) is
State.EJECTED now, and one call gives both the removals and the additions (no `adding` flag).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from fleet.core.model import Backend
from fleet.core.routing import wanted_routes
from fleet.core.states import State

S = State
WINDOW = 3.0
T0 = 100.0


def given(routed: set[str], **states: State) -> tuple[frozenset[str], dict[str, Backend]]:
    """nginx's routes, and backends in the given states (unrouted healthy ones became ready at T0)."""
    backends = {
        name: Backend(
            name,
            state,
            since=T0,
            mtime_ns=1,
            ready_at=T0 if state == S.HEALTHY and name not in routed else None,
        )
        for name, state in states.items()
    }
    return frozenset(routed), backends


def routes(routed: frozenset[str], backends: dict[str, Backend], now: float = T0) -> set[str]:
    return set(wanted_routes(routed, backends, now, WINDOW))


LEAVING = [S.STARTING, S.EJECTED, S.FAILED, S.DRAINING, S.REMOVING]


@pytest.mark.parametrize("leaving", LEAVING)
def test_starting_ejected_failed_draining_and_removing_backends_leave_at_once(leaving):
    assert routes(*given({"a", "b"}, a=S.HEALTHY, b=leaving)) == {"a"}


@pytest.mark.parametrize("leaving", LEAVING)
def test_a_leaving_backend_leaves_even_while_another_joins(leaving):
    # The old policy had separate removing and adding calls; now one call does both (after the batch
    # window, as a leaving STARTING backend would otherwise hold the batch).
    routed, backends = given({"a", "b"}, a=S.HEALTHY, b=leaving, c=S.HEALTHY)
    assert routes(routed, backends, T0 + WINDOW) == {"a", "c"}


@pytest.mark.parametrize("leaving", LEAVING)
def test_the_last_backend_leaves_even_if_nothing_remains(leaving):
    assert routes(*given({"a"}, a=leaving)) == set()


def test_a_routed_name_without_a_backend_leaves():
    assert routes(*given({"a", "gone"}, a=S.HEALTHY)) == {"a"}


def test_routed_healthy_backends_stay_as_they_are():
    # What a restarted control plane adopts (already routed and answering) stays routed: no 503 window.
    assert routes(*given({"a", "b"}, a=S.HEALTHY, b=S.HEALTHY)) == {"a", "b"}


def test_a_reloading_backend_leaves_when_another_takes_its_traffic():
    assert routes(*given({"a", "b"}, a=S.RELOADING, b=S.HEALTHY)) == {"b"}


def test_a_single_reloading_backend_keeps_its_traffic():
    assert routes(*given({"a"}, a=S.RELOADING)) == {"a"}


@pytest.mark.parametrize("leaving", LEAVING)
def test_a_reloading_backend_keeps_its_traffic_when_its_peer_is_leaving(leaving):
    assert routes(*given({"a", "b"}, a=S.RELOADING, b=leaving)) == {"a"}


def test_a_reloading_backend_is_not_a_peer_for_another():
    assert routes(*given({"a", "b"}, a=S.RELOADING, b=S.RELOADING)) == {"a", "b"}


def test_an_unrouted_healthy_backend_is_not_a_peer_for_a_reloading_one_until_it_is_routed():
    # It joins in this change; the reloading one leaves in the next.
    routed, backends = given({"a"}, a=S.RELOADING, b=S.HEALTHY)
    assert routes(routed, backends) == {"a", "b"}
    assert routes(frozenset({"a", "b"}), backends) == {"b"}


def test_an_unrouted_reloading_backend_is_not_added():
    assert routes(*given({"a"}, a=S.HEALTHY, b=S.RELOADING)) == {"a"}


@pytest.mark.parametrize("state", LEAVING)
def test_an_unrouted_backend_that_is_not_healthy_is_never_added(state):
    assert routes(*given(set(), a=state)) == set()


def test_a_removal_is_not_held_back_by_a_batch_that_is_still_waiting():
    # Was "removing never adds": removals apply at once, the ready backend still waits for its batch.
    assert routes(*given({"a", "b"}, a=S.HEALTHY, b=S.FAILED, c=S.HEALTHY, d=S.STARTING)) == {"a"}


def test_with_nothing_routed_a_ready_backend_is_added_at_once():
    assert routes(*given(set(), a=S.HEALTHY, b=S.STARTING, c=S.STARTING)) == {"a"}


def test_a_ready_backend_is_added_at_once_when_nothing_else_is_starting():
    assert routes(*given({"a"}, a=S.HEALTHY, b=S.HEALTHY, c=S.FAILED)) == {"a", "b"}


def test_new_backends_wait_for_their_batch_up_to_the_window():
    routed, backends = given({"a"}, a=S.HEALTHY, b=S.HEALTHY, c=S.STARTING)
    assert routes(routed, backends, T0) == {"a"}
    assert routes(routed, backends, T0 + WINDOW - 0.01) == {"a"}
    assert routes(routed, backends, T0 + WINDOW) == {"a", "b"}


def test_the_batch_goes_in_as_one_when_the_last_one_is_ready():
    routed, backends = given({"a"}, a=S.HEALTHY, b=S.HEALTHY, c=S.STARTING)
    assert routes(routed, backends, T0 + 1) == {"a"}
    backends["c"] = replace(backends["c"], state=S.HEALTHY, ready_at=T0 + 1)
    assert routes(routed, backends, T0 + 1) == {"a", "b", "c"}


def test_the_window_counts_from_the_oldest_ready_backend():
    routed, backends = given({"a"}, a=S.HEALTHY, b=S.HEALTHY, c=S.HEALTHY, d=S.STARTING)
    backends["c"] = replace(backends["c"], ready_at=T0 + 2.5)
    assert routes(routed, backends, T0 + 2.9) == {"a"}
    assert routes(routed, backends, T0 + WINDOW) == {"a", "b", "c"}


def test_a_ready_backend_without_a_ready_time_counts_as_ready_now():
    routed, backends = given({"a"}, a=S.HEALTHY, b=S.HEALTHY, c=S.STARTING)
    backends["b"] = replace(backends["b"], ready_at=None)
    assert routes(routed, backends, T0 + 100) == {"a"}


@pytest.mark.parametrize("state", [S.EJECTED, S.FAILED, S.DRAINING, S.REMOVING, S.RELOADING])
def test_only_a_starting_backend_holds_the_batch(state):
    # The old policy's "a starting backend with an error" is EJECTED now: it may never come back.
    assert routes(*given({"a"}, a=S.HEALTHY, b=S.HEALTHY, c=state)) == {"a", "b"}
