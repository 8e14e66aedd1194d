"""`fleet up` and `fleet down`: the Emperor, nginx and the control plane, started and stopped as one."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from fleet import nginx, privileges, processes, uwsgi, vassals
from fleet.errors import AlreadyRunning, FleetError, NotRunning
from fleet.layout import Layout
from fleet.limits import Limits
from fleet.logs import Follower
from fleet.privileges import Drop
from fleet.progress import wait_until
from fleet.snapshot import Snapshot
from fleet.supervisor import STOP_ORDER, PartSpec, Plan, Supervisor

# How each part stops gracefully: the control plane on SIGTERM; nginx on SIGQUIT (stop accepting, finish
# in-flight requests); the Emperor on SIGTERM (graceful vassal shutdown). Stopped in supervisor.STOP_ORDER.
STOPPING = {
    "control": (signal.SIGTERM, 10.0),
    "nginx": (signal.SIGQUIT, 30.0),
    "emperor": (signal.SIGTERM, 40.0),
}
COMPONENTS = {
    "all": ("emperor", "nginx", "control"),
    "emperor": ("emperor",),
    "gateway": ("nginx", "control"),
}


def _recorded(paths: list[Path]) -> dict[str, tuple[int, int | None]]:
    """{component: (pid, start time)} from the records `fleet up` wrote."""
    found: dict[str, tuple[int, int | None]] = {}
    for path in paths:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for name, pid in doc.get("pids", {}).items():
            found[name] = (int(pid), doc.get("started", {}).get(name))
    return found


def running(layout: Layout) -> dict[str, int]:
    """The components recorded by `fleet up` that still run (the same processes, not reused pids)."""
    return {
        name: pid
        for name, (pid, started) in _recorded(layout.processes_files()).items()
        if processes.is_same(pid, started)
    }


def _answers(host: str, port: int) -> bool:
    """Something accepts TCP connections at host:port (0.0.0.0 is reached through loopback)."""
    try:
        with socket.create_connection(("127.0.0.1" if host in ("0.0.0.0", "") else host, port), timeout=1):
            return True
    except OSError:
        return False


def _check_port(listen: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((listen, port))
        except OSError as e:
            raise FleetError(
                f"cannot listen on {listen}:{port}: {e.strerror}. Another fleet or server uses it: "
                f"stop it, or choose another port with --port N (or FLEET_PORT)."
            ) from None


def _prepare(layout: Layout, port: int, listen: str, component: str, limits: Limits, drop: Drop) -> list[str]:
    """Create run/, render nginx's config; returns extra Emperor arguments."""
    parts = COMPONENTS[component]
    layout.make_run_dirs()
    # Each component cleans only what it owns: in compose, the other one may be running.
    layout.processes_file(component).unlink(missing_ok=True)
    if "control" in parts:
        layout.state_file.unlink(missing_ok=True)
        for leftover in layout.drain_dir.iterdir():
            leftover.unlink()
    extra = privileges.prepare(layout, drop, "nginx" in parts)
    if "nginx" in parts:
        _check_port(listen, port)
        nginx.write_config(layout, port, listen, limits)
        ok, output = nginx.test_config(layout)
        if not ok:
            raise FleetError(f"nginx rejects the configuration rendered from nginx/nginx.conf:\n{output}")
    return extra


def _plan(
    layout: Layout, component: str, emperor_args: list[str], limits: Limits, port: int, listen: str, drop: Drop
) -> Plan:
    """The parts of `component`, their commands and environment."""
    parts = COMPONENTS[component]
    env = dict(os.environ) | limits.environment() | privileges.environment(drop)
    uwsgi_bin = uwsgi.binary()
    env["FLEET_UWSGI"] = uwsgi_bin
    # The vassal launcher runs with this Python's environment (the venv's python3 first on PATH).
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    commands = {  # built only for the parts this component runs (a container has only its own binaries)
        "emperor": lambda: [uwsgi_bin, "--ini", str(layout.emperor_ini), *emperor_args],
        "nginx": lambda: nginx.start_command(layout),
        "control": lambda: [sys.executable, "-m", "fleet", "--root", str(layout.root), "control-plane"],
    }
    specs = [PartSpec(name, commands[name](), *STOPPING[name], overlap=name == "nginx") for name in parts]
    return Plan(component, specs, env, port, listen)


def _detach(layout: Layout, plan: Plan) -> subprocess.Popen:
    """Start a `fleet supervise` process of its own (a new session) that runs and keeps the parts."""
    plan.write(layout.supervisor_plan(plan.component))
    argv = [sys.executable, "-m", "fleet", "--root", str(layout.root), "supervise", "--component", plan.component]
    return processes.spawn(argv, layout.log("supervisor"), plan.env, layout.root)


