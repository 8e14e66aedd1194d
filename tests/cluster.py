"""A real fleet cluster in a temporary copy of the tree, on a free port, for integration tests.

Every cluster is stopped by `fleet down` and then, whatever is left, by process group.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import requests

from fleet.processes import group_members
from tests.poll import wait_for

REPO = Path(__file__).resolve().parent.parent
COPIED = ("app", "bin", "emperor.ini", "fleet", "nginx", "vassals")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_dir() -> Path:
    """A temp folder nginx's unprivileged workers can walk through (pytest's own is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="fleet-test-", dir="/tmp"))
    path.chmod(0o755)
    return path


class Cluster:
    def __init__(self, root: Path, port: int):
        self.root = root
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.vassals = root / "vassals"
        self.run_dir = root / "run"
        self.groups: set[int] = set()

    @classmethod
    def create(cls, parent: Path, vassal_files: dict[str, str] | None = None) -> Cluster:
        root = Path(tempfile.mkdtemp(prefix="cluster-", dir=parent))
        root.chmod(0o755)
        for name in COPIED:
            src = REPO / name
            if src.is_dir():
                shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, root / name)
        if vassal_files is not None:
            for old in (root / "vassals").glob("*.ini"):
                old.unlink()
            for name, text in vassal_files.items():
                (root / "vassals" / name).write_text(text)
        return cls(root, free_port())

    # ---- driving it ---------------------------------------------------------------------------------

    def fleet(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "fleet", "--root", str(self.root), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "FLEET_PORT": str(self.port)},
        )
        if check and proc.returncode != 0:
            command = " ".join(args)
            output = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            raise AssertionError(f"fleet {command} exited {proc.returncode}\n{output}\n{self.logs()}")
        return proc

    def up(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = self.fleet("up", "--detach", "--port", str(self.port), *extra, check=check)
        self.groups.update(self.pids().values())
        return proc

    def down(self) -> None:
        self.fleet("down", check=False, timeout=120)
        self.kill_leftovers()

    def pids(self) -> dict[str, int]:
        try:
            return json.loads((self.run_dir / "processes-all.json").read_text())["pids"]
        except (OSError, ValueError, KeyError):
            return {}

    def processes(self) -> list[int]:
        """Live processes in the process groups `fleet up` started (vassals share the Emperor's)."""
        return sorted(pid for group in self.groups for pid in group_members(group))

    def kill_leftovers(self) -> None:
        """Backstop after `fleet down`: SIGKILL whatever is left in this cluster's process groups."""
        for group in self.groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # ---- observing it -------------------------------------------------------------------------------

    def state(self) -> dict:
        try:
            return json.loads((self.run_dir / "state.json").read_text())
        except (OSError, ValueError):
            return {"routed": [], "backends": {}, "counters": {}}

    def backend_state(self, name: str) -> str | None:
        return self.state()["backends"].get(name, {}).get("state")

    def stats(self, name: str) -> dict:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(str(self.run_dir / "stats" / f"{name}.sock"))
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return json.loads(data)

    def worker_pids(self, name: str) -> set[int]:
        return {w["pid"] for w in self.stats(name)["workers"]}

    def get(self, path: str = "/", timeout: float = 5) -> requests.Response:
        return requests.get(self.url + path, timeout=timeout, headers={"Connection": "close"})

    def backends_answering(self, tries: int = 20) -> set[str]:
        seen = set()
        for _ in range(tries):
            r = self.get()
            if r.status_code == 200:
                seen.add(r.json()["backend"])
        return seen

    def logs(self) -> str:
        parts = []
        for path in sorted((self.run_dir / "logs").glob("*.log")):
            if path.name == "nginx-access.log":
                continue
            lines = path.read_text(errors="replace").splitlines()[-40:]
            parts.append(f"---- {path.name} (last {len(lines)} lines) ----\n" + "\n".join(lines))
        parts.append("---- state.json ----\n" + json.dumps(self.state(), indent=1))
        return "\n".join(parts)

    def wait_for(self, predicate: Callable[[], object], what: str, timeout: float = 30.0) -> object:
        """Poll `predicate` until truthy; on timeout fail with the cluster's logs."""
        ignore = (OSError, ValueError, KeyError, requests.RequestException)
        return wait_for(what, predicate, timeout, ignore=ignore, details=self.logs)

    def write_vassal(self, name: str, text: str = "[uwsgi]\nprocesses = 1\n") -> Path:
        """Drop a vassal file atomically, as a careful user (or `fleet add`) would."""
        path = self.vassals / name
        tmp = self.vassals / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, path)
        return path
