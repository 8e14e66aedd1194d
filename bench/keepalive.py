"""How evenly a server serves many keep-alive connections (harness.http.KeepAliveClient)."""

from __future__ import annotations

from harness.http import Failure, KeepAliveClient


def fairness(port: int, clients: int = 16, seconds: float = 3.0, path: str = "/") -> dict:
    """`clients` keep-alive connections sending back to back for `seconds`: how evenly the server served
    them. A server that sticks to a connection while it has requests (uWSGI's http11-socket does) serves
    a few and starves the rest, which wrk cannot show: it reports latency only for answered requests."""
    import threading
    import time

    counts = [0] * clients
    failed = [0] * clients
    stop = time.monotonic() + seconds

    def loop(i: int) -> None:
        conn = KeepAliveClient(port, timeout=seconds + 1)
        while time.monotonic() < stop:
            try:
                conn.get(path)
                counts[i] += 1
            except Failure:
                failed[i] += 1
        conn.close()

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 10)
    total = sum(counts)
    fair = total / clients if clients else 0
    return {
        "clients": clients,
        "seconds": seconds,
        "requests": total,
        "per_client_min": min(counts),
        "per_client_max": max(counts),
        "starved": sum(1 for c in counts if c < 0.1 * fair),  # served < 10% of a fair share
        "failed": sum(failed),
    }
