"""One soak: a fleet cluster in a temporary copy of the tree, churned while clients run and a sampler
watches every fleet process; then `fleet down`, the leftovers, the verdicts and the report."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from fleet.processes import cmdline
from harness import evidence
from harness.cluster import Cluster, copy_tree
from harness.load import Kind, Load, Request
from harness.ports import free_port
from harness.wait import WaitTimeout
from soak.churn import KINDS, Churn
from soak.report import Report, write
from soak.sampler import Sampler
from soak.verdict import Checkpoint, Failure, Verdict, judge

REPO = Path(__file__).resolve().parent.parent
BODY = b"s" * 2048
# The soak's clients: GET / and POST /upload, on one keep-alive connection or a new one per request;
# how many client threads of each kind.
MIX = {
    Kind("GET", keepalive=True): 2,
    Kind("GET", keepalive=False): 2,
    Kind("POST", keepalive=True, path="/upload", body=BODY): 1,
    Kind("POST", keepalive=False, path="/upload", body=BODY): 1,
}


def soak(
    minutes: float = 10.0,
    seed: int = 1,
    out: Path | None = None,
    log: Callable[[str], None] = print,
    sample_every: float = 2.0,
) -> Report:
    """Churn a fresh two-backend cluster for `minutes`; write the report to `out` (if given) and return it."""
    stamp = evidence.start(REPO)
    with tempfile.TemporaryDirectory(prefix="fleet-soak-", dir="/tmp") as tmp:
        Path(tmp).chmod(0o755)  # nginx's unprivileged workers walk down to run/sockets
        cluster = Cluster(copy_tree(REPO, Path(tmp) / "fleet"), free_port())
        cluster.set_vassals(["backend-1", "backend-2"], processes=2)
        log(f"soak: {minutes:g} min, seed {seed}, cluster at {cluster.root} on port {cluster.port}")
        clients = sampler = churn = None
        checkpoints: list[Checkpoint] = []
        aborted = ""
        leftovers: list[str] = []
        try:
            cluster.up(timeout=120)
            t0 = time.monotonic()
            sampler = Sampler(cluster.layout, t0, sample_every).start()
            clients = Load(cluster.url, mix=MIX, max_seconds=math.inf, pause_after_failure=0.01, t0=t0).start()
            churn = Churn(cluster, seed, t0, log)
            try:
                for quarter in (1, 2, 3, 4):
                    # The first checkpoint comes after the warm-up: a quarter of the run, one step of each kind.
                    churn.run(until=t0 + minutes * 60 * quarter / 4, at_least=len(KINDS))
                    checkpoints.append(checkpoint(churn, sampler, f"{quarter}/4", log))
            except (WaitTimeout, TimeoutError, OSError) as e:  # the cluster did not settle: a finding, reported
                aborted = f"{type(e).__name__}: {e}"
                log(f"soak: stopped early: {aborted}")
            duration = time.monotonic() - t0
        finally:
            for part in (clients, sampler):
                if part is not None:
                    part.stop()
            leftovers = stop(cluster, log)
    sent = clients.stop()
    ok = [r for r in sent if r.ok]
    report = Report(
        config={
            "minutes": minutes,
            "seed": seed,
            "clients": {kind.name: n for kind, n in MIX.items()},
            "kinds": list(KINDS),
        },
        duration=duration,
        steps=churn.steps,
        failures=[failure(r) for r in sent if not r.ok],
        readings=sampler.readings,
        checkpoints=checkpoints,
        ok_by_client=dict(Counter(r.client for r in ok)),
        ok_per_second=dict(Counter(int(r.start) for r in ok)),
        latency_ms=Counter(int(r.latency * 1000) for r in ok),
        backends=dict(Counter(r.backend for r in ok)),
        verdicts=[],
        figures={},
        leftovers=leftovers,
    )
    args = (report.failures, report.steps, checkpoints, report.ok_by_client, report.config["clients"], leftovers)
    report.verdicts, report.figures = judge(*args)
    report.verdicts.insert(0, Verdict("the soak ran to its end", not aborted, aborted or f"{duration:.0f} s"))
    if out is not None:
        write(report, out, evidence.finish(stamp))
    return report


def failure(r: Request) -> Failure:
    """A failed request as the report keeps it."""
    detail = f"{r.exception}: {r.detail}" if r.exception else r.detail
    return Failure(r.start, r.end, r.client, r.error, detail)


def checkpoint(churn: Churn, sampler: Sampler, label: str, log: Callable[[str], None]) -> Checkpoint:
    """The cluster back as it started, then three samples of it (half a second apart: the sampling period)."""
    churn.back_to_base()
    readings = []
    for i in range(3):
        if i:
            time.sleep(0.5)  # the spacing of the samples, not a wait for anything
        readings.extend(sampler.sample())
    point = Checkpoint(label, round(churn.now(), 2), tuple(readings))
    log(f"[{point.t:7.1f} s] checkpoint {label}: " + ", ".join(
        f"{r.role} {r.pss / 2**20:.1f} MiB {r.fds} fds" for r in readings[-len(readings) // 3 :] if r.pid
    ))  # fmt: skip
    return point


def stop(cluster: Cluster, log: Callable[[str], None]) -> list[str]:
    """`fleet down`, then whatever of the cluster still runs: reported, and killed by pid."""
    out = cluster.fleet("down", timeout=180, check=False)
    if out.returncode != 0:
        log(f"soak: fleet down exited {out.returncode}: {out.stderr.strip()[-300:]}")
    left = cluster.own_processes()
    described = [f"pid {pid}: {cmdline(pid)[:120]}" for pid in left]
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return described
