"""fleet.upstreams: the upstream list nginx includes, rendered from the routed vassals."""

from __future__ import annotations

from pathlib import Path

from fleet import upstreams

SOCKETS = Path("/c/run/sockets")


def sockets(*names: str) -> dict[str, Path]:
    return {name: SOCKETS / f"{name}.sock" for name in names}


def test_render_is_sorted_and_independent_of_dict_order():
    forward = upstreams.render(sockets("b", "a", "c"), SOCKETS)
    backward = upstreams.render(sockets("c", "a", "b"), SOCKETS)
    assert forward == backward
    assert upstreams.routed_names(forward) == ["a", "b", "c"]


def test_render_lists_one_server_per_backend():
    content = upstreams.render(sockets("backend-1", "backend-2"), SOCKETS)
    assert content.startswith(upstreams.HEADER)
    assert content.splitlines()[1:] == [
        "least_conn;",
        "server unix:/c/run/sockets/backend-1.sock max_fails=1 fail_timeout=2s;  # backend-1",
        "server unix:/c/run/sockets/backend-2.sock max_fails=1 fail_timeout=2s;  # backend-2",
    ]


def test_no_backend_renders_a_single_down_server():
    content = upstreams.render({}, SOCKETS)
    servers = [line for line in content.splitlines() if line.startswith("server ")]
    assert servers == [f"server unix:{SOCKETS / upstreams.NO_BACKEND_SOCKET} down;"]
    assert upstreams.routed_names(content) == []


def test_routed_names_round_trip():
    for names in [(), ("only",), ("x", "a-1", "b_2", "0")]:
        assert upstreams.routed_names(upstreams.render(sockets(*names), SOCKETS)) == sorted(names)


def test_routed_names_ignores_comments_and_other_lines():
    content = "# header # with hashes\n\nserver unix:/s.sock down;\nserver unix:/a.sock;  # a\n"
    assert upstreams.routed_names(content) == ["a"]
