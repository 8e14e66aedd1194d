"""Hot-add and removal latency: fleet (file drop -> first answer through nginx) vs the uWSGI Emperor alone.

fleet: a file `vassals/NAME.ini` is written atomically into a running cluster; 4 pollers send GET / through
nginx back to back (2 with a new connection each, 2 on keep-alive connections) until one is answered by
NAME. Then the file is deleted and the pollers go on: drop-to-unrouted is the time from the delete to the
start of the first request after which nginx never again chose NAME (within a settle window), with failed
requests counted (keep-alive failures by wrk's kinds). Each add is split into where its time went (see
`breakdown`): the control plane seeing the file, the Emperor spawning the vassal, the app's import, the
health probe, and the route to the first answer.

Emperor alone: `uwsgi --emperor DIR/*.ini` at its defaults (emperor-freq 3 s, no control plane), a
vassal with a unix socket; file drop to its socket answering a uwsgi-protocol GET /, and delete to its
socket refusing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

from bench import client, stats
from bench.background import background_load
from bench.servers import tool
from fleet.layout import write_atomically
from harness.cluster import Cluster
from harness.load import Load, Request, describe
from harness.procs import Procs
from harness.wait import WaitTimeout, wait_for

Log = Callable[[str], None]


def fleet_trials(cluster: Cluster, trials: int, log: Log, settle: float = 2.0) -> list[dict]:
    """`trials` add/remove cycles against a running cluster; one dict per trial (seconds)."""
    body = (cluster.vassals / "backend-1.ini").read_text()
    results = []
    for i in range(1, trials + 1):
        name = f"hot-{i:02d}"
        path = cluster.vassals / f"{name}.ini"
        gen = background_load(cluster, new=2, keepalive=2, max_seconds=120)
        time.sleep(0.2)
        write_atomically(path, body)
        dropped = gen.now()  # the file appeared at the rename, write_atomically's last step (after an fsync)
        dropped_wall = time.time()
        routed_at, first = _wait_for_backend(gen, name, dropped, timeout=60)
        parts = breakdown(cluster, name, dropped_wall, dropped_wall + (routed_at - dropped), first)
        time.sleep(0.3)
        removed = gen.now()
        path.unlink()
        _wait_unrouted(gen, name, removed, settle, timeout=60)
        samples = gen.stop()
        after = [s for s in samples if s.start >= removed]
        last_hit = max((s.start for s in after if s.backend == name), default=None)
        later = [s.start for s in after if last_hit is None or s.start > last_hit]
        unrouted_at = min(later) if later else removed
        during = describe([s for s in samples if s.start >= dropped])
        trial = {
            "name": name,
            "add_s": routed_at - dropped,
            "remove_s": max(0.0, unrouted_at - removed),
            "failed": during["failed"],
            "failures": during["failures"],
            "keepalive_failed": during.get("keepalive", {}).get("failed", 0),
            "breakdown_s": parts,
        }
        results.append(trial)
        split = ", ".join(f"{k} {v * 1000:.0f}" for k, v in parts.items())
        log(
            f"  trial {i}/{trials}: routed {trial['add_s'] * 1000:6.0f} ms after the drop ({split} ms); "
            f"unrouted {trial['remove_s'] * 1000:6.0f} ms after the delete; failed {trial['failed']}"
        )
        _wait_gone(cluster, name)
        time.sleep(random.uniform(0.0, 1.0))  # decorrelate from any periodic timer
    return results


def _wait_for_backend(gen: Load, name: str, since: float, timeout: float) -> tuple[float, Request]:
    """When (on `gen`'s clock) the first request started at or after `since` was answered by `name`, and it."""
    seen = 0

    def first_answer() -> tuple[float, Request] | None:
        nonlocal seen
        fresh = gen.recorded(seen)
        seen += len(fresh)
        hits = [s for s in fresh if s.backend == name and s.start >= since]
        first = min(hits, key=lambda s: s.start + s.latency, default=None)
        return (first.start + first.latency, first) if first else None

    return wait_for(f"{name} to answer through nginx", first_answer, timeout, 0.005, ignore=(OSError,))


BOOT_TIME = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _process_started(pid: int) -> float | None:
    """Wall-clock start of a process (10 ms resolution), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return BOOT_TIME + int(fields[19]) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _events(cluster: Cluster, name: str) -> dict[str, float]:
    """Wall-clock time of `name`'s first transition into each state, from the control plane's event log."""
    found: dict[str, float] = {}
    try:
        lines = cluster.layout.events_file.read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("name") == name and ev.get("new") and ev["new"] not in found:
            found[ev["new"]] = float(ev["at"])
    return found


def breakdown(cluster: Cluster, name: str, dropped: float, answered: float, first: Request) -> dict[str, float]:
    """Where an add's time went (seconds, wall clock), each step from the previous mark:

    - spawn: drop to the vassal's master process starting (inotify, the control plane's pass, the Emperor
      woken to rescan, its on-demand socket, the first connection to it: the probe; then the fork);
      10 ms resolution;
    - import: to the app module executed (the launcher, uWSGI's start, `import flask`, the app);
    - healthy: to the control plane's `healthy` transition (workers forked, the probe answered, its pass);
    - routed: to the first answer through nginx (slots re-pointed, the pollers' next request).
    Beside the chain, `starting`: drop to the control plane's `starting` transition, which comes after its
    first pass, so after a first probe that may have waited up to the probe timeout.
    """
    events = _events(cluster, name)
    master = _parent(int(first.pid)) if first.pid else None
    spawned = _process_started(master) if master else None
    marks = [("spawn", spawned), ("import", first.loaded_at), ("healthy", events.get("healthy")), ("routed", answered)]
    out: dict[str, float] = {}
    last = dropped
    for key, at in marks:
        if at is None:
            continue
        out[key] = round(at - last, 4)
        last = at
    if "starting" in events:
        out["starting"] = round(events["starting"] - dropped, 4)
    return out


def _wait_unrouted(gen: Load, name: str, since: float, settle: float, timeout: float) -> None:
    """Return once no request started in the last `settle` seconds went to `name`."""

    def settled() -> bool:
        now = gen.now()
        last = max((s.start for s in gen.recorded() if s.start >= since and s.backend == name), default=since)
        return now - last >= settle

    wait_for(f"{name} to be unrouted after its file was deleted", settled, timeout, 0.1, ignore=(OSError,))


def _wait_gone(cluster: Cluster, name: str) -> None:
    sock = cluster.layout.socket(name)
    try:
        wait_for(f"{name}'s socket to go", lambda: not sock.exists(), 30, 0.05, ignore=(OSError,))
    except WaitTimeout:
        pass


# ---- the Emperor alone --------------------------------------------------------------------------


def emperor_trials(procs: Procs, app_dir: Path, work: Path, trials: int, log: Log, freq: int = 3) -> list[dict]:
    """The Emperor at emperor-freq `freq` (its default: 3), no control plane, polled over the socket."""
    vassals = work / "vassals"
    socks = work / "sockets"
    vassals.mkdir(parents=True, exist_ok=True)
    socks.mkdir(parents=True, exist_ok=True)
    argv = [tool("uwsgi"), "--emperor", f"{vassals}/*.ini", f"--emperor-freq={freq}", "--master"]
    emperor = procs.start(argv, "emperor-alone", work / "emperor.log", signal.SIGINT)
    time.sleep(0.5)
    results = []
    for i in range(1, trials + 1):
        name = f"hot-{i:02d}"
        sock = socks / f"{name}.sock"
        ini = (
            "[uwsgi]\n"
            f"socket = {sock}\n"
            "master = true\nprocesses = 2\nthreads = 2\nlisten = 1024\n"
            f"chdir = {app_dir}\nmodule = wsgi\nneed-app = true\ndisable-logging = true\n"
            f"env = FLEET_VASSAL={name}\nvacuum = true\n"
        )
        write_atomically(vassals / f"{name}.ini", ini)
        dropped = time.perf_counter()  # as in fleet_trials: the file appeared at write_atomically's rename
        answered = _poll(lambda s=sock: client.uwsgi_get(str(s), "/", timeout=2).status == 200, f"{name} to answer", 60)
        _random_phase(freq)
        removed = time.perf_counter()
        (vassals / f"{name}.ini").unlink()
        gone = _poll(lambda s=sock: not _answers(s), f"{name} to stop answering", 60)
        trial = {"name": name, "add_s": answered - dropped, "remove_s": gone - removed}
        results.append(trial)
        log(
            f"  trial {i}/{trials}: answering {trial['add_s'] * 1000:6.0f} ms after the drop; "
            f"gone {trial['remove_s'] * 1000:6.0f} ms after the delete"
        )
        _random_phase(freq)
        if not emperor.alive():
            raise RuntimeError(f"the Emperor died:\n{emperor.tail()}")
    emperor.stop()
    return results


def _random_phase(freq: int) -> None:
    """Let the Emperor settle, then wait a random part of its scan period.

    Any event (a vassal starting or dying) wakes the Emperor and restarts its `freq`-second scan
    cycle; without this the next drop would land at a fixed phase of that cycle and look too fast.
    """
    time.sleep(0.5 + random.uniform(0.0, freq))


def _answers(sock: Path) -> bool:
    try:
        return client.uwsgi_get(str(sock), "/", timeout=2).status == 200
    except OSError:
        return False


def _poll(predicate: Callable[[], bool], what: str, timeout: float, interval: float = 0.005) -> float:
    """time.perf_counter() when `predicate` first holds (polled every `interval` s)."""
    return wait_for(what, lambda: predicate() and time.perf_counter(), timeout, interval, ignore=(OSError,))


def summarize(trials: list[dict]) -> dict:
    add = [t["add_s"] * 1000 for t in trials]
    rem = [t["remove_s"] * 1000 for t in trials]
    out = {"add_ms": stats.summary(add), "remove_ms": stats.summary(rem)}
    if trials and "failed" in trials[0]:
        out["failed_total"] = sum(t["failed"] for t in trials)
    return out
