"""The parts `make chaos` kills: for each, the cluster it needs, how to kill it, and how to tell that what
was killed has been replaced. What "everything routed again" means is the same for all (chaos.run)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from fleet.core import emperors
from fleet.processes import is_alive, start_time
from harness.cluster import Cluster
from harness.procs import descendants, kill

TWO = ("backend-1", "backend-2")
ONE = ("solo",)
PROCESSES = 2  # workers per backend


@dataclass(frozen=True)
class Part:
    """One kind of kill: `kill` SIGKILLs it in `cluster` and returns what `replaced` compares against."""

    key: str
    label: str
    backends: tuple[str, ...]
    kill: Callable[[Cluster], object]
    replaced: Callable[[Cluster, object], bool]
    restarted: bool = True  # False: nothing restarts it (the row says so); it is killed once
    note: str = ""


def _master(c: Cluster, name: str) -> int:
    return int(c.stats(name)["pid"])


def _answering_master(c: Cluster, name: str, old: int) -> bool:
    with contextlib.suppress(OSError, ValueError, KeyError):
        pid = _master(c, name)
        return pid != old and pid > 0 and is_alive(pid)
    return False


def _sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def _kill_master(name: str) -> Callable[[Cluster], object]:
    def do(c: Cluster) -> object:
        pid = _master(c, name)
        _sigkill(pid)
        return pid

    return do


def _master_replaced(name: str) -> Callable[[Cluster, object], bool]:
    return lambda c, old: _answering_master(c, name, int(old))  # type: ignore[call-overload]


def _kill_worker(c: Cluster) -> object:
    pid = min(c.worker_pids("backend-1"))
    _sigkill(pid)
    return pid


def _worker_replaced(c: Cluster, old: object) -> bool:
    with contextlib.suppress(OSError, ValueError, KeyError):
        pids = c.worker_pids("backend-1")
        return old not in pids and len(pids) == PROCESSES and all(p > 0 and is_alive(p) for p in pids)
    return False


def _kill_part(part: str) -> Callable[[Cluster], object]:
    def do(c: Cluster) -> object:
        pid = c.pids()[part]
        _sigkill(pid)
        return pid

    return do


def _part_replaced(part: str) -> Callable[[Cluster, object], bool]:
    def check(c: Cluster, old: object) -> bool:
        pid = c.pids().get(part)
        return pid is not None and pid != old and is_alive(pid)

    return check


def _kill_nginx_group(c: Cluster) -> object:
    """SIGKILL nginx's master and workers at once, as an OOM kill of the group or a crash does."""
    pid = c.pids()["nginx"]
    group = os.getpgid(pid)
    if group == pid:  # nginx leads its own group: only nginx is in it
        os.killpg(group, signal.SIGKILL)
    else:  # never kill a group that holds the supervisor too
        kill([pid, *descendants(pid)])
    return pid


def _kill_emperor(c: Cluster) -> object:
    """SIGKILL one Emperor: the one running longest, so that successive kills take each in turn."""
    pids = c.pids()
    names = sorted(n for n in pids if emperors.is_emperor(n))
    name = min(names, key=lambda n: (start_time(pids[n]) or 0, n))
    # Its vassals exit with it (uWSGI); the other Emperors' vassals serve on, and nginx retries on them.
    masters = {b: _master(c, b) for b in TWO if emperors.owner_name(b, len(names)) == name}
    _sigkill(pids[name])
    return (name, pids[name], masters)


def _emperor_replaced(c: Cluster, before: object) -> bool:
    name, old, masters = before  # type: ignore[misc]
    # Replaced means a new Emperor and a new master for each vassal of its share.
    return _part_replaced(name)(c, old) and all(_answering_master(c, n, m) for n, m in masters.items())


def _kill_control(c: Cluster) -> object:
    pid = c.pids()["control"]
    _sigkill(pid)
    return (pid, time.time())


def _control_replaced(c: Cluster, before: object) -> bool:
    old, killed_at = before  # type: ignore[misc]
    if not _part_replaced("control")(c, old):
        return False
    state = c.state()
    # state.json is the new control plane's, written after the kill: not the dead one's last word.
    return state.get("control_pid") == c.pids()["control"] and float(state.get("written_at", 0)) > killed_at


PARTS: tuple[Part, ...] = (
    Part(
        "vassal-master", "a vassal's master (2 backends)", TWO, _kill_master("backend-1"), _master_replaced("backend-1")
    ),
    Part("only-vassal", "the only vassal's master (1 backend)", ONE, _kill_master("solo"), _master_replaced("solo")),
    Part("worker", "a worker (2 backends)", TWO, _kill_worker, _worker_replaced),
    Part("nginx-master", "nginx's master", TWO, _kill_part("nginx"), _part_replaced("nginx")),
    Part("nginx-group", "nginx's whole process group", TWO, _kill_nginx_group, _part_replaced("nginx")),
    Part(
        "emperor",
        "an Emperor (2 backends, one per Emperor)",
        TWO,
        _kill_emperor,
        _emperor_replaced,
        note="the killed Emperor's vassals exit with it; the other's serve while it and they restart",
    ),
    Part("control", "the control plane", TWO, _kill_control, _control_replaced),
    Part(
        "supervisor",
        "the supervisor (`fleet up --detach`)",
        TWO,
        _kill_part("supervisor"),
        lambda c, old: False,
        restarted=False,
        note="nothing restarts the supervisor: `fleet status` says `supervisor DOWN`; the rest serves on",
    ),
)

BY_KEY = {p.key: p for p in PARTS}
