"""Our own nginx instance: render its config, validate it, start it, reload it gracefully."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from fleet.config import Limits, human
from fleet.core.apps import DEFAULT
from fleet.errors import FleetError, MissingTool, NginxConfigError
from fleet.layout import Layout, write_atomically
from fleet.proxy import tls

_TOKEN_RE = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}")


def binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if not found:
        raise MissingTool(
            "nginx is not installed. Run `make install` (as root it installs nginx), or: sudo apt-get install -y nginx"
        )
    return found


def render_template(template: str, values: dict[str, str]) -> str:
    """Fill in the {{name}} tokens of nginx/nginx.conf; an unknown token is an error, not a blank."""

    def fill(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            raise FleetError(f"nginx/nginx.conf uses {{{{{key}}}}}, which fleet does not know. Known: {sorted(values)}")
        return values[key]

    return _TOKEN_RE.sub(fill, template)


def worker_user() -> str | None:
    """As root, nginx's workers drop to an unprivileged user; that user's group may use the sockets."""
    if os.geteuid() != 0:
        return None
    for user in ("www-data", "nobody"):
        try:
            pwd.getpwnam(user)
            return user
        except KeyError:
            continue
    return None


def worker_group() -> int | None:
    """The gid of nginx's workers when they drop to another user (started as root); None otherwise."""
    user = worker_user()
    return pwd.getpwnam(user).pw_gid if user else None


def template_values(
    layout: Layout, port: int, listen: str, limits: Limits | None = None, log: str = "combined"
) -> dict[str, str]:
    user = worker_user()
    limits = limits or Limits()
    return {
        "max_body": human(limits.max_body),
        "header_buffer": human(limits.header_buffer),
        "read_timeout": str(limits.read_timeout),
        "root": str(layout.root),
        "run": str(layout.run),
        "port": str(port),
        "listen": listen,
        "user": f"user {user};" if user else "# (not root: workers run as the current user)",
        "access_log": access_log(layout, log),
    }


ACCESS_LOGS = {"combined": ("nginx-access.log", "combined"), "json": ("nginx-access.jsonl", "fleet_json")}


def access_log(layout: Layout, choice: str = "combined") -> str:
    """The access_log directive: `combined`, or JSON lines with the vassal that served (the setting `json`)."""
    name, fmt = ACCESS_LOGS[choice]
    return f"access_log {layout.logs / name} {fmt} buffer=64k flush=2s;"


def write_config(
    layout: Layout,
    port: int,
    listen: str,
    limits: Limits | None = None,
    log: str = "combined",
    https: tls.Https | None = None,
) -> None:
    """Render the main config; start with no backend (JSON 503) until the control plane routes some:
    slots left by an earlier run point at sockets that are not there yet. With `https`, the HTTPS
    listener, serving run/tls/serving.pem (installed before nginx starts)."""
    layout.make_run_dirs()
    values = template_values(layout, port, listen, limits, log)
    tls.write_includes(layout, layout.nginx_dir, listen, https)
    conf = render_template(layout.nginx_template.read_text(), values)
    errors_template = layout.nginx_template.with_name("server-errors.conf")
    write_atomically(layout.server_errors_conf, render_template(errors_template.read_text(), values))
    # Every public server listens where the default one does.
    write_atomically(layout.listen_conf, f"listen {listen}:{port};\n")
    write_atomically(layout.nginx_conf, conf)
    from fleet.proxy.apps import render_default, render_http
    from fleet.proxy.upstreams import render

    write_atomically(layout.upstreams_conf, render(0, layout.slots, layout.sockets))
    # The default app alone until the control plane has read the vassal files (it then reloads once).
    write_atomically(layout.apps_conf, render_http((), layout.app_upstreams, layout.nginx_dir, layout.root))
    write_atomically(layout.apps_default_conf, render_default((DEFAULT,), layout.root))
    # No static folders until the control plane has read the vassal files (its first pass adds them).
    from fleet.proxy import static

    write_atomically(static.static_conf(layout), static.render([]))


def base_command(layout: Layout) -> list[str]:
    return [
        binary(),
        "-p",
        str(layout.nginx_dir),
        "-c",
        str(layout.nginx_conf),
        "-e",
        str(layout.log("nginx-error")),
    ]


def _uncommented(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


_LISTEN_RE = re.compile(r"(?:^|(?<=[;{}]))\s*listen\s+([^;{}]+);", re.MULTILINE)
# A `listen` with one of these is always a socket of its own, even beside a wildcard on its port.
_OWN_SOCKET = {"bind", "setfib", "fastopen", "backlog", "rcvbuf", "sndbuf", "accept_filter", "deferred"} | {
    "ipv6only",
    "reuseport",
    "so_keepalive",
}
WILDCARDS = ("0.0.0.0", "::")


def _listen_hosts(address: str) -> tuple[list[str], int] | None:
    """The hosts and port of one `listen` address (nginx's forms: 8080, *:8080, host, host:8080, [::1]:8080);
    None for a unix socket (nginx binds those itself)."""
    if address.startswith("unix:"):
        return None
    port = 80
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else port
        return [host], port
    if address.isdigit():
        return ["0.0.0.0"], int(address)
    host, _, rest = address.partition(":")
    port = int(rest) if rest else port
    if host == "*":
        return ["0.0.0.0"], port
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)  # nginx listens on every address of a name
    return list(dict.fromkeys(str(info[4][0]) for info in found)), port


