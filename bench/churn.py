"""Keep-alive clients across membership changes: wrk's 32 keep-alive connections while files are added,
touched and removed, socket errors counted by kind (connect, read, write, timeout) and non-2xx answers.

Before routing by slots, every change reloaded nginx, and a graceful reload closes idle keep-alive
connections while clients send on them: 27 socket errors across 15 changes. The run also counts nginx
reloads (the control plane's published counter) and upstream errors in nginx's error log meanwhile.
Beside wrk, a few new-connection clients (harness.load) record every request.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from bench.background import background_load
from bench.wrk import Wrk
from fleet.layout import write_atomically
from fleet.published.snapshot import Snapshot
from fleet.vassalfile import vassals
from harness.cluster import Cluster
from harness.load import describe
from harness.wait import wait_for

Log = Callable[[str], None]


def _snapshot(cluster: Cluster) -> Snapshot:
    return Snapshot.read(cluster.layout)


def _applied_add(cluster: Cluster, name: str) -> bool:
    snap = _snapshot(cluster)
    return snap.state_of(name) == "healthy" and name in snap.routed


def _applied_touch(cluster: Cluster, name: str, mtime_ns: int) -> bool:
    b = _snapshot(cluster).backend(name)
    return b is not None and b.state == "healthy" and b.routed and b.served_mtime_ns >= mtime_ns


def _applied_rm(cluster: Cluster, name: str) -> bool:
    return _snapshot(cluster).backend(name) is None and not cluster.layout.socket(name).exists()


def plan_changes(count: int, base: list[str]) -> list[tuple[str, str]]:
    """`count` changes (at least 15 in the bench): add a backend, touch a base one, remove the added one."""
    changes: list[tuple[str, str]] = []
    i = 0
    while len(changes) < count:
        extra = f"churn-{i + 1}"
        changes += [("add", extra), ("touch", base[i % len(base)]), ("rm", extra)]
        i += 1
    return changes[:count]


def run(cluster: Cluster, log: Log, changes: int = 18, connections: int = 32, settle: float = 0.5) -> dict:
    """The changes one after another (each applied before the next), under wrk and new-connection clients."""
    base = list(vassals.present(cluster.vassals))
    body = (cluster.vassals / f"{base[0]}.ini").read_text()
    error_log = cluster.layout.logs / "nginx-error.log"
    log_from = error_log.stat().st_size if error_log.exists() else 0
    reloads_before = _snapshot(cluster).counters.nginx_reloads
    wrk = Wrk(threads=1, connections=connections)
    gen = background_load(cluster, new=4, keepalive=0, max_seconds=600)
    running = wrk.start(cluster.url + "/")
    done: list[dict] = []
    try:
        time.sleep(1.0)
        for kind, name in plan_changes(changes, base):
            path = cluster.vassals / f"{name}.ini"
            started = time.monotonic()
            if kind == "add":
                write_atomically(path, body)
                check = lambda n=name: _applied_add(cluster, n)  # noqa: E731
            elif kind == "touch":
                os.utime(path, None)
                mtime = path.stat().st_mtime_ns
                check = lambda n=name, m=mtime: _applied_touch(cluster, n, m)  # noqa: E731
            else:
                path.unlink()
                check = lambda n=name: _applied_rm(cluster, n)  # noqa: E731
            wait_for(f"{kind} {name} to be applied", check, 60, 0.02, ignore=(OSError,))
            done.append({"change": kind, "name": name, "applied_s": round(time.monotonic() - started, 3)})
            time.sleep(settle)
        time.sleep(1.0)
    finally:
        result = running.stop()
        wrk.close()
        samples = gen.stop()
    upstream_errors = _upstream_errors(error_log, log_from)
    reloads = _snapshot(cluster).counters.nginx_reloads - reloads_before
    out = {
        "changes": len(done),
        "by_kind": {k: sum(1 for d in done if d["change"] == k) for k in ("add", "touch", "rm")},
        "wrk": {"connections": connections, **result.as_dict(), "socket_errors": result.socket_errors},
        "new_connection_clients": describe(samples, by_mode=False),
        "nginx_reloads": reloads,
        "nginx_upstream_errors": upstream_errors,
        "applied": done,
    }
    log(
        f"  {len(done)} changes under wrk -c{connections} keep-alive: {result.requests} requests, socket errors "
        f"{result.socket_errors} (connect {result.connect_errors}, read {result.read_errors}, write "
        f"{result.write_errors}, timeout {result.timeouts}), non-2xx {result.non2xx}; new-connection clients: "
        f"{out['new_connection_clients']['failed']} failed of {out['new_connection_clients']['requests']}; "
        f"nginx reloads {reloads}; upstream errors in nginx's log {len(upstream_errors)}"
    )
    return out


def _upstream_errors(error_log, offset: int) -> list[str]:
    """Lines nginx logged about failing upstreams since `offset` (connect refused, reset, closed...)."""
    try:
        with open(error_log, errors="replace") as f:
            f.seek(offset)
            lines = f.read().splitlines()
    except OSError:
        return []
    return [line for line in lines if "upstream" in line][:50]