def present_vassals(layout: Layout) -> list[str]:
    try:
        names = os.listdir(layout.vassals)
    except FileNotFoundError:
        return []
    return sorted(vassals.vassal_name(n) for n in names if vassals.is_vassal_filename(n))


def wait_healthy(
    layout: Layout,
    names: list[str],
    timeout: float,
    out: TextIO,
    watch: dict[str, subprocess.Popen] | None = None,
    listening: tuple[str, int] | None = None,
) -> list[str]:
    """Wait, with progress, until nginx listens (at `listening`), the control plane publishes, and each
    of `names` is healthy and routed, or failed. Returns the failed ones."""
    failed: list[str] = []

    def check() -> tuple[str | None, str]:
        for component, proc in (watch or {}).items():
            if proc.poll() is not None:
                exited = f"{component} exited with status {proc.returncode} while starting"
                return f"{exited}; see {layout.log(component)}", ""
        snap = Snapshot.read(layout)
        if not snap.control_pid:
            return None, "waiting for the control plane"
        if listening is not None and not _answers(*listening):
            return None, "waiting for nginx to listen"
        states = {n: snap.state_of(n) or "starting" for n in names}
        healthy = [n for n in names if states[n] == "healthy" and n in snap.routed]
        failed[:] = [n for n in names if states[n] == "failed"]
        if len(healthy) + len(failed) == len(names):
            return "ok", f"{len(healthy)}/{len(names)} backends healthy and routed"
        waiting = [n for n in names if n not in healthy and n not in failed]
        shown = ", ".join(f"{n} {states[n]}" for n in waiting[:4]) + (" ..." if len(waiting) > 4 else "")
        return None, f"{len(healthy)}/{len(names)} healthy; waiting for {shown}"

    hint = f"see `fleet status` and the logs in {layout.logs}"
    wait_until("starting backends", check, timeout, out, hint=hint)
    return failed


def report_failed(layout: Layout, failed: list[str], out: TextIO) -> None:
    snap = Snapshot.read(layout)
    for name in failed:
        b = snap.backend(name)
        out.write(f"  {name}: failed: {b.error if b else '?'}\n")
    out.write("Fix the file(s) (`fleet check` explains), or remove them; the other backends are serving.\n")


def up(
    layout: Layout,
    port: int,
    listen: str,
    detach: bool,
    component: str = "all",
    timeout: float = 120.0,
    out: TextIO = sys.stdout,
    limits: Limits | None = None,
    user: str | None = None,
) -> int:
    parts = COMPONENTS[component]
    limits = limits or Limits()
    already = {name: pid for name, pid in running(layout).items() if name in parts}
    if already:
        raise AlreadyRunning(
            f"this cluster is already up ({', '.join(f'{k} pid {v}' for k, v in already.items())}). "
            "Use `fleet status`, or `fleet down` first."
        )
    nginx.binary() if "nginx" in parts else None
    drop = privileges.plan(user)
    emperor_args = _prepare(layout, port, listen, component, limits, drop)
    plan = _plan(layout, component, emperor_args, limits, port, listen, drop)
    supervisor = None
    if detach:
        watch = {"supervisor": _detach(layout, plan)}
    else:
        supervisor = Supervisor(layout, plan)
        watch = supervisor.start()
    names = present_vassals(layout)
    where = f"http://{listen}:{port}" if "nginx" in parts else "the Emperor"
    out.write(f"fleet: starting {' + '.join(parts)} for {len(names)} vassal(s) at {layout.root}\n")
    out.flush()
    try:
        failed: list[str] = []
        if "control" in parts:
            listening = (listen, port) if "nginx" in parts else None
            failed = wait_healthy(layout, names, timeout, out, watch, listening)
    except BaseException:
        out.write("fleet: start failed; stopping what was started\n")
        if supervisor:
            supervisor.stop()
        down(layout, quiet=True)
        raise
    if failed:
        report_failed(layout, failed, out)
    out.write(f"fleet: serving on {where}\n" if "nginx" in parts else "fleet: Emperor running\n")
    out.flush()
    if supervisor is None:
        out.write("fleet: running in the background, parts restarted if they die; stop it with `fleet down`\n")
        return 1 if failed else 0
    return _foreground(layout, component, supervisor, out)


GATEWAY_LOGS = {"control", "nginx", "nginx-error"}


