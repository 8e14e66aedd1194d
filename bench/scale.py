"""How cost grows with the number of vassals (1, 5, 20, 50 by default).

For each size, a fresh cluster (copy of the tree, vassals at the shipped defaults):
- `fleet up --detach` time to every vassal healthy;
- memory per vassal: RSS and PSS (shared pages split fairly) of its master + workers, /proc smaps_rollup;
- memory of the Emperor, nginx (master + workers) and the control plane;
- one change (`fleet add`): command time, and the control plane's own sync and nginx reload times as
  it publishes them in run/state.json (fleet.snapshot);
- `nginx -t` and a bare nginx reload (SIGHUP until every old worker is gone) with that many upstreams;
- idle CPU of the control plane, the Emperor and all vassals together over a quiet interval.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from bench import stats
from bench.nginx import NGINX
from fleet.control.usage import pss, rss_and_pss
from fleet.core import emperors
from fleet.processes import stat_fields
from fleet.published.snapshot import Snapshot
from harness.cluster import Cluster, copy_tree
from harness.ports import free_port
from harness.procs import children, descendants, run
from harness.wait import wait_for

Log = Callable[[str], None]
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


def tree_memory(pid: int) -> dict[str, float]:
    """RSS and PSS (MiB) of a process and its descendants."""
    pids = [pid, *descendants(pid)]
    sizes = [rss_and_pss(p) for p in pids]
    return {
        "rss_mib": sum(size[0] for size in sizes) / MIB,
        "pss_mib": sum(size[1] for size in sizes) / MIB,
        "processes": len(pids),
    }


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (0 if it is gone)."""
    fields = stat_fields(pid)
    return int(fields[11]) + int(fields[12]) if fields else 0


def idle_cpu(groups: dict[str, list[int]], seconds: float) -> dict[str, float]:
    """Percent of one core used by each group of pids over `seconds`."""
    before = {k: sum(cpu_ticks(p) for p in pids) for k, pids in groups.items()}
    time.sleep(seconds)
    after = {k: sum(cpu_ticks(p) for p in pids) for k, pids in groups.items()}
    return {k: 100.0 * (after[k] - before[k]) / CLK_TCK / seconds for k in groups}


def nginx_reload_time(nginx_pid: int, timeout: float = 30.0) -> float:
    """SIGHUP to the nginx master; seconds until new workers run and every old one has exited."""
    old = set(children(nginx_pid))
    started = time.perf_counter()
    os.kill(nginx_pid, signal.SIGHUP)

    def done() -> bool:
        now = set(children(nginx_pid))
        return bool(now) and not (now & old)

    wait_for("nginx reload", done, timeout, 0.002, ignore=(OSError,))
    return time.perf_counter() - started


def vassal_masters(cluster: Cluster, emperor_pids: list[int]) -> dict[str, int]:
    """name -> master pid, from `fleet status --json`, else the Emperors' direct children."""
    masters: dict[str, int] = {}
    with contextlib.suppress(Exception):
        for row in cluster.status():
            if row.get("pid"):
                masters[row["name"]] = int(row["pid"])
    if not masters:
        for i, pid in enumerate(p for emperor in emperor_pids for p in children(emperor)):
            masters[f"#{i}"] = pid
    return masters


def measure_size(root: Path, work: Path, n: int, idle_seconds: float, log: Log) -> dict:
    """One cluster of `n` vassals: start, measure, one change, stop."""
    cluster = Cluster(copy_tree(root, work / f"scale-{n}"), free_port())
    names = [f"b{i:03d}" for i in range(1, n + 1)]
    cluster.set_vassals(names)
    result: dict = {"vassals": n}
    try:
        started = time.monotonic()
        cluster.up(timeout=600)
        result["up_s"] = time.monotonic() - started
        pids = cluster.pids()
        control_pid = pids.get("control") or Snapshot.read(cluster.layout).control_pid
        emperor_pids = [pid for name, pid in sorted(pids.items()) if emperors.is_emperor(name)]
        nginx_pid = pids["nginx"]
        masters = vassal_masters(cluster, emperor_pids)
        time.sleep(1.0)
        per_vassal = [tree_memory(pid) for pid in masters.values()]
        result["vassal_rss_mib"] = stats.median([m["rss_mib"] for m in per_vassal])
        result["vassal_pss_mib"] = stats.median([m["pss_mib"] for m in per_vassal])
        result["vassals_pss_total_mib"] = sum(m["pss_mib"] for m in per_vassal)
        result["vassal_processes"] = stats.median([m["processes"] for m in per_vassal])
        result["emperor_pss_mib"] = sum(pss(pid) for pid in emperor_pids) / MIB  # all of them
        result["nginx_pss_mib"] = tree_memory(nginx_pid)["pss_mib"]
        if control_pid:
            result["control_pss_mib"] = pss(control_pid) / MIB
        groups = {
            "emperor": emperor_pids,
            "vassals": [p for m in masters.values() for p in [m, *descendants(m)]],
        }
        if control_pid:
            groups["control"] = [control_pid]
        cpu = idle_cpu(groups, idle_seconds)
        result.update({f"idle_cpu_{k}_pct": v for k, v in cpu.items()})
        result["nginx_t_s"] = _nginx_t(cluster)
        result["nginx_reload_s"] = nginx_reload_time(nginx_pid)
        time.sleep(0.5)
        started = time.monotonic()
        out = cluster.fleet("add", "extra", "--processes", "1", timeout=120, check=False)
        result["add_s"] = time.monotonic() - started if out.returncode == 0 else None
        counters = Snapshot.read(cluster.layout).counters  # zeros if the control plane published nothing
        result["control_sync_ms"] = counters.last_pass_ms if counters.passes else None
        result["control_nginx_reload_ms"] = counters.last_nginx_reload_ms if counters.nginx_reloads else None
        log(
            f"  {n:3d} vassals: up {result['up_s']:.1f} s, PSS/vassal {result['vassal_pss_mib']:.1f} MiB "
            f"(RSS {result['vassal_rss_mib']:.1f}), nginx reload {result['nginx_reload_s'] * 1000:.0f} ms, "
            f"add {result['add_s'] or float('nan'):.2f} s, idle CPU control "
            f"{result.get('idle_cpu_control_pct', float('nan')):.2f}% "
            f"emperor {result['idle_cpu_emperor_pct']:.2f}%"
        )
    finally:
        cluster.down()
    return result


def _nginx_t(cluster: Cluster) -> float | None:
    conf = cluster.layout.nginx_conf
    if not conf.exists():
        return None
    started = time.perf_counter()
    out = run([NGINX, "-t", "-q", "-p", str(conf.parent), "-c", str(conf)], timeout=60)
    return time.perf_counter() - started if out.returncode == 0 else None
