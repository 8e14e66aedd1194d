"""A bounded load generator for tests: N client threads, each with a new connection per request or one
keep-alive connection (as browsers and load balancers do), sending GETs or POSTs (which nginx never
retries once sent)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import requests

from tests.poll import wait_for


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


class Load:
    """Runs GET requests from `clients` threads until stopped (or `max_seconds`, as a safety bound)."""

    def __init__(
        self,
        url: str,
        clients: int = 8,
        path: str = "/",
        max_seconds: float = 120.0,
        keepalive: bool = False,
        post: bytes | None = None,
    ):
        self.url = url + path
        self.clients = clients
        self.keepalive, self.post = keepalive, post
        self.max_seconds = max_seconds
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        try:
            self._requests()
        except Exception as e:  # a client that dies silently would make a transition look clean
            with self._lock:
                self.result.failures.append(f"client thread crashed: {type(e).__name__}: {e}")

    def _requests(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        session = requests.Session()
        headers = {} if self.keepalive else {"Connection": "close"}
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                if self.post is None:
                    r = session.get(self.url, timeout=10, headers=headers)
                else:
                    r = session.post(self.url, data=self.post, timeout=10, headers=headers)
                elapsed = time.perf_counter() - started
                with self._lock:
                    if r.status_code == 200:
                        self.result.ok += 1
                        self.result.latencies.append(elapsed)
                        backend = r.json().get("backend", "?")
                        self.result.backends[backend] = self.result.backends.get(backend, 0) + 1
                    else:
                        self.result.failures.append(f"HTTP {r.status_code}: {r.text[:80]}")
            except requests.RequestException as e:
                with self._lock:
                    self.result.failures.append(f"{type(e).__name__}: {str(e)[:80]}")

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def wait_requests(self, count: int, timeout: float = 30.0) -> None:
        """Block until `count` more requests have succeeded (load is really flowing)."""
        target = self.result.ok + count
        wait_for(
            f"{count} more answered requests",
            lambda: self.result.ok >= target,
            timeout,
            0.01,
            details=self.result.summary,
        )

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)
        stuck = [t for t in self._threads if t.is_alive()]
        if stuck and exc[0] is None:
            raise AssertionError(f"{len(stuck)} load client(s) still running 15 s after stop")