def _own_logs(layout: Layout, component: str) -> list[Path]:
    """The logs a component shows (in compose, each container prints only its own)."""
    logs = sorted(p for p in layout.logs.glob("*.log") if p.name != "nginx-access.log")
    if component == "gateway":
        return [p for p in logs if p.stem in GATEWAY_LOGS]
    if component == "emperor":
        return [p for p in logs if p.stem not in GATEWAY_LOGS]
    return logs


def _foreground(layout: Layout, component: str, supervisor: Supervisor, out: TextIO) -> int:
    """Stream the parts' logs with a prefix and keep the parts alive until Ctrl-C, SIGTERM or SIGHUP;
    then stop gracefully. Output that goes away (a closed pipe) stops nothing but the output."""
    stop_requested: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: stop_requested.append(signum))
    out = SafeOutput(out)
    follower = Follower(out)
    out.write("fleet: following logs; Ctrl-C stops the cluster gracefully\n")
    try:
        while not stop_requested:
            follower.poll(_own_logs(layout, component))
            for line in supervisor.check():
                out.write(f"fleet: {line}\n")
            time.sleep(0.1)  # the supervision period
        out.write("\nfleet: stopping gracefully...\n")
    finally:
        supervisor.stop(lambda line: out.write(line + "\n"))
        layout.state_file.unlink(missing_ok=True)
        _tidy(layout)
        out.write("fleet: stopped\n")
    return 0


def _tidy(layout: Layout) -> None:
    """The Emperor leaves the vassals' on-demand sockets behind when it stops: remove them once it is gone."""
    if "emperor" in running(layout):
        return
    for leftover in layout.sockets.glob("*.socket"):
        leftover.unlink(missing_ok=True)


class SafeOutput:
    """A stream that swallows a closed pipe (`fleet up | head`): output stops, the cluster does not."""

    def __init__(self, out: TextIO):
        self.out, self.broken = out, False

    def write(self, text: str) -> None:
        if not self.broken:
            try:
                self.out.write(text)
                self.out.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.broken = True

    def flush(self) -> None:
        self.write("")

    def isatty(self) -> bool:
        return not self.broken and self.out.isatty()


def _orphaned_groups(layout: Layout) -> dict[str, int]:
    """Recorded parts whose leader is gone but whose process group lives on (nginx's orphaned workers
    after its master was killed): {part: its group id}. processes.stop signals the whole group."""
    found = {}
    here = processes.pid_namespace()
    for path in layout.processes_files():
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if doc.get("pid_namespace", here) != here:
            continue  # another container's pids mean nothing here
        for name, pid in doc.get("pids", {}).items():
            if not processes.is_alive(int(pid)) and processes.group_members(int(pid)):
                found[name] = int(pid)
    return found


def down(layout: Layout, quiet: bool = False, out: TextIO = sys.stdout) -> int:
    """Stop what `fleet up` started, in order, gracefully; SIGKILL only what overstays its timeout."""
    records = layout.processes_files()
    alive = running(layout) | _orphaned_groups(layout)
    if not records:
        # No record (e.g. it was deleted): fall back on the pid files the components write themselves,
        # if they still name this cluster's processes.
        for name, pidfile in (("nginx", layout.nginx_pid), ("emperor", layout.emperor_pid)):
            try:
                pid = int(pidfile.read_text().strip())
                if str(layout.root).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    alive[name] = pid
            except (OSError, ValueError):
                pass
    if not alive:
        for record in records:
            record.unlink(missing_ok=True)
        if quiet:
            return 0
        raise NotRunning(f"the cluster at {layout.root} is not running (nothing to stop)")
    supervisor = alive.pop("supervisor", None)
    if supervisor is not None and supervisor != os.getpid():
        # The supervisor stops its parts in order; whatever it leaves is stopped below.
        if not quiet:
            out.write(f"fleet: stopping the supervisor (pid {supervisor}) and its parts...\n")
            out.flush()
        processes.stop(supervisor, signal.SIGTERM, sum(t for _, t in STOPPING.values()) + 5)
        alive = {
            name: pid for name, pid in (running(layout) | _orphaned_groups(layout)).items() if name != "supervisor"
        }
    for name in STOP_ORDER:
        pid = alive.get(name)
        if pid is None:
            continue
        sig, timeout = STOPPING[name]
        if not quiet:
            out.write(f"fleet: stopping {name} (pid {pid})...\n")
            out.flush()
        if not processes.stop(pid, sig, timeout) and not quiet:
            out.write(f"fleet: {name} did not stop within {timeout:.0f} s; killed it\n")
    for record in records:
        record.unlink(missing_ok=True)
    layout.state_file.unlink(missing_ok=True)
    _tidy(layout)
    if not quiet:
        out.write("fleet: stopped\n")
    return 0
