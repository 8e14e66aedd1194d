"""A real fleet cluster in a temporary copy of the tree, on a free port, driven through the `fleet` command
line: for integration tests, benchmarks and the soak.

The checkout's own vassals/ and run/ are never touched. Every cluster is stopped by `fleet down` and then,
whatever is left, by process group and by pid (whatever runs from its folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

from fleet.layout import Layout, write_atomically
from fleet.processes import cmdline, group_members, process_table
from fleet.vassalfile import vassals
from harness.ports import free_port
from harness.wait import wait_for

REPO = Path(__file__).resolve().parent.parent
COPIED = ("app", "bin", "emperor.ini", "fleet", "nginx", "vassals")  # what Cluster.create copies
IGNORED = shutil.ignore_patterns(".venv", "run", ".git", "results", "__pycache__", ".pytest_cache", ".ruff_cache")


def copy_tree(src: Path, dest: Path) -> Path:
    """Copy the whole project tree `src` to `dest` for an independent cluster (bench edits such copies)."""
    shutil.copytree(src, dest, ignore=IGNORED, symlinks=True)
    return dest


def vassal_text(processes: int | None = None, extra: dict[str, str] | None = None) -> str:
    lines = ["; written by the harness", "[uwsgi]"]
    if processes is not None:
        lines.append(f"processes = {processes}")
    for key, value in (extra or {}).items():
        lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def fleet_available(root: Path) -> bool:
    """Whether the fleet package at `root` has its command line yet."""
    return (root / "fleet" / "cli.py").is_file()


def base_dir() -> Path:
    """A temp folder nginx's unprivileged workers can walk through (pytest's own is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="fleet-test-", dir="/tmp"))
    path.chmod(0o755)
    return path


class Cluster:
    """One fleet cluster at `root` on `port`: `up()`/`down()` through the CLI, leftovers stopped by process
    group and pid; what it runs observed through its files, stats sockets and HTTP."""

    def __init__(self, root: Path, port: int, python: str = sys.executable):
        self.root = root
        self.port = port
        self.python = python
        self.url = f"http://127.0.0.1:{port}"
        self.layout = Layout(root)
        self.vassals = root / "vassals"
        self.run_dir = root / "run"
        self.log = root / "fleet-commands.log"  # every `fleet` command run and its output
        self.admin = ""  # the admin listener's URL, once up_with_admin() chose its port
        self.groups: set[int] = set()

    @classmethod
    def create(cls, parent: Path, vassal_files: dict[str, str] | None = None) -> Cluster:
        """A cluster in a new folder under `parent` holding what fleet runs from (COPIED), on a free port;
        with `vassal_files` ({name: text}), vassals/ holds exactly those."""
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

    def set_vassals(self, names: list[str], processes: int | None = None, extra: dict[str, str] | None = None) -> None:
        """Make vassals/ hold exactly `names` (all with the same body)."""
        for old in vassals.present(self.vassals):
            self.layout.vassal_file(old).unlink()
        for name in names:
            write_atomically(self.vassals / f"{name}.ini", vassal_text(processes, extra))

    # ---- driving it ---------------------------------------------------------------------------------

    def fleet(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """Run `fleet --root <root> <args>` (in its own session, from the copy); with `check`, fail on a
        non-zero exit with its output and the cluster's logs."""
        started = time.monotonic()
        proc = subprocess.run(
            [self.python, "-m", "fleet", "--root", str(self.root), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "FLEET_PORT": str(self.port)},
        )
        with open(self.log, "a") as f:
            f.write(f"$ {' '.join(args)}  (rc={proc.returncode}, {time.monotonic() - started:.2f} s)\n")
            f.write(proc.stdout + proc.stderr)
        if check and proc.returncode != 0:
            command = " ".join(args)
            output = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            raise AssertionError(f"fleet {command} exited {proc.returncode}\n{output}\n{self.logs()}")
        return proc

    def up(self, *extra: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
        """`fleet up --detach` (it returns once every vassal is healthy); `timeout` is passed on as --timeout."""
        wait = ("--timeout", str(timeout)) if timeout is not None else ()
        limit = timeout + 30 if timeout is not None else 120
        try:
            return self.fleet("up", "--detach", "--port", str(self.port), *wait, *extra, check=check, timeout=limit)
        finally:
            self.groups.update(self.pids().values())

    def up_with_admin(self, *extra: str, **options) -> subprocess.CompletedProcess:
        """`up()` with the admin listener on a free port (`self.admin`): its default, the public port + 1,
        may be another process's."""
        port = free_port()
        self.admin = f"http://127.0.0.1:{port}"
        return self.up("--admin-port", str(port), *extra, **options)

    def down(self) -> None:
        """`fleet down`, then SIGKILL whatever of the cluster is left."""
        try:
            self.fleet("down", check=False, timeout=120)
        finally:
            self.kill_leftovers()

    def status(self) -> list[dict]:
        out = self.fleet("status", "--json", timeout=30)
        data = json.loads(out.stdout)
        return data if isinstance(data, list) else data.get("backends", data.get("vassals", []))

    def pids(self) -> dict[str, int]:
        """{part: pid} as `fleet up` recorded them (run/processes-all.json), alive or not."""
        try:
            return json.loads((self.run_dir / "processes-all.json").read_text())["pids"]
        except (OSError, ValueError, KeyError):
            return {}

    def processes(self) -> list[int]:
        """Live processes in the process groups `fleet up` started (vassals share the Emperor's)."""
        return sorted(pid for group in self.groups for pid in group_members(group))

    def own_processes(self) -> list[int]:
        """Every live process whose command line or cwd names this cluster's root (so: ours)."""
        root = str(self.root)
        found = []
        for pid in process_table():
            if pid == os.getpid():
                continue
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                continue
            if root in cmdline(pid) or cwd == root or cwd.startswith(root + "/"):
                found.append(pid)
        return found

    def kill_leftovers(self) -> None:
        """Backstop after `fleet down`: SIGKILL whatever is left in this cluster's process groups, then
        whatever else runs from its folder (should be nothing)."""
        for group in self.groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        for pid in self.own_processes():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

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

    def wait(self, predicate: Callable[[], object], what: str, timeout: float = 30.0) -> object:
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
