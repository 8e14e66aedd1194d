"""The one load generator: client threads sending requests until stopped, every request recorded.

Each client thread is of one `Kind`: a method (GET, or POST with a body, which nginx never retries once
sent), a path, and either one keep-alive connection (as browsers and load balancers keep) or a new
connection per request. Requests go through `requests` (tests, soak) or, with `raw`, through the
raw-socket clients of harness.http, which cost the client less and count failures as wrk does (bench).

Every request becomes a `Request` (start, latency, method, keep-alive or not, status, error kind, detail,
answering backend); the summaries are views of those: `result` (what the tests assert on), `describe`
and `window` (bench), and the records themselves (soak's report).
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

from harness import http
from harness.wait import wait_for


@dataclass(frozen=True)
class Kind:
    """What one client thread sends."""

    method: str = "GET"
    keepalive: bool = False
    path: str = "/"
    body: bytes | None = None  # a POST's body: its answer must count the same number of bytes

    @property
    def name(self) -> str:
        return f"{self.method} {'keep-alive' if self.keepalive else 'new-connection'}"


@dataclass(frozen=True, slots=True)
class Request:
    """One request sent, answered or not."""

    start: float  # seconds since the generator started (or since the `t0` it was given)
    latency: float  # seconds
    method: str
    keepalive: bool
    status: int | None  # None: no answer
    error: str = ""  # "" when answered as expected; else "http_<status>", "bad_answer", or how it failed:
    # requests: "refused", "reset", "closed_by_server", "broken_pipe", "timeout" or an exception's name;
    # raw new connection: "refused", "reset", "timeout" or an exception's name; raw keep-alive: wrk's
    # "connect", "read", "write", "timeout"
    detail: str = ""  # a failure's answer body, or its exception's message
    exception: str = ""  # the name of the exception it failed with, if any
    backend: str | None = None
    loaded_at: float | None = None  # the app's import time: changes on every reload
    pid: int | None = None  # the worker that answered

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def outcome(self) -> str:
        return self.error or "ok"

    @property
    def end(self) -> float:
        return self.start + self.latency

    @property
    def client(self) -> str:
        return Kind(self.method, self.keepalive).name

    def failure(self) -> str:
        """A failure in one line: "HTTP 502: <body>", "<Exception>: <message>", or "<kind>: <detail>"."""
        if self.status is not None and self.status != 200:
            return f"HTTP {self.status}: {self.detail[:80]}"
        if self.error == "client_crashed":
            return f"client thread crashed: {self.exception}: {self.detail}"
        if self.exception:
            return f"{self.exception}: {self.detail[:80]}"
        return f"{self.error}: {self.detail[:80]}"


@dataclass
class LoadResult:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    backends: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        return (
            f"{self.ok} ok, {len(self.failures)} failed, p50 {lat[len(lat) // 2] * 1000:.1f} ms, "
            f"p99 {p99 * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms; by backend {self.backends}; "
            f"first failures: {self.failures[:5]}"
        )


def classify(e: requests.RequestException) -> str:
    """A failed request's cause in a word, from the exception requests raised."""
    text = repr(e)
    if isinstance(e, requests.Timeout):
        return "timeout"
    for needle, cause in (
        ("RemoteDisconnected", "closed_by_server"),
        ("reset by peer", "reset"),
        ("ConnectionResetError", "reset"),
        ("BrokenPipe", "broken_pipe"),
        ("refused", "refused"),
    ):
        if needle in text:
            return cause
    return type(e).__name__


