"""The shared harness: its load generator records every request (status, error kind, latency, keep-alive or
a new connection, method) against a tiny local HTTP server; its deadline wait fails saying what it waited
for; and tests, bench and soak import it rather than each other."""

from __future__ import annotations

import ast
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.load import Kind, Load, describe
from harness.ports import free_port
from harness.wait import WaitTimeout, wait_for

REPO = Path(__file__).resolve().parents[2]


class Handler(BaseHTTPRequestHandler):
    """GET / answers JSON naming a backend, GET /fail a 502, POST /upload counts the body's bytes."""

    protocol_version = "HTTP/1.1"  # keep-alive unless the client asks to close
    peers: list[int] = []  # the client port of every request: one per connection

    def _answer(self, status: int, doc: dict | str) -> None:
        body = (json.dumps(doc) if isinstance(doc, dict) else doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if isinstance(doc, dict) else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        if self.headers.get("Connection", "").lower() == "close":
            self.send_header("Connection", "close")  # as nginx does: the client must not reuse it
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.peers.append(self.client_address[1])
        if self.path == "/fail":
            self._answer(502, "bad gateway")
        else:
            self._answer(200, {"backend": "local", "pid": 7, "loaded_at": 1.5})

    def do_POST(self) -> None:
        self.peers.append(self.client_address[1])
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(200, {"backend": "local", "bytes": len(body)})

    def log_message(self, *args) -> None:
        pass  # quiet


@pytest.fixture
def server() -> Iterator[str]:
    Handler.peers = []
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def run(load: Load, count: int) -> list:
    """Start `load`, wait until it has recorded `count` requests (its bound), stop it: the records."""
    with load:
        wait_for(f"{count} requests recorded", lambda: len(load.records) >= count, 10)
    return load.stop()


@pytest.mark.parametrize("raw", [False, True], ids=["requests", "raw"])
@pytest.mark.parametrize("keepalive", [False, True], ids=["new-connection", "keep-alive"])
def test_every_answered_request_is_recorded_with_status_latency_method_and_connection_kind(server, raw, keepalive):
    records = run(Load(server, clients=1, keepalive=keepalive, raw=raw, max_requests=20), 20)
    assert len(records) == 20
    for r in records:
        assert (r.ok, r.status, r.error, r.method, r.keepalive) == (True, 200, "", "GET", keepalive)
        assert (r.backend, r.pid, r.loaded_at) == ("local", 7, 1.5)
        assert 0 < r.latency < 10 and r.start >= 0 and r.end == r.start + r.latency
    assert [r.start for r in records] == sorted(r.start for r in records)
    connections = len(set(Handler.peers))
    if keepalive:
        assert connections == 1, Handler.peers
    else:
        assert connections == len(Handler.peers) == 20


@pytest.mark.parametrize("raw", [False, True], ids=["requests", "raw"])
def test_an_error_status_is_a_failure_with_its_kind_and_body(server, raw):
    load = Load(server, clients=1, path="/fail", raw=raw, max_requests=3)
    records = run(load, 3)
    assert {(r.ok, r.status, r.error) for r in records} == {(False, 502, "http_502")}
    assert load.result.failures == ["HTTP 502: bad gateway"] * 3
    assert load.result.ok == 0 and describe(records)["failures"] == {"http_502": 3}


@pytest.mark.parametrize(
    ("raw", "keepalive", "kind"),
    [(False, False, "refused"), (False, True, "refused"), (True, False, "refused"), (True, True, "connect")],
)
def test_a_refused_connection_is_a_failure_of_its_kind_without_status(raw, keepalive, kind):
    nobody = f"http://127.0.0.1:{free_port()}"  # free a moment ago: nothing listens there
    records = run(Load(nobody, clients=1, keepalive=keepalive, raw=raw, max_requests=3), 3)
    assert {(r.ok, r.status, r.error, r.keepalive) for r in records} == {(False, None, kind, keepalive)}


def test_posts_are_recorded_as_posts_and_must_count_the_body(server):
    mix = {Kind("POST", keepalive=True, path="/upload", body=b"x" * 100): 1, Kind("GET"): 1}
    load = Load(server, mix=mix, max_requests=20)
    records = run(load, 20)
    assert {r.method for r in records} == {"GET", "POST"}
    assert all(r.ok for r in records), load.summary()
    assert {r.client for r in records} == {"POST keep-alive", "GET new-connection"}
    assert load.result.backends == {"local": len(records)} and len(load.result.latencies) == len(records)


def test_wait_requests_waits_for_more_successes_and_answered_lists_them_in_answer_order(server):
    with Load(server, clients=2) as load:
        load.wait_requests(10)
        assert load.ok >= 10
    assert load.result.ok >= 10 and load.result.failures == []
    answered = load.answered()
    assert len(answered) == load.result.ok and [r.end for r in answered] == sorted(r.end for r in answered)
    middle = load.t0 + answered[len(answered) // 2].end
    assert load.answered(middle) == [r for r in answered if load.t0 + r.end >= middle]


def test_wait_for_returns_the_probe_value_and_fails_saying_what_and_details():
    assert wait_for("a value", lambda: 42, 1) == 42
    calls = []

    def flaky() -> bool:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("not yet")
        return True

    assert wait_for("the socket", flaky, 5, 0.001, ignore=(OSError,)) is True
    with pytest.raises(WaitTimeout, match=r"waiting for: nothing\nthe logs"):
        wait_for("nothing", lambda: None, 0.05, 0.01, details=lambda: "the logs")


def imports(folder: str) -> set[str]:
    """The top-level packages the Python files under `folder` import."""
    found = set()
    for path in (REPO / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_tests_bench_and_soak_share_the_harness_and_not_each_other():
    assert not {"bench", "soak"} & imports("tests")
    assert "bench" not in imports("soak")
    assert not {"bench", "soak", "tests"} & imports("harness")
    assert "harness" not in imports("fleet")
    assert {"harness"} <= imports("tests") & imports("bench") & imports("soak")
