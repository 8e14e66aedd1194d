"""A backend's states and the moves allowed between them (pure: the standard library only).

This module imports nothing of fleet and does no I/O, so that the state machine can be read in one
page and tested without uWSGI or nginx. `None` stands for "not known to the control plane": a new
file enters from it, a removed backend leaves to it.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    STARTING = "starting"  # its file is there; waiting for its first good health probe
    HEALTHY = "healthy"  # answers probes; routed (new ones join nginx with their batch)
    RELOADING = "reloading"  # its file changed: out of nginx (if a peer serves), drained, reloaded
    EJECTED = "ejected"  # was healthy, stopped answering probes: out of nginx until it answers again
    FAILED = "failed"  # bad file, crash loop or timeout: never routed, retried when its file changes
    DRAINING = "draining"  # `fleet rm` asked: out of nginx, finishing its requests, file still there
    REMOVING = "removing"  # its file is gone: out of nginx, drained, then the Emperor stops it


S = State
# Every allowed move. Anything else is a bug in the reconciler and is refused by `check_transition`.
TRANSITIONS: dict[State | None, frozenset[State | None]] = {
    None: frozenset({S.STARTING, S.HEALTHY, S.FAILED}),
    S.STARTING: frozenset({S.HEALTHY, S.FAILED, S.DRAINING, S.REMOVING}),
    S.HEALTHY: frozenset({S.RELOADING, S.EJECTED, S.FAILED, S.DRAINING, S.REMOVING}),
    S.RELOADING: frozenset({S.HEALTHY, S.RELOADING, S.FAILED, S.DRAINING, S.REMOVING}),
    S.EJECTED: frozenset({S.HEALTHY, S.STARTING, S.FAILED, S.DRAINING, S.REMOVING}),
    S.FAILED: frozenset({S.STARTING, S.HEALTHY, S.DRAINING, S.REMOVING}),
    S.DRAINING: frozenset({S.STARTING, S.FAILED, S.REMOVING}),
    S.REMOVING: frozenset({S.STARTING, S.FAILED, None}),
}

# States whose backend may be in nginx (core/routing.py), the others are taken out at once.
ROUTABLE = frozenset({S.HEALTHY, S.RELOADING})
# States in which the control plane looks again soon instead of at the idle tick.
IN_FLIGHT = frozenset({S.STARTING, S.RELOADING, S.EJECTED, S.DRAINING, S.REMOVING})


class IllegalTransition(Exception):
    """The reconciler tried a move the table does not allow."""


def check_transition(name: str, old: State | None, new: State | None) -> None:
    """Refuse a move that is not in TRANSITIONS."""
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"{name}: {old} -> {new} is not an allowed transition")
