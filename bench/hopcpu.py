"""Where the proxy hop's time goes, by CPU time per request of each process group.

Requests per second on a shared 2-core machine swing with other people's work; the CPU time a request
costs each process (from /proc, while wrk runs) hardly does. For uWSGI alone: its processes and wrk.
For fleet: nginx (master and workers), the vassal (master and workers), the control plane, the Emperor
and wrk. The difference is what the hop costs, and where.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bench import stats
from bench.scale import CLK_TCK, cpu_ticks
from bench.wrk import Wrk, parse
from fleet.processes import cmdline, process_table
from harness.procs import descendants


def fleet_groups(root: Path) -> dict[str, list[int]]:
    """The processes of the fleet cluster at `root`, by part."""
    groups: dict[str, list[int]] = {"nginx": [], "uWSGI": [], "control plane": [], "emperor": []}
    for pid in process_table():
        title = cmdline(pid)
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        ours = str(root) in title or cwd == str(root) or cwd.startswith(f"{root}/")
        if not ours:
            continue
        if title.startswith("nginx"):
            groups["nginx"].append(pid)
        elif title.startswith("[fleet "):
            groups["uWSGI"].append(pid)  # the vassal: its master and workers
        elif "control-plane" in title or "supervise" in title:
            groups["control plane"].append(pid)
        elif "emperor.ini" in title:
            groups["emperor"].append(pid)
    return groups


def process_groups(pid: int, name: str) -> dict[str, list[int]]:
    return {name: [pid, *descendants(pid)]}


def _ticks(pids: list[int]) -> int:
    return sum(cpu_ticks(p) for p in pids)


def per_request(url: str, groups: dict[str, list[int]], seconds: float, wrk: Wrk) -> tuple[float, dict[str, float]]:
    """One wrk run; (req/s, {group: CPU µs per request}), wrk's own CPU included."""
    before = {k: _ticks(v) for k, v in groups.items()}
    t0 = os.times()
    out = subprocess.run(wrk._argv(url, seconds), capture_output=True, text=True, timeout=seconds + 60)
    t1 = os.times()
    result = parse(out.stdout + out.stderr)
    after = {k: _ticks(v) for k, v in groups.items()}
    n = max(1, result.requests)
    cpu = {k: (after[k] - before[k]) / CLK_TCK / n * 1e6 for k in groups}
    cpu["wrk"] = ((t1.children_user + t1.children_system) - (t0.children_user + t0.children_system)) / n * 1e6
    return result.rps, cpu


def measure(stacks: dict[str, tuple[str, dict[str, list[int]]]], rounds: int = 3, seconds: float = 4) -> dict:
    """{key: {"rps": median, "cpu_us": {group: median µs per request}, "total_us": ...}} over alternating rounds."""
    wrk = Wrk(threads=2, connections=64)
    runs: dict[str, list[tuple[float, dict[str, float]]]] = {k: [] for k in stacks}
    try:
        for r in range(rounds):
            for key in list(stacks)[:: 1 if r % 2 == 0 else -1]:
                url, groups = stacks[key]
                runs[key].append(per_request(url, groups, seconds, wrk))
    finally:
        wrk.close()
    out = {}
    for key, got in runs.items():
        cpu = {g: stats.median([c[g] for _, c in got]) for g in got[0][1]}
        out[key] = {"rps": stats.median([r for r, _ in got]), "cpu_us": cpu, "total_us": sum(cpu.values())}
    return out
