"""A fleet cluster in a temporary copy of the tree, driven through the `fleet` command line.

The checkout's own vassals/ and run/ are never touched: every benchmark cluster lives in a copy
(made without .venv, run, .git and bench results) on a free port.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from bench import procs as P
from fleet.layout import Layout, write_atomically
from fleet.processes import cmdline, process_table
from fleet.published import records
from fleet.vassalfile import vassals

IGNORED = shutil.ignore_patterns(".venv", "run", ".git", "results", "__pycache__", ".pytest_cache", ".ruff_cache")


def copy_tree(src: Path, dest: Path) -> Path:
    """Copy the project tree `src` to `dest` for an independent cluster."""
    shutil.copytree(src, dest, ignore=IGNORED, symlinks=True)
    return dest


def vassal_text(processes: int | None = None, extra: dict[str, str] | None = None) -> str:
    lines = ["; written by bench", "[uwsgi]"]
    if processes is not None:
        lines.append(f"processes = {processes}")
    for key, value in (extra or {}).items():
        lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def fleet_available(root: Path) -> bool:
    """Whether the fleet package at `root` has its command line yet."""
    return (root / "fleet" / "cli.py").is_file()


class Cluster:
    """One fleet cluster at `root` on `port`; `up()`/`down()` through the CLI, stop leftovers by pid."""

    def __init__(self, root: Path, port: int, python: str = sys.executable) -> None:
        self.root = root
        self.layout = Layout(root)
        self.port = port
        self.python = python
        self.log = root / "bench-fleet.log"

    # ---- files
    @property
    def vassals(self) -> Path:
        return self.layout.vassals

    def set_vassals(self, names: list[str], processes: int | None = None, extra: dict[str, str] | None = None) -> None:
        """Make vassals/ hold exactly `names` (all with the same body)."""
        for old in vassals.present(self.vassals):
            self.layout.vassal_file(old).unlink()
        for name in names:
            write_atomically(self.vassals / f"{name}.ini", vassal_text(processes, extra))

    # ---- commands
    def cli(self, *args: str, timeout: float = 180.0) -> P.subprocess.CompletedProcess:
        argv = [self.python, "-m", "fleet", "--root", str(self.root), *args]
        started = time.monotonic()
        out = P.run(argv, timeout=timeout, cwd=self.root)
        with open(self.log, "a") as f:
            f.write(f"$ {' '.join(args)}  (rc={out.returncode}, {time.monotonic() - started:.2f} s)\n")
            f.write(out.stdout + out.stderr)
        return out

    def up(self, timeout: float = 300.0) -> float:
        """`fleet up --detach`; returns the seconds it took (it returns once every vassal is healthy)."""
        started = time.monotonic()
        out = self.cli("up", "--port", str(self.port), "--detach", "--timeout", str(timeout), timeout=timeout + 30)
        took = time.monotonic() - started
        if out.returncode != 0:
            raise RuntimeError(f"fleet up failed (rc={out.returncode}):\n{out.stdout}\n{out.stderr}")
        return took

    def down(self) -> None:
        with contextlib.suppress(Exception):
            self.cli("down", timeout=120)
        self.kill_leftovers()

    def status(self) -> list[dict]:
        out = self.cli("status", "--json", timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"fleet status failed: {out.stderr}")
        data = json.loads(out.stdout)
        return data if isinstance(data, list) else data.get("backends", data.get("vassals", []))

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    # ---- processes
    def pids(self) -> dict[str, int]:
        """{"emperor", "nginx" (master), "control": pid}: what `fleet up` recorded starting and still runs."""
        return records.running(self.layout)

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
        """SIGKILL whatever of this cluster `fleet down` left behind (should be nothing)."""
        for pid in self.own_processes():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
