"""fleet.uwsgi: the Emperor's stats document and requests over the uwsgi protocol."""

from __future__ import annotations

import socket
import threading

from fleet import uwsgi
from fleet.core.stats import BlacklistEntry, EmperorStats, VassalProcess
from tests.unit.conftest import http_response, sending_once

EMPEROR_DOC = {
    "version": "2.0.31",
    "pid": 10,
    "emperor": ["/c/vassals"],
    "throttle_level": 0,
    "vassals": [
        {
            "id": "/c/vassals/backend-1.ini",
            "pid": 11,
            "born": 1764090000,
            "last_mod": 1764090001,
            "loyal": 1764090002,
            "ready": 1,
            "accepting": 1,
            "respawns": 2,
            "cursed": 0,
            "zerg": 0,
        },
        {"id": "backend-2.ini", "pid": 12, "last_mod": 5, "ready": 0, "accepting": 0, "cursed": 1},
    ],
    "blacklist": [{"id": "/c/vassals/broken.ini", "reason": 0, "throttle_level": 3, "attempt": 4, "cursed": 0}],
}


def test_emperor_stats_parse_names_vassals_by_file():
    stats = EmperorStats.parse(EMPEROR_DOC)
    assert stats.vassals == {
        "backend-1": VassalProcess("backend-1", 11, 1764090001, True, True, 2, False),
        "backend-2": VassalProcess("backend-2", 12, 5, False, False, 0, True),
    }
    assert stats.blacklist == {"broken": BlacklistEntry("broken", attempts=4, throttle=3)}


def test_emperor_stats_parse_of_an_idle_emperor():
    assert EmperorStats.parse({"pid": 1}) == EmperorStats({}, {})


# ---- one request over the uwsgi protocol ------------------------------------------------------------


def get(sock, path: str = "/healthz"):
    """One request through request_many: (status, body) or the exception it met."""
    return uwsgi.request_many({"only": (sock, path)}, timeout=1.0)["only"]


def test_a_request_returns_status_and_body(fake_uwsgi):
    seen = []

    def app(env):
        seen.append(env)
        return http_response("200 OK", b'{"ok": true}')

    assert get(fake_uwsgi(app), "/healthz?deep=1") == (200, b'{"ok": true}')
    env = seen[0]
    assert env[b"REQUEST_METHOD"] == b"GET"
    assert env[b"PATH_INFO"] == b"/healthz"
    assert env[b"QUERY_STRING"] == b"deep=1"
    assert env[b"REQUEST_URI"] == b"/healthz?deep=1"


def test_a_request_with_a_non_ascii_path(fake_uwsgi):
    sock = fake_uwsgi(lambda env: http_response("200 OK", env.get(b"PATH_INFO", b"?")))
    assert get(sock, "/café") == (200, "/café".encode())


def test_a_request_to_a_socket_nobody_listens_on_is_refused(tmp_path):
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))  # bound, never listening: like a socket left by a dead vassal
    assert isinstance(get(path), ConnectionRefusedError)


def test_read_json_socket_reads_until_close(tmp_path):
    path = tmp_path / "stats.sock"
    doc = b'{"pid": 7, "workers": [{"pid": 8, "accepting": 1, "requests": 3}]}'
    with sending_once(path, doc[:10], doc[10:]):
        assert uwsgi.read_json_socket(path)["workers"][0]["requests"] == 3


# ---- request_many: the control plane's probes, all at once -----------------------------------------


def test_request_many_sends_every_request_before_it_waits_for_an_answer(fake_uwsgi):
    # Each fake answers only once all three have their request: one after the other, none would answer.
    everyone_asked = threading.Barrier(3, timeout=5)

    def app(env):
        everyone_asked.wait()
        return http_response("200 OK", env[b"PATH_INFO"])

    targets = {name: (fake_uwsgi(app), f"/{name}") for name in ("a", "b", "c")}
    assert uwsgi.request_many(targets, timeout=2) == {
        "a": (200, b"/a"),
        "b": (200, b"/b"),
        "c": (200, b"/c"),
    }


def test_request_many_reports_each_failure_as_request_would_raise_it(fake_uwsgi, tmp_path):
    never = threading.Event()

    def silent(env):
        never.wait(5)
        return b""

    targets = {
        "ok": (fake_uwsgi(lambda env: http_response("503 Service Unavailable", b"no")), "/healthz"),
        "garbage": (fake_uwsgi(lambda env: b"garbage"), "/healthz"),
        "silent": (fake_uwsgi(silent), "/healthz"),
        "missing": (tmp_path / "missing.sock", "/healthz"),
    }
    try:
        answers = uwsgi.request_many(targets, timeout=0.3)
    finally:
        never.set()
    assert answers["ok"] == (503, b"no")
    assert isinstance(answers["garbage"], ConnectionError) and "not an HTTP response" in str(answers["garbage"])
    assert isinstance(answers["silent"], TimeoutError)
    assert isinstance(answers["missing"], FileNotFoundError)


def test_request_many_of_nothing_is_nothing():
    assert uwsgi.request_many({}, timeout=0.1) == {}
