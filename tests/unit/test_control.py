"""fleet.control: the routing policy (`_wanted_routes`), with no nginx and no Emperor."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet import uwsgi
from fleet.backends import DRAINING, FAILED, HEALTHY, RELOADING, STARTING, Backend
from fleet.control import ControlPlane, Settings
from fleet.errors import MissingTool
from fleet.layout import Layout

WINDOW = 3.0


class Clock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def plane(tmp_path: Path) -> ControlPlane:
    """A control plane over an empty cluster; its __init__ runs `uwsgi --help` once (cached)."""
    try:
        uwsgi.binary()
    except MissingTool as e:
        pytest.skip(str(e))
    (tmp_path / "emperor.ini").write_text("[uwsgi]\n")
    return ControlPlane(Layout(tmp_path), Settings(batch_window=WINDOW), clock=Clock())


def given(plane: ControlPlane, routed: set[str], **states: str) -> None:
    """Backends in the given states (unrouted healthy ones became ready at 100.0), and nginx's routes."""
    plane.backends = {
        name: Backend(
            name,
            state,
            mtime_ns=1,
            since=100.0,
            routed=name in routed,
            ready_at=100.0 if state == HEALTHY and name not in routed else None,
        )
        for name, state in states.items()
    }
    plane.routed_now = set(routed)


def test_starts_with_what_nginx_routes(tmp_path):
    try:
        uwsgi.binary()
    except MissingTool as e:
        pytest.skip(str(e))
    (tmp_path / "emperor.ini").write_text("[uwsgi]\n")
    conf = tmp_path / "run" / "nginx" / "upstreams.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("server unix:/s/a.sock;  # a\nserver unix:/s/b.sock;  # b\n")
    assert ControlPlane(Layout(tmp_path)).routed_now == {"a", "b"}


@pytest.mark.parametrize("leaving", [DRAINING, FAILED, STARTING])
@pytest.mark.parametrize("adding", [False, True])
def test_draining_failed_and_starting_backends_leave_at_once(plane, leaving, adding):
    given(plane, {"a", "b"}, a=HEALTHY, b=leaving)
    assert plane._wanted_routes(100.0, adding) == {"a"}


@pytest.mark.parametrize("leaving", [DRAINING, FAILED, STARTING])
def test_the_last_backend_leaves_even_if_nothing_remains(plane, leaving):
    given(plane, {"a"}, a=leaving)
    assert plane._wanted_routes(100.0, adding=False) == set()


def test_a_routed_name_without_a_backend_leaves(plane):
    given(plane, {"a", "gone"}, a=HEALTHY)
    assert plane._wanted_routes(100.0, adding=False) == {"a"}


def test_a_reloading_backend_leaves_when_another_takes_its_traffic(plane):
    given(plane, {"a", "b"}, a=RELOADING, b=HEALTHY)
    assert plane._wanted_routes(100.0, adding=False) == {"b"}


def test_a_single_reloading_backend_keeps_its_traffic(plane):
    given(plane, {"a"}, a=RELOADING)
    assert plane._wanted_routes(100.0, adding=False) == {"a"}


def test_a_reloading_backend_keeps_its_traffic_when_its_peer_is_leaving(plane):
    given(plane, {"a", "b"}, a=RELOADING, b=DRAINING)
    assert plane._wanted_routes(100.0, adding=False) == {"a"}


def test_a_reloading_backend_is_not_a_peer_for_another(plane):
    given(plane, {"a", "b"}, a=RELOADING, b=RELOADING)
    assert plane._wanted_routes(100.0, adding=False) == {"a", "b"}


def test_an_unrouted_reloading_backend_is_not_added(plane):
    given(plane, {"a"}, a=HEALTHY, b=RELOADING)
    assert plane._wanted_routes(100.0, adding=True) == {"a"}


def test_removing_never_adds(plane):
    given(plane, {"a"}, a=HEALTHY, b=HEALTHY)
    assert plane._wanted_routes(100.0, adding=False) == {"a"}


def test_with_nothing_routed_a_ready_backend_is_added_at_once(plane):
    given(plane, set(), a=HEALTHY, b=STARTING, c=STARTING)
    assert plane._wanted_routes(100.0, adding=True) == {"a"}


def test_a_ready_backend_is_added_at_once_when_nothing_else_is_starting(plane):
    given(plane, {"a"}, a=HEALTHY, b=HEALTHY, c=FAILED)
    assert plane._wanted_routes(100.0, adding=True) == {"a", "b"}


def test_new_backends_wait_for_their_batch_up_to_the_window(plane):
    given(plane, {"a"}, a=HEALTHY, b=HEALTHY, c=STARTING)
    assert plane._wanted_routes(plane.clock(), adding=True) == {"a"}
    plane.clock.now += WINDOW - 0.01
    assert plane._wanted_routes(plane.clock(), adding=True) == {"a"}
    plane.clock.now += 0.01
    assert plane._wanted_routes(plane.clock(), adding=True) == {"a", "b"}


def test_the_batch_goes_in_as_one_when_the_last_one_is_ready(plane):
    given(plane, {"a"}, a=HEALTHY, b=HEALTHY, c=STARTING)
    assert plane._wanted_routes(101.0, adding=True) == {"a"}
    plane.backends["c"].state = HEALTHY
    plane.backends["c"].ready_at = 101.0
    assert plane._wanted_routes(101.0, adding=True) == {"a", "b", "c"}


def test_the_window_counts_from_the_oldest_ready_backend(plane):
    given(plane, {"a"}, a=HEALTHY, b=HEALTHY, c=HEALTHY, d=STARTING)
    plane.backends["c"].ready_at = 102.5
    assert plane._wanted_routes(102.9, adding=True) == {"a"}
    assert plane._wanted_routes(103.0, adding=True) == {"a", "b", "c"}


def test_a_starting_backend_with_an_error_does_not_hold_the_batch(plane):
    # Ejected after failed probes: it is STARTING again, but may never come back.
    given(plane, {"a"}, a=HEALTHY, b=HEALTHY, c=STARTING)
    plane.backends["c"].error = "stopped answering health probes"
    assert plane._wanted_routes(100.0, adding=True) == {"a", "b"}
