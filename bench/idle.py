"""The idle control plane's CPU at N vassals of one process each (issue 20: at most 2% of a core at 200).

For each size and each tree given (e.g. this branch and main, measured one after the other on the same
machine), a fresh cluster in a copy of that tree: the vassals are added in batches (each batch healthy and
routed before the next), then nothing happens for `settle` seconds (longer than the control plane's watch
window, so that it is really idle), then the CPU (utime + stime from /proc/PID/stat, the method of
bench/scale.py) of the control plane, the Emperor, nginx and the vassals is taken over `seconds`, with
nobody watching; then over `watched` seconds more with `fleet status` asking every few seconds (touching
run/usage-wanted as it does), where the tree knows that signal. Nothing here runs `fleet status` itself
or reads the admin listener, which would count as watching. Self-contained (the standard library, fleet
and bench.machine): it drives `python -m fleet` in each copy, so any tree with that command line can be
measured.

    .venv/bin/python -m bench.idle --tree after=. --tree before=/tmp/main-tree@<commit> --sizes 50,200

writes its stamped results file, bench/results/idle/<ended, UTC>.json (harness/evidence.py: commit, start
and end, machine, load average before and after), with the commit of each tree and every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fleet.layout import Layout, write_atomically
from fleet.processes import process_table, stat_fields
from fleet.published import records
from fleet.published.snapshot import Snapshot
from harness import evidence

CLK_TCK = os.sysconf("SC_CLK_TCK")
IGNORED = shutil.ignore_patterns(".venv", "run", ".git", "results", "__pycache__", ".pytest_cache", ".ruff_cache")
VASSAL = "; written by bench.idle\n[uwsgi]\nprocesses = 1\n"


class Cluster:
    """One cluster in a copy of a tree, on a free port, through `python -m fleet`."""

    def __init__(self, tree: Path, root: Path):
        shutil.copytree(tree, root, ignore=IGNORED, symlinks=True)
        self.root, self.layout = root, Layout(root)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]

    def fleet(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "fleet", "--root", str(self.root), *args]
        return subprocess.run(argv, cwd=self.root, capture_output=True, text=True, timeout=timeout)

    def up(self) -> None:
        out = self.fleet("up", "--port", str(self.port), "--detach", "--timeout", "900", timeout=960)
        if out.returncode != 0:
            raise RuntimeError(f"fleet up failed (rc={out.returncode}):\n{out.stdout}\n{out.stderr}")

    def down(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.fleet("down", timeout=300)
        root = str(self.root)
        for pid in process_table():  # a backstop: whatever still runs from the copy
            with contextlib.suppress(OSError):
                cwd = os.readlink(f"/proc/{pid}/cwd")
                if pid != os.getpid() and (cwd == root or cwd.startswith(root + "/")):
                    os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for child, fields in process_table().items():
        parents.setdefault(int(fields[1]), []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process in clock ticks (0 if it is gone), as bench/scale.py reads them."""
    fields = stat_fields(pid)
    return int(fields[11]) + int(fields[12]) if fields else 0


def group_ticks(groups: dict[str, list[int]]) -> dict[str, int]:
    return {k: sum(cpu_ticks(p) for p in pids) for k, pids in groups.items()}


def percent(before: dict[str, int], after: dict[str, int], seconds: float) -> dict[str, float]:
    return {k: round(100.0 * (after[k] - before[k]) / CLK_TCK / seconds, 3) for k in before}


def log(text: str) -> None:
    print(text, flush=True)


