"""Helpers for the Swarm tests: a single-node swarm, a copy of the tree deployed as a stack, and a watcher
that records which cell answered and when."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import requests

from harness.wait import wait_for
from tests.e2e.published import Published

LOCK = Path("/tmp/fleet-e2e-swarm.lock")  # one swarm test run per engine at a time
DEPLOY_DEADLINE = 120.0
REMOVE_DEADLINE = 120.0


# Run inside a container: how many requests its vassals' workers are executing right now.
BUSY_CORES = """
import glob, json, socket
busy = 0
for path in glob.glob("/srv/fleet/run/stats/*.sock"):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    try:
        s.connect(path)
    except OSError:
        continue
    data = b"".join(iter(lambda: s.recv(65536), b""))
    for worker in json.loads(data).get("workers", []):
        busy += sum(core.get("in_request", 0) for core in worker.get("cores", []))
print(busy)
"""

# Run inside the edge: its nginx's worker pids (they change only if nginx reloads).
NGINX_WORKERS = """
pid = open("/srv/fleet/run/edge/nginx.pid").read().strip()
print(open(f"/proc/{pid}/task/{pid}/children").read().strip())
"""


def docker(*args: str, timeout: float = 120.0, check: bool = True, env: dict | None = None, both: bool = False) -> str:
    """`docker ARGS`' output (stdout, or stdout and stderr with `both`: `service logs` uses both)."""
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"`docker {' '.join(args)}` exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return (proc.stdout + proc.stderr if both else proc.stdout).strip()


def swarm_state() -> tuple[str, bool]:
    """(LocalNodeState: inactive, active, pending, error, locked; whether this node is a manager)."""
    out = docker("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}", timeout=60)
    state, _, manager = out.partition(" ")
    return state, manager == "true"


class EngineLock:
    """An exclusive lock on this machine, so that two runs never share (and then leave) one swarm."""

    def __enter__(self) -> EngineLock:
        self.file = open(LOCK, "w")

        def take() -> bool:
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        wait_for(f"another Swarm test run to release {LOCK}", take, 600, interval=0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def started_at(container: str) -> float:
    """When the container started (epoch seconds), from docker's RFC 3339 nanosecond time."""
    text = docker("inspect", "-f", "{{.State.StartedAt}}", container)
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))


class Stack(Published):
    """docker-stack.yml from a copy of the tree, deployed as stack `name`."""

    def __init__(self, root: Path, name: str, port: int, vassals: Path, tag: str):
        self.name, self.vassals, self.tag = name, vassals, tag
        env = {
            **os.environ,
            "FLEET_PORT": str(port),
            "FLEET_VASSALS": str(vassals),
            "FLEET_IMAGE_TAG": tag,
            "FLEET_CELLS": "1",
        }
        super().__init__(root, port, env)

    def deploy(self) -> None:
        docker("stack", "deploy", "-c", str(self.root / "docker-stack.yml"), self.name, env=self.env)

    def cell_containers(self) -> dict[str, str]:
        """{host name: container id} of the running cells (a container's host name is its short id)."""
        out = docker("ps", "-q", "--no-trunc", "--filter", f"label=com.docker.swarm.service.name={self.name}_cell")
        return {cid[:12]: cid for cid in out.split()}

    def edge_container(self) -> str:
        out = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={self.name}_edge")
        assert out, "no running edge container"
        return out.split()[0]

    def edge_state(self) -> dict:
        """The edge's run/edge/state.json: its cells (address, host, state) and what it routes."""
        return json.loads(docker("exec", self.edge_container(), "cat", "/srv/fleet/run/edge/state.json"))

    def edge_nginx_workers(self) -> str:
        return docker("exec", self.edge_container(), "python3", "-c", NGINX_WORKERS)

    def busy(self, container: str) -> int:
        return int(docker("exec", container, "python3", "-c", BUSY_CORES))

    def logs(self) -> str:
        parts = []
        for service in ("edge", "cell"):
            proc = subprocess.run(
                ["docker", "service", "logs", "--timestamps", "--tail", "300", f"{self.name}_{service}"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            parts.append(f"--- {service} ---\n{proc.stdout}{proc.stderr}")
        parts.append(docker("service", "ps", "--no-trunc", f"{self.name}_cell", f"{self.name}_edge", check=False))
        return "\n".join(parts)

    def leftovers(self) -> list[str]:
        label = f"label=com.docker.stack.namespace={self.name}"
        found = docker("ps", "-a", "-q", "--filter", label).split()
        found += docker("service", "ls", "-q", "--filter", label).split()
        found += docker("network", "ls", "-q", "--filter", label).split()
        return found

    def remove(self) -> None:
        docker("stack", "rm", self.name, check=False)
        wait_for(f"stack {self.name} removed", lambda: not self.leftovers(), REMOVE_DEADLINE, interval=0.5)

    def remove_images(self) -> None:
        docker("rmi", "--no-prune", f"fleet-cell:{self.tag}", f"fleet-edge:{self.tag}", check=False)


class Watcher:
    """One client asking `GET /` through the edge on new connections: records when each host (cell) first
    and last answered, and every failure."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.pairs: set[tuple[str, str]] = set()  # (host, backend) seen
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):  # ~50 requests/s: enough to see every cell, light on 2 cores
            try:
                resp = self.stack.get("/", timeout=10)
                if resp.status_code != 200:
                    self.failures.append(f"HTTP {resp.status_code}: {resp.text[:120]}")
                    continue
                body, now = resp.json(), time.time()
            except (requests.RequestException, ValueError) as e:
                self.failures.append(f"{type(e).__name__}: {e}")
                continue
            self.first.setdefault(body["host"], now)
            self.last[body["host"]] = now
            self.pairs.add((body["host"], body["backend"]))

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
