"""Hot-add and removal latency: fleet (file drop -> first answer through nginx) vs the uWSGI Emperor alone.

fleet: a file `vassals/NAME.ini` is written atomically into a running cluster; pollers send GET / through
nginx back to back (a new connection each) until one is answered by NAME. Then the file is deleted and
the pollers go on: drop-to-unrouted is the time from the delete to the start of the first request after
which nginx never again chose NAME (within a settle window), with failed requests counted.

Emperor alone: `uwsgi --emperor DIR/*.ini` at its defaults (emperor-freq 3 s, no control plane), a
vassal with a unix socket; file drop to its socket answering a uwsgi-protocol GET /, and delete to its
socket refusing.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

from bench import client, stats
from bench.cluster import Cluster
from bench.loadgen import LoadGen, describe
from bench.procs import Procs, wait_until
from bench.servers import tool
from fleet.layout import write_atomically

Log = Callable[[str], None]


def fleet_trials(cluster: Cluster, trials: int, log: Log, settle: float = 2.0) -> list[dict]:
    """`trials` add/remove cycles against a running cluster; one dict per trial (seconds)."""
    body = (cluster.vassals / "backend-1.ini").read_text()
    results = []
    for i in range(1, trials + 1):
        name = f"hot-{i:02d}"
        path = cluster.vassals / f"{name}.ini"
        gen = LoadGen(cluster.port, concurrency=4, max_seconds=120).start()
        time.sleep(0.2)
        write_atomically(path, body)
        dropped = gen.now()  # the file appeared at the rename, write_atomically's last step (after an fsync)
        routed_at = _wait_for_backend(gen, name, dropped, timeout=60)
        time.sleep(0.3)
        removed = gen.now()
        path.unlink()
        _wait_unrouted(gen, name, removed, settle, timeout=60)
        samples = gen.stop()
        after = [s for s in samples if s.start >= removed]
        last_hit = max((s.start for s in after if s.backend == name), default=None)
        later = [s.start for s in after if last_hit is None or s.start > last_hit]
        unrouted_at = min(later) if later else removed
        during = [s for s in samples if s.start >= dropped]
        trial = {
            "name": name,
            "add_s": routed_at - dropped,
            "remove_s": max(0.0, unrouted_at - removed),
            "failed": describe(during)["failed"],
            "failures": describe(during)["failures"],
        }
        results.append(trial)
        log(
            f"  trial {i}/{trials}: routed {trial['add_s'] * 1000:6.0f} ms after the drop; "
            f"unrouted {trial['remove_s'] * 1000:6.0f} ms after the delete; failed {trial['failed']}"
        )
        _wait_gone(cluster, name)
        time.sleep(random.uniform(0.0, 1.0))  # decorrelate from any periodic timer
    return results


def _wait_for_backend(gen: LoadGen, name: str, since: float, timeout: float) -> float:
    """When (on `gen`'s clock) the first request started at or after `since` was answered by `name`."""
    seen = 0

    def first_answer() -> float | None:
        nonlocal seen
        fresh = gen.recorded(seen)
        seen += len(fresh)
        return min((s.start + s.latency for s in fresh if s.backend == name and s.start >= since), default=None)

    return wait_until(first_answer, timeout, 0.005, f"{name} to answer through nginx")


def _wait_unrouted(gen: LoadGen, name: str, since: float, settle: float, timeout: float) -> None:
    """Return once no request started in the last `settle` seconds went to `name`."""

    def settled() -> bool:
        now = gen.now()
        last = max((s.start for s in gen.recorded() if s.start >= since and s.backend == name), default=since)
        return now - last >= settle

    wait_until(settled, timeout, 0.1, f"{name} to be unrouted after its file was deleted")


def _wait_gone(cluster: Cluster, name: str) -> None:
    sock = cluster.layout.socket(name)
    try:
        wait_until(lambda: not sock.exists(), 30, 0.05, f"{name}'s socket to go")
    except TimeoutError:
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
    return wait_until(lambda: predicate() and time.perf_counter(), timeout, interval, what)


def summarize(trials: list[dict]) -> dict:
    add = [t["add_s"] * 1000 for t in trials]
    rem = [t["remove_s"] * 1000 for t in trials]
    out = {"add_ms": stats.summary(add), "remove_ms": stats.summary(rem)}
    if trials and "failed" in trials[0]:
        out["failed_total"] = sum(t["failed"] for t in trials)
    return out
