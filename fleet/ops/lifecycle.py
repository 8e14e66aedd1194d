"""`fleet up` and `fleet down`: the Emperor, nginx and the control plane, started and stopped as one."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from pathlib import Path
from typing import TextIO

from fleet import processes, uwsgi
from fleet.config import Limits, Values, check_https
from fleet.core import emperors
from fleet.core.states import State
from fleet.errors import AlreadyRunning, FleetError
from fleet.layout import Layout
from fleet.ops import local_ca, privileges
from fleet.ops.foreground import supervise_in_foreground
from fleet.ops.lock import ClusterLock
from fleet.ops.privileges import Drop
from fleet.ops.progress import wait_until
from fleet.ops.shutdown import down
from fleet.ops.supervisor import STOPPING, PartSpec, Supervisor, SupervisorSpec, port_taken
from fleet.proxy import nginx, tls
from fleet.published import records
from fleet.published.snapshot import Snapshot
from fleet.vassalfile import vassals

COMPONENTS = {
    "all": ("emperor", "nginx", "control"),
    "emperor": ("emperor",),
    "gateway": ("nginx", "control"),
}


def _answers(host: str, port: int) -> bool:
    """nginx answers HTTP at host:port (a wildcard is reached through loopback). A connection alone proves
    nothing: the supervisor holds the listener, so it is accepted into the queue before nginx runs.
    The path is one of nginx.conf's internal locations: nginx answers it itself (404), no backend does."""
    loopback = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    conn = http.client.HTTPConnection(loopback, port, timeout=1)
    try:
        conn.request("HEAD", "/.fleet/bad-request")
        conn.getresponse()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _check_port(listen: str, port: int, choose: str = "--port N (or FLEET_PORT)") -> None:
    """Before anything starts: the port is free (the supervisor binds it later, for nginx)."""
    try:
        for sock in processes.bind_listeners([(listen, port)]):
            sock.close()
    except OSError as e:
        raise port_taken(f"{listen}:{port}", e, choose) from None


def _prepare(
    layout: Layout,
    port: int,
    listen: str,
    component: str,
    limits: Limits,
    drop: Drop,
    access_log: str,
    out: TextIO,
    https: tls.Https | None = None,
    pair: tuple[str, str] | None = None,
) -> list[str]:
    """Create run/, render nginx's config; returns extra Emperor arguments."""
    parts = COMPONENTS[component]
    layout.make_run_dirs()
    # Before anything starts: what fleet starts from here on inherits the mount namespace, if one is needed.
    opened, unreachable = privileges.reach(layout, drop, "nginx" in parts)
    if opened:
        out.write(
            f"fleet: {', '.join(map(str, opened))}: not searchable by others; the cluster runs in a mount "
            "namespace of its own where the vassals' and nginx's users can pass through (nothing changed on disk)\n"
        )
    # Each component cleans only what it owns: in compose, the other one may be running.
    layout.processes_file(component).unlink(missing_ok=True)
    if "control" in parts:
        layout.state_file.unlink(missing_ok=True)
        tls.state_file(layout).unlink(missing_ok=True)  # a run without HTTPS shows none
        for leftover in layout.drain_dir.iterdir():
            leftover.unlink()
    extra = privileges.prepare(layout, drop, "nginx" in parts, unreachable)
    if "nginx" in parts:
        _check_port(listen, port)
        if https is not None and pair is not None:
            _check_port(listen, https.port, "--https-port N (or FLEET_HTTPS_PORT)")
            tls.install_checked(layout, *pair, nginx.worker_group())
        nginx.write_config(layout, port, listen, limits, access_log, https)
        ok, output = nginx.test_config(layout)
        if not ok:
            raise FleetError(f"nginx rejects the configuration rendered from nginx/nginx.conf:\n{output}")
    return extra


def _tls_pair(layout: Layout, values: Values) -> tuple[str, str] | None:
    """The certificate and key HTTPS serves: the operator's, or (--tls local) the local CA's, made now if
    needed; None: no HTTPS."""
    if values.tls == "local":
        cert, key, _ = local_ca.ensure(layout, local_ca.names_for(local_ca.app_hosts(layout)))
        return str(cert), str(key)
    if values.tls_cert:
        return str(Path(values.tls_cert).absolute()), str(Path(values.tls_key).absolute())
    return None


