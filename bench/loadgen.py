"""A bounded closed-loop load generator, every request recorded: N threads with a new connection per
request, and M threads each on its own keep-alive connection (bench.keepalive, failures counted as wrk does).

wrk reports aggregates; the reload and removal studies need each request's start time, latency, outcome
and answering backend, to line failures and stalls up against the events that caused them.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

from bench import client, stats
from bench.keepalive import Failure, KeepAliveClient


@dataclass(frozen=True)
class Sample:
    start: float  # seconds since the generator started
    latency: float  # seconds
    outcome: str  # "ok", "http_<status>"; new connection: "refused", "reset", "timeout" or an exception name;
    # keep-alive: wrk's kinds "connect", "read", "write", "timeout"
    backend: str | None
    loaded_at: float | None  # the app's import time: changes on every reload
    keepalive: bool = False
    pid: int | None = None  # the worker that answered


def _classify(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timeout"
    return type(exc).__name__


class LoadGen:
    """Closed loop: `concurrency` threads each send GET `path` on a new connection, back to back, and
    `keepalive` threads each on one keep-alive connection (re-opened after a failure).

    Bounded: it stops by itself after `max_seconds` or `max_requests`, whichever comes first.
    """

    def __init__(
        self,
        port: int,
        concurrency: int = 16,
        path: str = "/",
        timeout: float = 5.0,
        max_seconds: float = 120.0,
        max_requests: int = 1_000_000,
        keepalive: int = 0,
    ) -> None:
        self.port = port
        self.concurrency = concurrency
        self.keepalive = keepalive
        self.path = path
        self.timeout = timeout
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.t0 = 0.0

    def now(self) -> float:
        """Seconds since start, on the same clock as the samples."""
        return time.perf_counter() - self.t0

    def start(self) -> LoadGen:
        self.t0 = time.perf_counter()
        for i in range(self.concurrency + self.keepalive):
            keep = i >= self.concurrency
            t = threading.Thread(target=self._loop, args=(keep,), name=f"loadgen-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def recorded(self, first: int = 0) -> list[Sample]:
        """The samples recorded so far from index `first` on (threads hand theirs over in batches)."""
        with self._lock:
            return self.samples[first:]

    def stop(self) -> list[Sample]:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        with self._lock:
            return sorted(self.samples, key=lambda s: s.start)

    def _loop(self, keep: bool) -> None:
        local: list[Sample] = []
        deadline = self.t0 + self.max_seconds
        conn = KeepAliveClient(self.port, self.timeout) if keep else None
        while not self._stop.is_set():
            begin = time.perf_counter()
            if begin > deadline or len(self.samples) + len(local) >= self.max_requests:
                break
            backend = loaded_at = pid = None
            try:
                if conn is not None:
                    answer = client.Answer(*conn.get(self.path))
                else:
                    answer = client.get(self.port, self.path, timeout=self.timeout)
                outcome = "ok" if answer.status == 200 else f"http_{answer.status}"
                if answer.status == 200:
                    try:
                        doc = answer.json()
                        backend, loaded_at, pid = doc.get("backend"), doc.get("loaded_at"), doc.get("pid")
                    except ValueError:
                        pass
            except Failure as e:
                outcome = e.kind
            except Exception as e:  # every failure is a data point
                outcome = _classify(e)
            end = time.perf_counter()
            local.append(Sample(begin - self.t0, end - begin, outcome, backend, loaded_at, keep, pid))
            if len(local) >= 16:
                with self._lock:
                    self.samples.extend(local)
                local = []
            if outcome != "ok":
                time.sleep(0.001)  # a refused connect returns at once: don't spin
        with self._lock:
            self.samples.extend(local)
        if conn is not None:
            conn.close()


def window(samples: list[Sample], start: float, end: float) -> list[Sample]:
    """Samples whose request started in [start, end)."""
    return [s for s in samples if start <= s.start < end]


def describe(samples: list[Sample], by_mode: bool = True) -> dict:
    """Counts of outcomes and latency percentiles (ms) of a set of samples; with `by_mode`, the same for
    the new-connection and the keep-alive clients apart ("new", "keepalive")."""
    lat = [s.latency * 1000 for s in samples]
    failures: dict[str, int] = {}
    for s in samples:
        if s.outcome != "ok":
            failures[s.outcome] = failures.get(s.outcome, 0) + 1
    duration = (samples[-1].start - samples[0].start) if len(samples) > 1 else 0.0
    out = {
        "requests": len(samples),
        "failed": sum(failures.values()),
        "failures": failures,
        "rps": len(samples) / duration if duration else 0.0,
        "p50_ms": stats.percentile(lat, 50),
        "p99_ms": stats.percentile(lat, 99),
        "max_ms": max(lat) if lat else 0.0,
    }
    if by_mode:
        for mode, keep in (("new", False), ("keepalive", True)):
            part = [s for s in samples if s.keepalive == keep]
            if part:
                out[mode] = describe(part, by_mode=False)
    return out
