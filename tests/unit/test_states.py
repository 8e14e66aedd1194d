"""fleet.core.states: the transition table, and `check_transition` accepting exactly the moves in it."""

from __future__ import annotations

import pytest

from fleet.core.states import IN_FLIGHT, ROUTABLE, TRANSITIONS, IllegalTransition, State, check_transition

S = State
EVERY = [
    None,
    *State,
]  # None: not known to the control plane (a new file enters from it, a removed backend leaves to it)

ALLOWED = [(old, new) for old, targets in TRANSITIONS.items() for new in targets]
REFUSED = [(old, new) for old in EVERY for new in EVERY if new not in TRANSITIONS[old]]


def ident(pair: tuple[State | None, State | None]) -> str:
    old, new = pair
    return f"{old or 'unknown'}->{new or 'unknown'}"


def test_the_table_has_a_row_for_every_state_and_for_unknown():
    assert set(TRANSITIONS) == set(EVERY)


def test_the_table_names_only_states():
    for targets in TRANSITIONS.values():
        assert targets <= set(EVERY)


def test_allowed_and_refused_cover_every_pair_once():
    assert len(ALLOWED) + len(REFUSED) == len(EVERY) ** 2
    assert not set(ALLOWED) & set(REFUSED)


@pytest.mark.parametrize("old, new", ALLOWED, ids=[ident(p) for p in ALLOWED])
def test_an_allowed_transition_is_accepted(old, new):
    check_transition("a", old, new)  # no exception


@pytest.mark.parametrize("old, new", REFUSED, ids=[ident(p) for p in REFUSED])
def test_a_transition_not_in_the_table_is_refused(old, new):
    with pytest.raises(IllegalTransition):
        check_transition("a", old, new)


def test_the_refusal_names_the_backend_and_both_states():
    with pytest.raises(IllegalTransition, match=r"backend-7: failed -> reloading"):
        check_transition("backend-7", S.FAILED, S.RELOADING)


def test_a_backend_is_forgotten_only_from_removing():
    assert [old for old in EVERY if None in TRANSITIONS[old]] == [S.REMOVING]


def test_a_new_file_enters_starting_failed_or_adopted_healthy():
    assert TRANSITIONS[None] == {S.STARTING, S.HEALTHY, S.FAILED}


def test_only_reloading_may_move_to_itself():
    assert [s for s in State if s in TRANSITIONS[s]] == [S.RELOADING]


def test_every_state_can_be_left_for_removing_or_forgotten():
    # A deleted file must always be able to leave, whatever its backend was doing.
    for state in State:
        assert S.REMOVING in TRANSITIONS[state] or None in TRANSITIONS[state]


def test_only_healthy_and_reloading_backends_may_stay_in_nginx():
    assert set(ROUTABLE) == {S.HEALTHY, S.RELOADING}


def test_settled_states_are_not_in_flight():
    assert set(IN_FLIGHT) == set(State) - {S.HEALTHY, S.FAILED}
