"""fleet.proxy.upstreams: the slots nginx's upstream is made of, and how backends are spread over them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from fleet.proxy import upstreams

SLOTS = Path("/c/run/nginx/slots")
SOCKETS = Path("/c/run/sockets")


def test_nothing_routed_renders_a_single_down_server():
    content = upstreams.render(0, SLOTS, SOCKETS)
    servers = [line for line in content.splitlines() if line.startswith("server ")]
    assert servers == [f"server unix:{SOCKETS / upstreams.NO_BACKEND_SOCKET} down;"]
    assert upstreams.rendered_slots(content) == 0


def test_slots_render_one_server_each_never_marked_failed_by_nginx():
    content = upstreams.render(32, SLOTS, SOCKETS)
    assert content.startswith(upstreams.HEADER)
    lines = content.splitlines()[1:]
    assert lines[0] == "least_conn;"
    assert lines[1] == "server unix:/c/run/nginx/slots/slot-0000.sock max_fails=0;"
    assert lines[-1] == "server unix:/c/run/nginx/slots/slot-0031.sock max_fails=0;"
    assert upstreams.rendered_slots(content) == 32


@pytest.mark.parametrize(("backends", "slots"), [(0, 0), (1, 64), (4, 64), (8, 64), (9, 128), (50, 512)])
def test_slot_count_gives_each_backend_at_least_eight_slots(backends, slots):
    assert upstreams.slot_count(backends) == slots


def test_slot_count_never_shrinks_while_something_is_routed():
    assert upstreams.slot_count(2, current=128) == 128
    assert upstreams.slot_count(0, current=128) == 0


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7, 16, 50])
def test_assign_spreads_backends_within_one_slot_of_each_other(count):
    names = {f"b{i}" for i in range(count)}
    slots = upstreams.slot_count(count)
    shares = Counter(upstreams.assign(names, slots))
    assert set(shares) == names
    assert max(shares.values()) - min(shares.values()) <= 1
    assert min(shares.values()) >= upstreams.SLOTS_PER_BACKEND


def test_assign_is_deterministic_and_sorted():
    assert upstreams.assign({"b", "a"}, 4) == ["a", "b", "a", "b"]
    assert upstreams.assign(set(), 4) == []