def _supervisor_spec(
    layout: Layout,
    component: str,
    emperor_args: list[str],
    values: Values,
    drop: Drop,
    pair: tuple[str, str] | None = None,
) -> SupervisorSpec:
    """The parts of `component`, their commands and environment."""
    parts = COMPONENTS[component]
    env = dict(os.environ) | values.limits.environment() | privileges.environment(drop)
    if "emperor" in parts:  # the vassal launcher (bin/fleet-vassal) checks each file against the caps too
        env |= values.caps_environment()
    uwsgi_bin = uwsgi.binary(values.uwsgi)
    env["FLEET_UWSGI"] = uwsgi_bin  # for the vassal launcher (bin/fleet-vassal)
    # The control plane gets its settings on its command line, not through this environment.
    # The caps as numbers (not `auto`): what the control plane applies is what is recorded for `fleet check`.
    # The pair to watch for rotations, by absolute path (--tls local: the local CA's).
    certs = {"tls_cert": pair[0], "tls_key": pair[1]} if pair else {}
    control = values.argv("control-plane", uwsgi=uwsgi_bin, max_processes=str(values.max_processes), **certs)
    # The vassal launcher runs with this Python's environment (the venv's python3 first on PATH).
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    if "emperor" in parts:  # the launcher receives its vassal's socket from the supervisor (fleet/ops/sockets.py)
        env["FLEET_SOCKET_HOLDER"] = str(layout.socket_holder)
    commands = {  # built only for the parts this component runs (a container has only its own binaries)
        "nginx": lambda: nginx.start_command(layout),
        "control": lambda: [sys.executable, "-m", "fleet", "--root", str(layout.root), "control-plane", *control],
    }
    # The supervisor binds nginx's listeners and keeps them for the life of the cluster (fleet.ops.supervisor).
    listeners = nginx.listeners(layout.nginx_conf) if "nginx" in parts else []
    specs = []
    for part in parts:
        if part == "emperor":
            # Beside the control plane, the Emperors act only when it wakes them (emperor.ini: fleet-ordered).
            ordered = ["--set-ph", "fleet-ordered=1"] if "control" in parts else []
            for index, name in enumerate(emperors.names(values.emperors)):
                share = emperor_share(index, values.emperors)
                argv = [uwsgi_bin, *share, *ordered, "--ini", str(layout.emperor_ini)]
                specs.append(PartSpec(name, [*argv, *emperor_args], *STOPPING[part]))
        else:
            specs.append(PartSpec(part, commands[part](), *STOPPING[part], listeners if part == "nginx" else []))
    # Recorded with the pids: `fleet check` and `fleet add` apply the caps the running control plane applies.
    extra = {"caps": values.caps_environment()} if "control" in parts else {}
    return SupervisorSpec(component, specs, env, values.port, values.listen, extra, socket_group=drop.group)


def emperor_share(index: int, count: int) -> list[str]:
    """The placeholders that give Emperor `index` of `count` its share of vassals/ and its own stats socket,
    pid file and log (emperor.ini reads them; with one Emperor: none, every *.ini, run/emperor.sock)."""
    if count == 1:
        return []
    name, share = emperors.names(count)[index], emperors.share(index, count)
    return ["--set-ph", f"fleet-emperor={name}", "--set-ph", f"fleet-share={share}"]


def _detach(layout: Layout, setup: SupervisorSpec, lock: ClusterLock) -> subprocess.Popen:
    """Start a `fleet supervise` process of its own (a new session) that runs and keeps the parts; it
    inherits the cluster's locks and holds them until it stops."""
    setup.write(layout.supervisor_spec(setup.component))
    argv = [sys.executable, "-m", "fleet", "--root", str(layout.root), "supervise", "--component", setup.component]
    return processes.spawn(argv, layout.log("supervisor"), setup.env, layout.root, pass_fds=tuple(lock.fds))


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
            return None, "waiting for nginx to answer"
        states = {n: snap.state_of(n) or State.STARTING for n in names}
        healthy = [n for n in names if states[n] == State.HEALTHY and n in snap.routed]
        failed[:] = [n for n in names if states[n] == State.FAILED]
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


def up(layout: Layout, values: Values, detach: bool, component: str = "all", out: TextIO = sys.stdout) -> int:
    """`fleet up` with its resolved settings (fleet.config)."""
    parts = COMPONENTS[component]
    # Before anything is touched: a second `fleet up` here must leave the first's files alone.
    lock = ClusterLock(layout, parts)
    lock.acquire()
    try:
        return _up(layout, values, detach, component, out, lock)
    finally:
        lock.release()  # a detached supervisor keeps its inherited copies


def _up(layout: Layout, values: Values, detach: bool, component: str, out: TextIO, lock: ClusterLock) -> int:
    parts = COMPONENTS[component]
    port, listen, timeout = values.port, values.listen, values.up_timeout
    already = {name: pid for name, pid in records.running(layout).items() if name in parts}
    if already:
        raise AlreadyRunning(
            f"this cluster is already up ({', '.join(f'{k} pid {v}' for k, v in already.items())}). "
            "Use `fleet status`, or `fleet down` first."
        )
    nginx.binary() if "nginx" in parts else None
    check_https(values)
    drop = privileges.drop_for(values.user, values.sources["user"])
    pair = _tls_pair(layout, values) if "nginx" in parts or "control" in parts else None
    https = tls.Https(values.https_port, values.http_redirect == "on") if pair else None
    emperor_args = _prepare(layout, port, listen, component, values.limits, drop, values.access_log, out, https, pair)
    setup = _supervisor_spec(layout, component, emperor_args, values, drop, pair)
    supervisor = None
    if detach:
        watch = {"supervisor": _detach(layout, setup, lock)}
        lock.record(watch["supervisor"].pid, port, listen)
    else:
        lock.record(os.getpid(), port, listen)
        supervisor = Supervisor(layout, setup)
        watch = supervisor.start()
    names = list(vassals.present(layout.vassals))
    where = f"http://{listen}:{port}" if "nginx" in parts else "the Emperors"
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
    running = f"fleet: {values.emperors} Emperor{'s' if values.emperors > 1 else ''} running\n"
    out.write(f"fleet: serving on {where}\n" if "nginx" in parts else running)
    if https is not None and "nginx" in parts:
        https_url = f"https://{'localhost' if listen in ('127.0.0.1', '0.0.0.0') else listen}:{https.port}/"
        redirect = " (HTTP answers 308 to it)" if https.redirect else ""
        out.write(f"fleet: HTTPS (HTTP/2) on {https_url}{redirect}\n")
        if values.tls == "local":
            out.write(local_ca.how_to_trust(layout, https_url))
    if "control" in parts and values.admin_port:
        admin = f"http://{values.admin_listen}:{values.admin_port}/"
        out.write(f"fleet: status page and /metrics on {admin}\n")
    out.flush()
    if supervisor is None:
        out.write("fleet: running in the background, parts restarted if they die; stop it with `fleet down`\n")
        return 1 if failed else 0
    return supervise_in_foreground(layout, component, supervisor, out)
