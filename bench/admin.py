"""The cost of the operator's view (issue 12): /metrics scrape time and the control plane's idle CPU.

    .venv/bin/python -m bench.admin [--vassals 50] [--idle 30] [--rounds 3] [--scrapes 100]

One cluster in a copy of the tree (2 processes per vassal, the shipped default), started twice: with the
admin listener off (FLEET_ADMIN_PORT=0) and on. For each: the control plane's CPU over `--idle` quiet
seconds, `--rounds` times (median). With it on, also: the same while a status page is open (a client
long-polling /api/overview as app.js does), and `--scrapes` sequential GET /metrics timed by the client.
Not part of `make bench`. Writes its stamped results file, bench/results/admin/<ended, UTC>.json
(harness/evidence.py), and results.md again, whose "operator's view" section is generated from it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests

from bench import report
from bench.scale import idle_cpu
from fleet import uwsgi
from fleet.control.metrics import Metrics
from fleet.control.subscribers import PassReport
from fleet.control.usage import memory_of
from fleet.proxy.nginxstats import NginxView
from fleet.published.parts import running_parts
from fleet.published.snapshot import Snapshot
from harness import evidence
from harness.cluster import Cluster, copy_tree
from harness.ports import free_port

REPO = Path(__file__).resolve().parent.parent


def control_cpu(cluster: Cluster, seconds: float, rounds: int) -> list[float]:
    pid = cluster.pids()["control"]
    return [idle_cpu({"control": [pid]}, seconds)["control"] for _ in range(rounds)]


def page_open(url: str, stop: threading.Event) -> None:
    """What the status page does: long-poll the overview, at most 4 times a second."""
    version = 0
    while not stop.is_set():
        began = time.monotonic()
        version = requests.get(f"{url}/api/overview?version={version}&wait=1", timeout=10).json()["version"]
        stop.wait(max(0.0, 0.25 - (time.monotonic() - began)))


def scrape_times(url: str, count: int) -> tuple[list[float], int, int]:
    """Milliseconds per GET /metrics (one connection each, as Prometheus would after an idle period)."""
    times, size, lines = [], 0, 0
    for _ in range(count):
        began = time.perf_counter()
        r = requests.get(f"{url}/metrics", timeout=10, headers={"Connection": "close"})
        times.append((time.perf_counter() - began) * 1000)
        r.raise_for_status()
        size, lines = len(r.content), r.text.count("\n")
    return times, size, lines


def cpu_ms(work, repeat: int = 20) -> float:
    """CPU milliseconds of one call of `work` in this process (the median of `repeat`)."""
    times = []
    for _ in range(repeat):
        began = time.process_time()
        work()
        times.append((time.process_time() - began) * 1000)
    return statistics.median(times)


def breakdown(cluster: Cluster, names: list[str]) -> dict[str, str]:
    """Where a control plane's idle second goes, measured here on the same vassals (CPU of this process)."""
    layout = cluster.layout
    metrics = Metrics(parts=lambda: running_parts(layout, asking="control"), nginx_view=NginxView(layout))
    snap = Snapshot.read(layout)
    metrics.on_pass(PassReport(snap, snap.counters))
    pids = {n: uwsgi.vassal_stats(layout.stats_socket(n)).pids for n in names}
    status_only = cpu_ms(lambda: [uwsgi.vassal_stats(layout.stats_socket(n), 0.3) for n in names])

    def read_and_keep() -> None:  # what a pass that reads the stats does: read once, hand the reads to metrics
        stats = {n: uwsgi.vassal_stats(layout.stats_socket(n), 0.3) for n in names}
        metrics.on_pass(PassReport(snap, snap.counters, stats=stats, stats_at=time.monotonic()))

    with_metrics = cpu_ms(read_and_keep)
    return {
        f"read {len(names)} stats sockets, for status alone (each second)": f"{status_only:.2f} ms",
        "... and keep the workers for the metrics too (what runs)": f"{with_metrics:.2f} ms",
        f"PSS of {sum(len(p) for p in pids.values())} processes (smaps_rollup, for status; once a minute)": (
            f"{cpu_ms(lambda: [memory_of(p) for p in pids.values()]):.2f} ms"
        ),
        "per pass, metrics.on_pass": f"{cpu_ms(lambda: metrics.on_pass(PassReport(snap, snap.counters)), 200):.3f} ms",
        "one scrape, in process (formatting, parts, stub_status, tally)": f"{cpu_ms(metrics.scrape):.2f} ms",
    }


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"median {statistics.median(ordered):.2f}, p95 {p95:.2f}, max {ordered[-1]:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vassals", type=int, default=50)
    p.add_argument("--idle", type=float, default=30.0, help="seconds per CPU sample")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scrapes", type=int, default=100)
    p.add_argument("--out", type=Path, default=evidence.RESULTS, help="results folder (default: bench/results)")
    args = p.parse_args(argv)
    stamp = evidence.start(REPO)
    with tempfile.TemporaryDirectory(prefix="fleet-bench-admin-") as tmp:
        root = copy_tree(REPO, Path(tmp) / "fleet")
        os.chmod(tmp, 0o755)
        cluster = Cluster(root, free_port())
        cluster.set_vassals([f"v{i:03d}" for i in range(args.vassals)], processes=2)
        results: dict[str, str] = {}
        try:
            for admin in ("off", "on"):
                port = free_port() if admin == "on" else 0
                os.environ["FLEET_ADMIN_PORT"] = str(port)
                started = time.monotonic()
                cluster.up(timeout=300)
                took = time.monotonic() - started
                print(
                    f"admin {admin}: {args.vassals} vassals up in {took:.1f} s, load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                time.sleep(5)  # let the start settle: the quiet interval is what is measured
                cpu = control_cpu(cluster, args.idle, args.rounds)
                results[f"control plane idle CPU, admin {admin} (% of a core)"] = " ".join(f"{c:.2f}" for c in cpu)
                if admin == "on":
                    url = f"http://127.0.0.1:{port}"
                    stop = threading.Event()
                    viewer = threading.Thread(target=page_open, args=(url, stop), daemon=True)
                    viewer.start()
                    cpu = control_cpu(cluster, args.idle, args.rounds)
                    stop.set()
                    viewer.join(5)
                    results["control plane CPU, a status page open (% of a core)"] = " ".join(f"{c:.2f}" for c in cpu)
                    times, size, lines = scrape_times(url, args.scrapes)
                    results[f"GET /metrics, {lines} lines, {size / 1024:.0f} KiB (ms)"] = summary(times)
                    results |= breakdown(cluster, [f"v{i:03d}" for i in range(args.vassals)])
                cluster.down()
        finally:
            cluster.down()
            os.environ.pop("FLEET_ADMIN_PORT", None)
    for what, value in results.items():
        print(f"{what}: {value}")
    config = {"vassals": args.vassals, "idle_seconds": args.idle, "rounds": args.rounds, "scrapes": args.scrapes}
    path = evidence.write("admin", evidence.finish(stamp), {"config": config, "rows": results}, out=args.out)
    print(f"{path}\n{report.write(args.out, plot=False)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
