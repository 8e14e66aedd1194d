"""The soak's clients: threads sending GET / and POST /upload through nginx, each either on one keep-alive
connection or on a new connection per request, until stopped. Every failure is kept, with its timing and
cause; successes are counted per second (a soak sends millions of requests)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass

import requests

BODY = b"s" * 2048
# (method, keep-alive): how many client threads of each kind
DEFAULT_MIX = {("GET", True): 2, ("GET", False): 2, ("POST", True): 1, ("POST", False): 1}


@dataclass(frozen=True)
class Failure:
    start: float  # seconds since the soak started
    end: float
    client: str  # e.g. "POST keep-alive"
    cause: str  # "http_502", "reset", "closed_by_server", "refused", "timeout", "bad_answer", ...
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def client_name(method: str, keepalive: bool) -> str:
    return f"{method} {'keep-alive' if keepalive else 'new-connection'}"


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


class Clients:
    """`mix` client threads against `url`; `t0` is the soak's clock origin (time.monotonic())."""

    def __init__(self, url: str, t0: float, mix: dict[tuple[str, bool], int] | None = None):
        self.url, self.t0 = url.rstrip("/"), t0
        self.mix = mix or DEFAULT_MIX
        self.failures: list[Failure] = []
        self.ok_per_second: Counter[int] = Counter()
        self.ok_by_client: Counter[str] = Counter()
        self.latency_ms: Counter[int] = Counter()  # whole milliseconds -> count (successes)
        self.backends: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(method, keepalive), daemon=True, name=f"soak-{method}-{i}")
            for (method, keepalive), count in self.mix.items()
            for i in range(count)
        ]

    def start(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def ok(self) -> int:
        with self._lock:
            return sum(self.ok_per_second.values())

    def _client(self, method: str, keepalive: bool) -> None:
        name = client_name(method, keepalive)
        try:
            self._requests(method, keepalive, name)
        except Exception as e:  # a client that died silently would make the soak look clean
            now = time.monotonic() - self.t0
            with self._lock:
                self.failures.append(Failure(now, now, name, "client_crashed", f"{type(e).__name__}: {e}"))

    def _requests(self, method: str, keepalive: bool, name: str) -> None:
        session = requests.Session()
        headers = {} if keepalive else {"Connection": "close"}
        while not self._stop.is_set():
            start = time.monotonic()
            cause = detail = ""
            try:
                if method == "GET":
                    r = session.get(self.url + "/", headers=headers, timeout=10)
                else:
                    r = session.post(self.url + "/upload", data=BODY, headers=headers, timeout=10)
                backend = _answer(r, method)
                if backend is None:
                    cause, detail = (f"http_{r.status_code}" if r.status_code != 200 else "bad_answer"), r.text[:160]
            except requests.RequestException as e:
                cause, detail, backend = classify(e), repr(e)[:200], None
            end = time.monotonic()
            with self._lock:
                if cause:
                    self.failures.append(Failure(start - self.t0, end - self.t0, name, cause, detail))
                else:
                    self.ok_per_second[int(start - self.t0)] += 1
                    self.ok_by_client[name] += 1
                    self.latency_ms[int((end - start) * 1000)] += 1
                    self.backends[backend] += 1
            if cause:
                self._stop.wait(0.01)  # a refused connect returns at once: do not spin


def _answer(r: requests.Response, method: str) -> str | None:
    """The answering backend of a good answer, None for anything else."""
    if r.status_code != 200:
        return None
    try:
        doc = r.json()
    except ValueError:
        return None
    if method == "POST" and doc.get("bytes") != len(BODY):
        return None
    return doc.get("backend")


def percentile(histogram: Counter[int], fraction: float) -> int:
    """The `fraction` percentile of a {value: count} histogram (0 when empty)."""
    total = sum(histogram.values())
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= fraction * total:
            return value
    return 0