def commit_of(tree: Path) -> str:
    """The tree's commit (with `+dirty` if it has uncommitted changes), or "" if it is no git work tree."""
    try:
        head = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True)
        if head.returncode != 0:
            return ""
        dirty = subprocess.run(
            ["git", "-C", str(tree), "status", "--porcelain", "--", "fleet", "bench"], capture_output=True, text=True
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        return ""


def all_routed(cluster: Cluster, names: list[str]) -> bool:
    snap = Snapshot.read(cluster.layout)
    return all((b := snap.backend(n)) is not None and b.state == "healthy" for n in names) and set(names) <= set(
        snap.routed
    )


def wait_routed(cluster: Cluster, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all_routed(cluster, names):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(names)} vassals not all healthy and routed within {timeout:.0f} s")
        time.sleep(0.5)  # polling state.json against a deadline


def measure(
    tree: Path, label: str, work: Path, n: int, batch: int, settle: float, seconds: float, watched: float
) -> dict:
    cluster = Cluster(tree, work / f"idle-{label}-{n}")
    names = [f"b{i:03d}" for i in range(1, n + 1)]
    for old in cluster.layout.vassals.glob("*.ini"):
        old.unlink()
    for name in names[:batch]:
        write_atomically(cluster.layout.vassals / f"{name}.ini", VASSAL)
    result: dict = {"vassals": n, "loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    started = time.monotonic()
    try:
        cluster.up()
        for i in range(batch, n, batch):
            for name in names[i : i + batch]:
                write_atomically(cluster.layout.vassals / f"{name}.ini", VASSAL)
            wait_routed(cluster, names[: i + batch], 600)
        wait_routed(cluster, names, 600)
        result["up_s"] = round(time.monotonic() - started, 1)
        pids = records.running(cluster.layout)
        control = pids.get("control") or Snapshot.read(cluster.layout).control_pid
        # One Emperor ("emperor") or several ("emperor-1", "emperor-2", ...), as the tree runs them.
        emperors = [pid for name, pid in sorted(pids.items()) if name.split("-")[0] == "emperor"]
        groups = {
            "control": [control],
            "emperor": emperors,
            "nginx": [pids["nginx"], *descendants(pids["nginx"])],
            "vassals": [v for e in emperors for v in descendants(e)],
        }
        time.sleep(settle)  # the idle state is what is measured: nothing changes, nobody watches
        before = group_ticks(groups)
        time.sleep(seconds)  # the window itself
        result["idle_cpu_pct"] = percent(before, group_ticks(groups), seconds)
        if watched > 0:
            before = group_ticks(groups)
            end = time.monotonic() + watched
            while time.monotonic() < end:
                (cluster.layout.run / "usage-wanted").touch()  # what `fleet status` does (a no-op for older trees)
                time.sleep(min(5.0, max(0.0, end - time.monotonic())))
            after = {k: sum(cpu_ticks(p) for p in group) for k, group in groups.items()}
            result["watched_cpu_pct"] = {
                k: round(100.0 * (after[k] - before[k]) / CLK_TCK / watched, 3) for k in groups
            }
            result["watched_signal_known"] = "usage_wanted" in (tree / "fleet" / "layout.py").read_text()
        snap = Snapshot.read(cluster.layout)
        result["passes"] = snap.counters.passes
        idle, seen = result["idle_cpu_pct"], result.get("watched_cpu_pct", {})
        log(
            f"  {label} {n:3d} vassals: up {result['up_s']:.0f} s, idle CPU control {idle['control']:.2f}% "
            f"(watched {seen.get('control', float('nan')):.2f}%), emperor {idle['emperor']:.2f}%, "
            f"vassals {idle['vassals']:.2f}%"
        )
    finally:
        cluster.down()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", required=True, help="LABEL=PATH[@COMMIT] (repeatable)")
    parser.add_argument("--sizes", default="50,200")
    parser.add_argument("--batch", type=int, default=25, help="vassals added at a time")
    parser.add_argument("--settle", type=float, default=35.0, help="seconds idle before measuring")
    parser.add_argument("--seconds", type=float, default=45.0, help="the unwatched window")
    parser.add_argument("--watched", type=float, default=30.0, help="the watched window (0: none)")
    parser.add_argument("--out", type=Path, default=evidence.RESULTS, help="results folder (default: bench/results)")
    args = parser.parse_args(argv)
    trees = []
    for spec in args.tree:
        label, _, rest = spec.partition("=")
        path, _, commit = rest.partition("@")
        trees.append((label, Path(path).resolve(), commit or commit_of(Path(path))))
    sizes = [int(x) for x in args.sizes.split(",")]
    stamp = evidence.start(Path(__file__).resolve().parent.parent)
    doc: dict = {
        "what": "idle control-plane CPU, percent of one core, vassals of one process each",
        "method": "utime+stime from /proc/PID/stat over the window, after every vassal healthy and routed and "
        f"{args.settle:g} s idle; watched: run/usage-wanted touched every 5 s as `fleet status` does",
        "trees": {label: {"path": str(path), "commit": commit} for label, path, commit in trees},
        "settings": {"batch": args.batch, "settle_s": args.settle, "window_s": args.seconds, "watched_s": args.watched},
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="fleet-idle-", dir="/tmp") as tmp:
        Path(tmp).chmod(0o755)  # nginx's unprivileged workers walk through it
        for n in sizes:  # sizes outside, trees inside: before and after measured right after each other
            for label, path, commit in trees:
                row = measure(path, label, Path(tmp), n, args.batch, args.settle, args.seconds, args.watched)
                row.update(tree=label, commit=commit, loadavg_after=[round(x, 2) for x in os.getloadavg()])
                doc["runs"].append(row)
    # What the README quotes: the control plane's share per tree and size (the runs are the raw rows).
    doc["summary"] = {
        f"{row['tree']} at {row['vassals']} vassals": row["idle_cpu_pct"]["control"] for row in doc["runs"]
    }
    out = evidence.write("idle", evidence.finish(stamp), doc, out=args.out)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