def listen_addresses(conf: str) -> list[tuple[str, int]]:
    """The TCP sockets nginx opens for the `listen` directives of `conf` (the text of its files):
    one per address and port, except that beside a wildcard (0.0.0.0 or [::]) on the same port an address
    has no socket of its own unless its options ask for one (`bind`, `backlog=`...): nginx then accepts
    through the wildcard and tells the address by getsockname(). The supervisor binds exactly these, so
    that nginx's `listen` matches each inherited socket and leaves none unused."""
    wanted: list[tuple[str, int, bool]] = []
    for directive in _LISTEN_RE.findall(_uncommented(conf)):
        address, *options = directive.split()
        parsed = _listen_hosts(address)
        if parsed is None:
            continue
        own = any(option.split("=", 1)[0] in _OWN_SOCKET for option in options)
        wanted += [(host, parsed[1], own) for host in parsed[0]]
    wild = {(host, port) for host, port, _ in wanted if host in WILDCARDS}
    kept = [
        (host, port)
        for host, port, own in wanted
        if own or host in WILDCARDS or (("::" if ":" in host else "0.0.0.0"), port) not in wild
    ]
    return list(dict.fromkeys(kept))


_INCLUDE_RE = re.compile(r"(?:^|(?<=[;{}]))\s*include\s+([^;{}\s]+)\s*;", re.MULTILINE)


def config_text(conf: Path, depth: int = 8, folder: Path | None = None) -> str:
    """`conf` with the text of every file it includes (nginx's `include`: a path, or a glob, relative to
    the main file's folder), as far as `depth` levels: what nginx reads. Files not there yet are skipped."""
    text, folder = conf.read_text(), folder or conf.parent
    if depth == 0:
        return text
    parts = [text]
    for pattern in _INCLUDE_RE.findall(_uncommented(text)):
        base = folder / pattern  # an absolute pattern stays itself
        names = sorted(base.parent.glob(base.name)) if any(c in base.name for c in "*?[") else [base]
        parts += [config_text(name, depth - 1, folder) for name in names if name.is_file()]
    return "\n".join(parts)


def listeners(conf: Path) -> list[tuple[str, int]]:
    """The TCP sockets nginx opens for `conf` and its includes (see listen_addresses)."""
    return listen_addresses(config_text(conf))


def inherited(fds: list[int]) -> dict[str, str]:
    """The environment that hands nginx listening sockets it did not open (as in its binary upgrade:
    src/core/nginx.c, ngx_add_inherited_sockets): it matches each to a `listen` by its address."""
    return {"NGINX": "".join(f"{fd};" for fd in fds)}


def start_command(layout: Layout) -> list[str]:
    return base_command(layout) + ["-g", "daemon off;"]


def test_config(layout: Layout) -> tuple[bool, str]:
    """`nginx -t` on the files as they are on disk."""
    proc = subprocess.run(base_command(layout) + ["-t", "-q"], capture_output=True, text=True, timeout=30)
    return proc.returncode == 0, (proc.stderr + proc.stdout).strip()


def master_pid(layout: Layout) -> int | None:
    try:
        pid = int(layout.nginx_pid.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def reopen_logs(layout: Layout) -> None:
    """SIGUSR1: nginx reopens its log files (after one was renamed aside); nothing if it does not run."""
    pid = master_pid(layout)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGUSR1)
        except OSError:
            pass


def worker_pids(pid: int) -> set[int]:
    """nginx's worker processes: the master's children."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return set()
    return {int(c) for c in children}


def _shutting_down(pid: int) -> bool:
    """An old worker retitles itself once it has stopped accepting new connections."""
    try:
        return b"shutting down" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # already gone


def reload(layout: Layout, timeout: float = 10.0) -> None:
    """Graceful reload: new workers with the new config; old ones finish their requests, then exit.

    Returns once new workers run and every old worker has stopped accepting, so that from then on
    every new connection gets the new config.
    """
    pid = master_pid(layout)
    if pid is None:
        raise FleetError("nginx is not running; start the cluster with `fleet up`")
    before = worker_pids(pid)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker_pids(pid) - before and all(_shutting_down(w) for w in before):
            return
        time.sleep(0.002)
    raise FleetError(
        f"nginx did not start new workers within {timeout:.0f} s of a reload; see {layout.log('nginx-error')}"
    )


def apply_upstreams(layout: Layout, content: str) -> bool:
    """Write the upstream list, validate, reload. On a bad config keep the last good one and raise.

    Returns False when the list was already current (no reload).
    """
    return apply_files(layout, {layout.upstreams_conf: content})


def apply_files(layout: Layout, files: dict[Path, str]) -> bool:
    """Write generated config files, validate them together (`nginx -t`), reload once. On a bad config put
    every file back as it was (the last good config) and raise.

    Returns False when every file was already current (no reload).
    """
    previous: dict[Path, str | None] = {}
    for path in files:
        try:
            previous[path] = path.read_text()
        except OSError:
            previous[path] = None
    changed = {path: content for path, content in files.items() if previous[path] != content}
    if not changed:
        return False
    for path, content in changed.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, content)
    ok, output = test_config(layout)
    if not ok:
        for path in changed:
            if (before := previous[path]) is not None:
                write_atomically(path, before)
            else:
                path.unlink(missing_ok=True)
        raise NginxConfigError(f"nginx rejected the new config; kept the last good one:\n{output}")
    reload(layout)
    return True
