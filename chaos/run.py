"""One part's chaos (`run_part`: kill it `kills` times in a running cluster under load and measure) and the
whole run (`chaos`: every part in a fresh cluster of its own, then the results file and the table)."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from chaos.parts import PARTS, PROCESSES, Part
from harness import evidence
from harness.cluster import Cluster, base_dir, vassal_text
from harness.load import Kind, Load, Request
from harness.wait import WaitTimeout, wait_for

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "results" / "chaos"
BODY = b"x" * 1024  # each POST's body; the app answers with the byte count, which the load checks


@dataclass(frozen=True)
class Profile:
    """How hard and how long: clients of each kind, kills per part, load kept after each recovery."""

    name: str
    get_clients: int  # of each: keep-alive and new connection (raw sockets)
    post_clients: int  # of each: keep-alive and new connection (requests)
    kills: int
    settle: float  # seconds of load after each recovery, so what fails late is counted too
    recover_timeout: float = 30.0
    pause_after_failure: float = 0.05  # a refused connect returns at once: a client must not spin on it

    def describe(self) -> str:
        return (
            f"{self.get_clients} keep-alive + {self.get_clients} new-connection GET clients, "
            f"{self.post_clients} + {self.post_clients} POST clients (1 KiB), {self.kills} kill(s) per part, "
            f"{self.settle:g} s of load after each recovery, a client pauses "
            f"{self.pause_after_failure * 1000:.0f} ms after a failure"
        )


FULL = Profile("full", get_clients=8, post_clients=2, kills=3, settle=3.0)
QUICK = Profile("quick", get_clients=4, post_clients=1, kills=1, settle=1.5)


def table_name(profile: Profile) -> str:
    """chaos.md for the full run (the README's table), chaos-<mode>.md for the others."""
    return "chaos.md" if profile is FULL else f"chaos-{profile.name}.md"


def all_routed(c: Cluster, backends: tuple[str, ...]) -> bool:
    """state.json says every backend is healthy and routed, with no routing error."""
    state = c.state()
    found = state.get("backends", {})
    routed = set(state.get("routed", []))
    return not state.get("routing_error") and all(
        found.get(n, {}).get("state") == "healthy" and n in routed for n in backends
    )


def answers(url: str) -> bool:
    """A GET on a new connection is answered 200: nginx listens and routes."""
    return requests.get(url + "/", timeout=2, headers={"Connection": "close"}).status_code == 200


def _recovered(c: Cluster, part: Part, before: object) -> bool:
    try:
        replaced = part.replaced(c, before) if part.restarted else True
        return replaced and all_routed(c, part.backends) and answers(c.url)
    except (OSError, ValueError, KeyError, requests.RequestException):
        return False


def _wait_recovered(c: Cluster, part: Part, before: object, killed: float, timeout: float) -> float | None:
    """Seconds from the kill until `part` was replaced and every backend routed again; None if not in time."""
    try:
        wait_for(
            f"{part.label}: replaced and every backend routed",
            lambda: _recovered(c, part, before),
            max(0.0, killed + timeout - time.monotonic()),
        )
    except WaitTimeout:
        return None
    return time.monotonic() - killed


def _keep_loading(loads: list[Load], seconds: float) -> None:
    """Let the load run `seconds` more (measurement time, not synchronisation), and make sure it flows."""
    threading.Event().wait(seconds)
    for load in loads:
        with contextlib.suppress(WaitTimeout):
            load.wait_requests(5, timeout=10)


def _count(records: list[Request]) -> dict:
    failures: dict[str, int] = {}
    for r in records:
        if not r.ok:
            failures[f"{r.client}: {r.error}"] = failures.get(f"{r.client}: {r.error}", 0) + 1
    return {"sent": len(records), "failed": sum(failures.values()), "failures": failures}


def run_part(c: Cluster, part: Part, profile: Profile, log: Callable[[str], None] = lambda _: None) -> dict:
    """Kill `part` in the running cluster `c` (`profile.kills` times, once if nothing restarts it) under GET
    and POST load; what it cost, as one row of the results."""
    t0 = time.monotonic()
    gets = Load(
        c.url,
        mix={Kind("GET", True): profile.get_clients, Kind("GET", False): profile.get_clients},
        raw=True,
        max_seconds=3600,
        timeout=10,
        pause_after_failure=profile.pause_after_failure,
        t0=t0,
    )
    posts = Load(
        c.url,
        mix={
            Kind("POST", True, "/upload", BODY): profile.post_clients,
            Kind("POST", False, "/upload", BODY): profile.post_clients,
        },
        max_seconds=3600,
        timeout=10,
        pause_after_failure=profile.pause_after_failure,
        t0=t0,
    )
    kills = profile.kills if part.restarted else 1
    recoveries: list[float | None] = []
    with gets, posts:
        gets.wait_requests(50)
        posts.wait_requests(10)
        for i in range(kills):
            killed = time.monotonic()
            before = part.kill(c)
            took = _wait_recovered(c, part, before, killed, profile.recover_timeout)
            recoveries.append(took)
            log(
                f"  {part.key}: kill {i + 1}/{kills}: "
                + (f"routed again after {took:.2f} s" if took else "NOT recovered")
            )
            if took is None:
                break  # a cluster that did not come back is not killed again
            _keep_loading([gets, posts], profile.settle)
    records = gets.stop() + posts.stop()
    got = _count([r for r in records if r.method == "GET"])
    posted = _count([r for r in records if r.method == "POST"])
    done = [t for t in recoveries if t is not None]
    status = c.fleet("status", "--json", check=False, timeout=30)
    return {
        "part": part.key,
        "label": part.label,
        "kills": len(recoveries),
        "restarted": part.restarted,
        "gets": got["sent"],
        "gets_failed": got["failed"],
        "posts": posted["sent"],
        "posts_failed": posted["failed"],
        "failures": got["failures"] | posted["failures"],
        "routed_again_s": [None if t is None else round(t, 3) for t in recoveries],
        "routed_again_max_s": round(max(done), 3) if done else None,
        "not_recovered": recoveries.count(None),
        "recover_timeout_s": profile.recover_timeout,
        "max_latency_ms": round(max((r.latency for r in records), default=0.0) * 1000, 1),
        "status_exit": status.returncode,
        "note": part.note,
    }


def vassal_files(part: Part) -> dict[str, str]:
    return {f"{name}.ini": vassal_text(PROCESSES) for name in part.backends}


def chaos_part(parent: Path, part: Part, profile: Profile, log: Callable[[str], None]) -> dict:
    """`part`'s row, measured in a fresh cluster of its own (so one kill's aftermath never spills into the
    next part's)."""
    c = Cluster.create(parent, vassal_files(part))
    try:
        c.up()
        return run_part(c, part, profile, log)
    except Exception as e:  # a part that could not be measured is a row that says why, not a lost run
        log(f"  {part.key}: failed: {type(e).__name__}: {str(e)[:300]}")
        return {"part": part.key, "label": part.label, "error": f"{type(e).__name__}: {str(e)[:300]}"}
    finally:
        c.down()


def chaos(
    profile: Profile,
    out: Path = OUT,
    only: list[str] | None = None,
    docker: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Every part (or those in `only`), then the compose container if an engine and the images are there;
    the stamped results file written under `out` and the table (`table_name`) generated from it."""
    from chaos import compose, report

    head = evidence.start()
    started = time.monotonic()
    rows = []
    parent = base_dir()
    try:
        for part in PARTS:
            if only and part.key not in only:
                continue
            log(f"chaos: {part.label} ({part.key})")
            rows.append(chaos_part(parent, part, profile, log))
        if not only or "container" in only:
            log("chaos: a container of the compose cluster (container)")
            rows.append(compose.chaos_container(parent, profile, log) if docker else compose.skipped("--no-docker"))
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    doc = {
        "kind": "chaos",
        "stamp": evidence.finish(head),
        "mode": profile.name,
        "profile": profile.describe(),
        "seconds": round(time.monotonic() - started, 1),
        "parts": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{doc['stamp']['started'].replace(':', '')}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    report.write(path, out / table_name(profile))
    return path
