"""Reloads and crashes under load: failed requests and p50/p99/max through nginx while they happen.

Scenarios, each on a cluster with 1 and with 2 backends, each with the load generator running
throughout (16 clients with a new connection per request and 8 on keep-alive connections, every
request recorded; keep-alive failures by wrk's kinds: connect, read, write, timeout):
- touch: `touch vassals/backend-1.ini` (the documented zero-downtime reload), several times;
- rolling: `fleet reload --all`;
- kill -9: SIGKILL to backend-1's uWSGI master (its workers die with it; the Emperor respawns it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from bench.background import background_load
from fleet.processes import cmdline
from harness.cluster import Cluster
from harness.load import Request, describe, window

Log = Callable[[str], None]


def touch(path: Path) -> None:
    os.utime(path, None)


def master_pid(cluster: Cluster, name: str) -> int:
    """backend `name`'s uWSGI master: from `fleet status --json`, else by its process title."""
    with contextlib.suppress(Exception):
        for row in cluster.status():
            if row.get("name") == name and row.get("pid"):
                return int(row["pid"])
    for pid in cluster.own_processes():
        title = cmdline(pid)
        if name in title and "master" in title:
            return pid
    raise RuntimeError(f"no master process found for {name}")


def run_scenario(
    cluster: Cluster,
    kind: str,
    log: Log,
    concurrency: int = 16,
    keepalive: int = 8,
    repeats: int = 2,
    pre: float = 1.5,
    gap: float = 4.0,
    post: float = 2.5,
) -> dict:
    """Run one scenario under load; returns the summary plus per-event windows and the raw timeline."""
    gen = background_load(cluster, new=concurrency, keepalive=keepalive, max_seconds=180)
    events: list[dict] = []
    try:
        time.sleep(pre)
        for _ in range(repeats if kind != "rolling" else 1):
            at = gen.now()
            if kind == "touch":
                touch(cluster.vassals / "backend-1.ini")
                took = None
            elif kind == "rolling":
                started = time.monotonic()
                out = cluster.fleet("reload", "--all", timeout=300, check=False)
                took = time.monotonic() - started
                if out.returncode != 0:
                    log(f"  fleet reload --all failed (rc={out.returncode}): {out.stderr.strip()[:300]}")
            elif kind == "kill9":
                os.kill(master_pid(cluster, "backend-1"), signal.SIGKILL)
                took = None
            else:
                raise ValueError(kind)
            events.append({"at": at, "command_s": took})
            time.sleep(gap if kind != "rolling" else post)
        time.sleep(post)
    finally:
        samples = gen.stop()
    overall = describe(samples)
    for ev in events:
        ev.update(describe(window(samples, ev["at"], ev["at"] + gap)))
        ev["recovered_s"] = _recovered(samples, ev["at"])
    baseline = describe(window(samples, 0.2, events[0]["at"])) if events else {}
    keep = overall.get("keepalive", {})
    log(
        f"  {kind:<8} {overall['requests']:6d} requests, "
        f"failed {overall['failed']} {overall['failures'] or ''}"
        f"  p50 {overall['p50_ms']:.1f} ms  p99 {overall['p99_ms']:.1f} ms  max {overall['max_ms']:.0f} ms"
        f"; keep-alive: {keep.get('requests', 0)} requests, failed {keep.get('failed', 0)} {keep.get('failures') or ''}"
    )
    return {
        "kind": kind,
        "overall": overall,
        "before": baseline,
        "events": events,
        "timeline": _timeline(samples),
    }


def _recovered(samples: list[Request], at: float) -> float | None:
    """Seconds after the event until the backend-1 answers again from a new app import (or None)."""
    before = {s.loaded_at for s in samples if s.start < at and s.backend == "backend-1"}
    for s in samples:
        if s.start >= at and s.backend == "backend-1" and s.loaded_at not in before:
            return s.start + s.latency - at
    return None


def _timeline(samples: list[Request], max_points: int = 1500) -> list[list]:
    """[start, latency_ms, ok, keepalive] points, thinned evenly to at most `max_points` (failures all kept)."""
    failed = [s for s in samples if s.outcome != "ok"]
    ok = [s for s in samples if s.outcome == "ok"]
    step = max(1, len(ok) // max_points)
    kept = sorted(ok[::step] + failed, key=lambda s: s.start)
    return [[round(s.start, 3), round(s.latency * 1000, 2), int(s.outcome == "ok"), int(s.keepalive)] for s in kept]