def classify_raw(exc: BaseException) -> str:
    """A raw new-connection request's failure in a word."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timeout"
    return type(exc).__name__


class Load:
    """Client threads against `url`: `clients` threads of one kind (GET `path`, or POST `post` to it; one
    keep-alive connection each with `keepalive`, else a new connection per request), or the threads of
    `mix` ({Kind: how many}). Runs from `start()` (or `with`) until `stop()`, and stops by itself after
    `max_seconds` or `max_requests`, whichever comes first.

    `raw` sends through harness.http (GET only), `timeout` bounds each request, `pause_after_failure`
    keeps a client from spinning on refused connections, and `t0` (time.monotonic()) puts the records on
    the caller's clock. `verify`: for an https:// url, the CA file to trust.
    """

    def __init__(
        self,
        url: str,
        clients: int = 8,
        path: str = "/",
        max_seconds: float = 120.0,
        keepalive: bool = False,
        post: bytes | None = None,
        *,
        mix: dict[Kind, int] | None = None,
        raw: bool = False,
        timeout: float = 10.0,
        max_requests: int | None = None,
        pause_after_failure: float = 0.0,
        t0: float | None = None,
        verify: str | bool = True,
    ):
        self.url = url.rstrip("/")
        # HTTPS: the CA file the clients trust, given with each request (a session's own `verify` loses to
        # REQUESTS_CA_BUNDLE in the environment).
        self.verify = verify
        self.mix = mix or {Kind("GET" if post is None else "POST", keepalive, path, post): clients}
        self.raw, self.timeout = raw, timeout
        self.max_seconds, self.max_requests = max_seconds, max_requests
        self.pause_after_failure = pause_after_failure
        self.t0 = 0.0 if t0 is None else t0
        self._clock_given = t0 is not None  # else start() sets t0
        self.records: list[Request] = []
        self.ok = 0  # answered as expected so far
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(kind,), daemon=True, name=f"load-{kind.method}-{i}")
            for kind, count in self.mix.items()
            for i in range(count)
        ]

    # ---- running --------------------------------------------------------------------------------------

    def start(self) -> Load:
        if not self._clock_given:
            self.t0 = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> list[Request]:
        """Stop every client; the records, in the order their requests started."""
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        with self._lock:
            return sorted(self.records, key=lambda r: r.start)

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        stuck = [t for t in self._threads if t.is_alive()]
        if stuck and exc[0] is None:
            raise AssertionError(f"{len(stuck)} load client(s) still running {self.timeout + 5:.0f} s after stop")

    def now(self) -> float:
        """Seconds since `t0`, on the records' clock."""
        return time.monotonic() - self.t0

    def wait_requests(self, count: int, timeout: float = 30.0) -> None:
        """Block until `count` more requests have succeeded (load is really flowing)."""
        target = self.ok + count
        wait_for(f"{count} more answered requests", lambda: self.ok >= target, timeout, 0.01, details=self.summary)

    # ---- views ----------------------------------------------------------------------------------------

    def recorded(self, first: int = 0) -> list[Request]:
        """The records so far from index `first` on."""
        with self._lock:
            return self.records[first:]

    def answered(self, since: float = -math.inf) -> list[Request]:
        """The successes answered at or after `since` (time.monotonic()), in the order of their answers."""
        return sorted((r for r in self.recorded() if r.ok and self.t0 + r.end >= since), key=lambda r: r.end)

    @property
    def result(self) -> LoadResult:
        """Successes, failures in one line each, latencies of the successes, successes by backend."""
        out = LoadResult()
        for r in self.recorded():
            if r.ok:
                out.ok += 1
                out.latencies.append(r.latency)
                out.backends[r.backend or "?"] = out.backends.get(r.backend or "?", 0) + 1
            else:
                out.failures.append(r.failure())
        return out

    def summary(self) -> str:
        return self.result.summary()

    # ---- the clients ----------------------------------------------------------------------------------

    def _client(self, kind: Kind) -> None:
        try:
            self._requests(kind)
        except Exception as e:  # a client that dies silently would make a transition look clean
            now = self.now()
            crashed = Request(now, 0.0, kind.method, kind.keepalive, None, "client_crashed", str(e), type(e).__name__)
            with self._lock:
                self.records.append(crashed)

    def _requests(self, kind: Kind) -> None:
        send, close = self._raw_sender(kind) if self.raw else self._requests_sender(kind)
        try:
            self._loop(kind, send)
        finally:
            close()

    def _loop(self, kind: Kind, send) -> None:
        deadline = self.t0 + self.max_seconds
        while not self._stop.is_set():
            begin = time.monotonic()
            if begin > deadline or (self.max_requests is not None and len(self.records) >= self.max_requests):
                break
            status, doc, error, detail, exception = send()
            if not error and kind.body is not None and doc.get("bytes") != len(kind.body):
                error, detail = "bad_answer", str(doc)[:200]
            record = Request(
                begin - self.t0,
                time.monotonic() - begin,
                kind.method,
                kind.keepalive,
                status,
                error,
                detail,
                exception,
                *((doc.get("backend"), doc.get("loaded_at"), doc.get("pid")) if not error else (None, None, None)),
            )
            with self._lock:
                self.records.append(record)
                self.ok += not error
            if error and self.pause_after_failure:
                self._stop.wait(self.pause_after_failure)  # a refused connect returns at once: don't spin

    def _requests_sender(self, kind: Kind):
        """A function sending one request through a requests session, returning (status, answer's JSON, error,
        detail, exception), and the function that closes the session."""
        session = requests.Session()
        headers = {} if kind.keepalive else {"Connection": "close"}
        url = self.url + kind.path

        def send() -> tuple[int | None, dict, str, str, str]:
            try:
                if kind.body is None:
                    r = session.request(kind.method, url, timeout=self.timeout, headers=headers, verify=self.verify)
                else:
                    r = session.request(
                        kind.method, url, data=kind.body, timeout=self.timeout, headers=headers, verify=self.verify
                    )
            except requests.RequestException as e:
                return None, {}, classify(e), str(e)[:200], type(e).__name__
            if r.status_code != 200:
                return r.status_code, {}, f"http_{r.status_code}", r.text[:200], ""
            try:
                doc = r.json()
            except ValueError:
                return r.status_code, {}, "bad_answer", r.text[:200], ""
            return r.status_code, doc if isinstance(doc, dict) else {}, "", "", ""

        return send, session.close

    def _raw_sender(self, kind: Kind):
        """The same through harness.http's raw-socket clients (GET only)."""
        if kind.method != "GET":
            raise ValueError("raw load sends GET only")
        address = urlsplit(self.url)
        host, port = address.hostname or "127.0.0.1", address.port or 80
        conn = http.KeepAliveClient(port, self.timeout, host) if kind.keepalive else None

        def send() -> tuple[int | None, dict, str, str, str]:
            try:
                if conn is not None:
                    answer = http.Answer(*conn.get(kind.path))
                else:
                    answer = http.get(port, kind.path, timeout=self.timeout, host=host)
            except http.Failure as e:
                return None, {}, e.kind, str(e.__cause__ or e)[:200], type(e.__cause__ or e).__name__
            except Exception as e:  # every failure is a data point
                return None, {}, classify_raw(e), str(e)[:200], type(e).__name__
            if answer.status != 200:
                return answer.status, {}, f"http_{answer.status}", answer.body[:200].decode(errors="replace"), ""
            try:
                doc = answer.json()
            except ValueError:
                doc = {}  # an answer that is not JSON still counts as answered, as bench always counted it
            return answer.status, doc if isinstance(doc, dict) else {}, "", "", ""

        return send, (conn.close if conn is not None else lambda: None)


# ---- bench's views --------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    frac = rank - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * frac)


def window(records: list[Request], start: float, end: float) -> list[Request]:
    """Requests that started in [start, end)."""
    return [r for r in records if start <= r.start < end]


def describe(records: list[Request], by_mode: bool = True) -> dict:
    """Counts of outcomes and latency percentiles (ms) of a set of requests; with `by_mode`, the same for
    the new-connection and the keep-alive clients apart ("new", "keepalive")."""
    lat = [r.latency * 1000 for r in records]
    failures: dict[str, int] = {}
    for r in records:
        if not r.ok:
            failures[r.error] = failures.get(r.error, 0) + 1
    duration = (records[-1].start - records[0].start) if len(records) > 1 else 0.0
    out = {
        "requests": len(records),
        "failed": sum(failures.values()),
        "failures": failures,
        "rps": len(records) / duration if duration else 0.0,
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "max_ms": max(lat) if lat else 0.0,
    }
    if by_mode:
        for mode, keep in (("new", False), ("keepalive", True)):
            part = [r for r in records if r.keepalive == keep]
            if part:
                out[mode] = describe(part, by_mode=False)
    return out
