"""The admin listener: the live status page, /metrics and the JSON API, in the control plane's process.

A thread (the standard library's ThreadingHTTPServer) on its own address, never the public one: `fleet
up --admin-port N --admin-listen ADDR` (default: the public port + 1 on 127.0.0.1). Read-only: nothing
here changes the cluster. Routes:

    /                 the status page (fleet/control/static/: plain HTML, CSS and JavaScript, nothing fetched elsewhere)
    /metrics          Prometheus text format (fleet.control.metrics)
    /api/status       what `fleet status --json` prints
    /api/events       recent transitions: ?after=SEQ returns only newer ones, &wait=S waits for one
    /api/overview     everything the page shows: ?version=V&wait=S answers at once if anything changed
                      since version V, else when something does or after S seconds (long polling)
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from fleet.control.metrics import Metrics
from fleet.control.subscribers import PassReport
from fleet.layout import Layout
from fleet.published import status
from fleet.published.events import Event
from fleet.published.snapshot import Snapshot

log = logging.getLogger("fleet.control")

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
KEEP_EVENTS = 200
MAX_WAIT = 25.0


class Feed:
    """What changed, for the page: recent events with sequence numbers, and a version that moves once per
    control-plane pass that published something new. Readers may wait for the version to move."""

    def __init__(self, seed: list[Event] | None = None, keep: int = KEEP_EVENTS):
        self._changed = threading.Condition()
        self._events: deque[tuple[int, Event]] = deque(maxlen=keep)
        self.seq = 0
        self.version = 1
        self._pending = False
        self._last: Snapshot | None = None
        self.closed = False
        for event in (seed or [])[-keep:]:
            self._append(event)

    def _append(self, event: Event) -> None:
        self.seq += 1
        self._events.append((self.seq, event))

    def on_event(self, event: Event) -> None:
        """A subscriber of the bus. Readers are woken after the pass publishes, not before: the page then
        shows the event and the state it led to together."""
        with self._changed:
            self._append(event)
            self._pending = True

    def on_pass(self, report: PassReport) -> None:
        with self._changed:
            if report.snapshot is not self._last or self._pending:
                self._last, self._pending = report.snapshot, False
                self.version += 1
                self._changed.notify_all()

    def events(self, after: int = 0) -> list[tuple[int, Event]]:
        with self._changed:
            return [(seq, e) for seq, e in self._events if seq > after]

    def wait(self, until: Callable[[], bool], timeout: float) -> None:
        """Until `until()` (checked at each change) or `timeout` s or close()."""
        with self._changed:
            self._changed.wait_for(lambda: self.closed or until(), timeout)

    def close(self) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()


def event_doc(seq: int, e: Event) -> dict:
    return {"seq": seq, **e.to_dict()}


def overview(layout: Layout, snap: Snapshot, metrics: Metrics, feed: Feed) -> dict:
    """Everything the status page shows, in one document."""
    version = feed.version  # read first: a change made while this is built moves it again
    backends = []
    for row in status.rows_of(snap, layout):
        b, usage = snap.backend(row.name), metrics.usage(row.name)
        backends.append(
            {
                **asdict(row),
                "since": b.since if b else None,
                "busy": usage.busy if usage else 0,
                "idle": usage.idle if usage else 0,
                "rps": usage.rps if usage else 0.0,
                "exceptions": usage.exceptions if usage else 0,
                "reloads": metrics.reloads(row.name),
                "respawns": metrics.respawns(row.name),
            }
        )
    connections, answers = metrics.nginx_view()
    c = metrics.counters
    return {
        "version": version,
        "now": time.time(),
        "root": str(layout.root),
        "control_pid": snap.control_pid,
        "parts": metrics.parts(),
        "routed": list(snap.routed),
        "routing_error": snap.routing_error,
        "counters": {
            "passes": c.passes,
            "last_pass_ms": round(c.last_pass_ms, 2),
            "routing_changes": c.routing_changes,
            "nginx_reloads": c.nginx_reloads,
            "routing_errors": c.routing_errors,
        },
        "nginx": {"connections": connections.__dict__ if connections else None, "answers": answers},
        "backends": backends,
        "events": [event_doc(seq, e) for seq, e in feed.events()[-100:]],
    }


class AdminServer:
    """The admin listener as a daemon thread; `start()` raises OSError if the address cannot be had."""

    def __init__(
        self,
        layout: Layout,
        metrics: Metrics,
        feed: Feed,
        snapshot: Callable[[], Snapshot],
        listen: str = "127.0.0.1",
        port: int = 0,
    ):
        self.layout, self.metrics, self.feed, self.snapshot = layout, metrics, feed, snapshot
        self.listen, self.port = listen, port
        self.httpd: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self.asked_at = float("-inf")  # when it last got a request (time.monotonic, the control plane's clock)

    @property
    def url(self) -> str:
        host = f"[{self.listen}]" if ":" in self.listen else self.listen
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        server_class = _V6Server if ":" in self.listen else _Server
        self.httpd = server_class((self.listen, self.port), _handler(self))
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self._serve, args=(self.httpd,), name="fleet-admin", daemon=True)
        self.thread.start()

    def _serve(self, httpd: ThreadingHTTPServer) -> None:
        """Accept until stop(): blocked in accept, not polling (serve_forever would wake twice a second)."""
        while not self.stopping.is_set():
            httpd.handle_request()

    def stop(self) -> None:
        self.feed.close()  # release long polls
        if self.httpd is None:
            return
        self.stopping.set()
        here = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.listen, self.listen)
        try:  # wake the accept loop so that it sees the flag
            socket.create_connection((here, self.port), timeout=1).close()
        except OSError:
            pass
        if self.thread is not None:
            self.thread.join(5)
        self.httpd.server_close()
        self.httpd = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    timeout = None  # handle_request() waits for a connection as long as it takes


class _V6Server(_Server):
    address_family = socket.AF_INET6


def _number(query: dict[str, list[str]], key: str, default: float) -> float:
    try:
        return float(query[key][0])
    except (KeyError, IndexError, ValueError):
        return default


def _handler(admin: AdminServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "fleet-admin"
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            admin.asked_at = time.monotonic()  # someone watches: the control plane reads the usage each second
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            try:
                if url.path in PAGES:
                    name, kind = PAGES[url.path]
                    self._send(200, (STATIC / name).read_bytes(), kind)
                elif url.path == "/metrics":
                    self._send(200, admin.metrics.scrape(), "text/plain; version=0.0.4; charset=utf-8")
                elif url.path == "/api/status":
                    self._status()
                elif url.path == "/api/events":
                    self._events(int(_number(query, "after", 0)), min(_number(query, "wait", 0), MAX_WAIT))
                elif url.path == "/api/overview":
                    self._overview(int(_number(query, "version", 0)), min(_number(query, "wait", 0), MAX_WAIT))
                else:
                    self._json(404, {"error": "not found", "see": "/ (the status page), /metrics, /api/status"})
            except (BrokenPipeError, ConnectionResetError):
                pass
            except Exception:  # a bug here must not go unseen, nor take the control plane down
                log.exception("admin: GET %s failed", self.path)
                self._json(500, {"error": "internal error; see the control plane's log"})

        def _status(self) -> None:
            from fleet.published.parts import statuses

            snap = admin.snapshot()
            table = status.rows_of(snap, admin.layout)
            body = status.render_json(table, statuses(admin.layout), deploy=snap.deploy)
            self._send(200, body.encode(), "application/json")

        def _events(self, after: int, wait: float) -> None:
            feed = admin.feed
            if wait > 0:
                feed.wait(lambda: feed.seq > after, wait)
            found = feed.events(after)
            self._json(200, {"events": [event_doc(s, e) for s, e in found], "last": feed.seq})

        def _overview(self, version: int, wait: float) -> None:
            feed = admin.feed
            if wait > 0:
                feed.wait(lambda: feed.version != version, wait)
            self._json(200, overview(admin.layout, admin.snapshot(), admin.metrics, feed))

        def _json(self, code: int, doc: object) -> None:
            self._send(code, (json.dumps(doc) + "\n").encode(), "application/json")

        def _send(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            # The page loads nothing but its own files, and no other site may frame it.
            self.send_header("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (the standard library's name)
            log.debug("admin: " + format, *args)

    return Handler
