"""The serving stacks under test, each started on free loopback ports with the same app and 2 workers.

- ceiling: nginx answering by itself (`return 200`), the most any proxied stack can reach.
- uwsgi-direct: uWSGI `http11-socket` serving the app alone, no proxy.
- tutorial: the reference tutorial's layout run natively: nginx `proxy_pass` over HTTP/TCP to two
  uWSGI servers in `http=` mode (1 process, 1 thread each, the tutorial's ini otherwise unchanged).
- gunicorn: nginx `proxy_pass` to gunicorn, 2 sync workers, on a unix socket (gunicorn's documented setup).
- fleet: the real thing, `fleet up` in a copy of the tree, vassals overridden to 2 workers in all.
- lab-*: fleet's data path assembled by hand (nginx `uwsgi_pass` -> uWSGI over unix sockets, no
  Emperor, no control plane) to measure what each uWSGI/nginx option buys.
"""

from __future__ import annotations

import configparser
import shutil
import signal
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench import client
from bench import nginx as N
from bench.cluster import Cluster, copy_tree
from bench.procs import Procs, free_port, wait_until

TUTORIAL_PROXY_HEADERS = """            proxy_set_header    Host                $host;
            proxy_set_header    X-Real-IP           $remote_addr;
            proxy_set_header    X-Forwarded-Host    $host;
            proxy_set_header    X-Forwarded-Server  $host;
            proxy_set_header    X-Forwarded-Proto   $scheme;
            proxy_set_header    X-Forwarded-For     $proxy_add_x_forwarded_for;"""


def tool(name: str) -> str:
    """A console script next to the running Python (the venv's), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: install the bench extra (pip install -e '.[bench]')")
    return found


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    port: int
    path: str = "/"
    detail: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


class Stacks:
    """Starts stacks into one Procs registry under one work dir; the app is `root/app/wsgi.py`."""

    def __init__(self, procs: Procs, root: Path, work: Path) -> None:
        self.procs = procs
        self.root = root
        self.work = work
        self.app_dir = root / "app"

    def _dir(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _wait_http(self, port: int, what: str) -> None:
        wait_until(lambda: client.get(port, "/", timeout=2).status == 200, 60, 0.1, what)

    def _wait_uwsgi(self, sock: Path, what: str) -> None:
        wait_until(lambda: client.uwsgi_get(str(sock), "/", timeout=2).status == 200, 60, 0.1, what)

    # ---- baselines
    def ceiling(self) -> Target:
        d = self._dir("ceiling")
        port = free_port()
        location = """        location / {
            default_type application/json;
            return 200 '{"backend": "nginx", "pid": 0}';
        }"""
        N.start(self.procs, d, N.render(d, port, "", location), port, "nginx-ceiling")
        return Target("ceiling", "nginx return 200 (ceiling)", port)

    def uwsgi_direct(self) -> Target:
        d = self._dir("uwsgi-direct")
        port = free_port()
        argv = [
            tool("uwsgi"),
            "--http11-socket",
            f"127.0.0.1:{port}",
            "--master",
            "--processes=2",
            "--threads=2",
            "--listen=1024",
            "--disable-logging",
            f"--chdir={self.app_dir}",
            "--module=wsgi",
            "--need-app",
        ]
        self.procs.start(argv, "uwsgi-direct", d / "uwsgi.log", signal.SIGINT, env={"FLEET_VASSAL": "direct"})
        self._wait_http(port, "uwsgi http11-socket")
        return Target("uwsgi-direct", "uWSGI http11-socket alone (no proxy)", port)

    def tutorial(self) -> Target:
        """Two `uwsgi --ini` servers in http= mode, as the tutorial's uwsgi_server{1,2}.ini, behind nginx."""
        d = self._dir("tutorial")
        ports = [free_port(), free_port()]
        for i, p in enumerate(ports, 1):
            ini = d / f"uwsgi_server{i}.ini"
            ini.write_text(
                "[uwsgi]\n"
                f"wsgi-file={self.app_dir / 'wsgi.py'}\n"
                "callable=application\n"
                f"http=127.0.0.1:{p}\n"
                "processes = 1\n"
                "threads = 1\n"
            )
            self.procs.start(
                [tool("uwsgi"), "--ini", str(ini)],
                f"tutorial-uwsgi{i}",
                d / f"uwsgi{i}.log",
                signal.SIGINT,
                cwd=self.app_dir,
                env={"FLEET_VASSAL": f"server{i}"},
            )
        for p in ports:
            self._wait_http(p, f"tutorial uwsgi http={p}")
        port = free_port()
        upstream = N.upstream_block("my_servers", [f"127.0.0.1:{p}" for p in ports])
        location = f"""{TUTORIAL_PROXY_HEADERS}
        location / {{
            {N.uwsgi_params()}
            proxy_pass      http://my_servers;
            proxy_redirect  default;
        }}"""
        N.start(self.procs, d / "nginx", N.render(d / "nginx", port, upstream, location), port, "nginx-tutorial")
        self._wait_http(port, "tutorial nginx")
        return Target("tutorial", "tutorial: nginx proxy_pass -> 2 x uWSGI http=", port)

    def gunicorn(self) -> Target:
        d = self._dir("gunicorn")
        sock = d / "gunicorn.sock"
        argv = [
            tool("gunicorn"),
            "--workers=2",
            "--worker-class=sync",
            f"--bind=unix:{sock}",
            f"--chdir={self.app_dir}",
            f"--pid={d / 'gunicorn.pid'}",
            "wsgi:application",
        ]
        self.procs.start(argv, "gunicorn", d / "gunicorn.log", signal.SIGTERM, env={"FLEET_VASSAL": "gunicorn"})
        wait_until(sock.exists, 60, 0.1, "gunicorn socket")
        port = free_port()
        upstream = N.upstream_block("app_server", [f"unix:{sock}"])
        location = """        location / {
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Host $http_host;
            proxy_redirect off;
            proxy_pass http://app_server;
        }"""
        N.start(self.procs, d / "nginx", N.render(d / "nginx", port, upstream, location), port, "nginx-gunicorn")
        self._wait_http(port, "gunicorn via nginx")
        return Target("gunicorn", "nginx proxy_pass -> gunicorn sync x 2", port)

    # ---- fleet itself
    def fleet(
        self,
        vassals: int = 2,
        processes: int = 1,
        key: str = "fleet",
        threads: int | None = None,
        nginx_workers: str | None = None,
    ) -> Target:
        """`fleet up` in a copy of the tree with `vassals` backends of `processes` workers each.

        `threads` overrides the [vassal] default in each vassal file (a documented per-vassal override);
        `nginx_workers` edits worker_processes in the copy's nginx template (never the checkout's).
        """
        d = self._dir(key)
        cluster = Cluster(copy_tree(self.root, d / "tree"), free_port())
        if nginx_workers:
            template = cluster.root / "nginx" / "nginx.conf"
            text = template.read_text()
            if "worker_processes auto;" not in text:
                raise RuntimeError("nginx/nginx.conf has no 'worker_processes auto;' to change")
            template.write_text(text.replace("worker_processes auto;", f"worker_processes {nginx_workers};"))
        extra = {"threads": str(threads)} if threads else None
        cluster.set_vassals([f"backend-{i}" for i in range(1, vassals + 1)], processes, extra)
        self.procs.on_close(cluster.down)
        took = cluster.up()
        self._wait_http(cluster.port, "fleet")
        label = f"fleet: nginx uwsgi_pass -> {vassals} vassal{'s' if vassals > 1 else ''} x {processes}"
        if threads:
            label += f", threads = {threads}"
        if nginx_workers:
            label += f", nginx worker_processes {nginx_workers}"
        detail = {"up_seconds": took, "threads": threads or "default", "nginx_workers": nginx_workers or "auto"}
        return Target(key, label, cluster.port, detail=detail)

    # ---- the lab: fleet's data path by hand, one option at a time
    def lab(self, variant: LabVariant) -> Target:
        d = self._dir(f"lab-{variant.key}")
        socks = []
        for i in range(1, variant.vassals + 1):
            sock = d / f"v{i}.sock"
            argv = [
                tool("uwsgi"),
                f"--socket={sock}",
                "--master",
                f"--processes={variant.processes}",
                f"--threads={variant.threads}",
                f"--listen={variant.listen}",
                f"--chdir={self.app_dir}",
                "--module=wsgi",
                "--need-app",
                f"--logto={d / f'v{i}.log'}",
            ]
            if not variant.request_logging:
                argv.append("--disable-logging")
            if variant.threads == 1:
                argv.remove("--threads=1")
            self.procs.start(
                argv, f"lab-{variant.key}-{i}", d / f"v{i}.out", signal.SIGINT, env={"FLEET_VASSAL": f"v{i}"}
            )
            socks.append(sock)
        for sock in socks:
            self._wait_uwsgi(sock, f"lab socket {sock}")
        port = free_port()
        upstream = N.upstream_block("lab", [f"unix:{s}" for s in socks], variant.nginx.balance)
        buffering = "" if variant.nginx.buffering else "\n            uwsgi_buffering off;"
        location = f"""        location / {{
            {N.uwsgi_params()}
            uwsgi_pass lab;{buffering}
        }}"""
        conf = N.render(d / "nginx", port, upstream, location, variant.nginx)
        N.start(self.procs, d / "nginx", conf, port, f"nginx-lab-{variant.key}")
        self._wait_http(port, "lab nginx")
        return Target(f"lab-{variant.key}", variant.label, port, detail=variant.describe())


@dataclass(frozen=True)
class LabVariant:
    """One configuration of fleet's data path; the defaults are fleet's own settings."""

    key: str
    label: str
    vassals: int = 2
    processes: int = 1
    threads: int = 2
    listen: int = 1024
    request_logging: bool = False
    nginx: N.Tuning = N.Tuning(access_log="buffered")

    def describe(self) -> dict:
        return {
            "vassals": self.vassals,
            "processes": self.processes,
            "threads": self.threads,
            "listen": self.listen,
            "uwsgi_request_logging": self.request_logging,
            "nginx_access_log": self.nginx.access_log,
            "nginx_uwsgi_buffering": self.nginx.buffering,
            "nginx_workers": self.nginx.workers,
            "nginx_balance": self.nginx.balance or "round-robin",
        }


def shipped_options(root: Path) -> dict[str, str]:
    """The [vassal] section of the tree's emperor.ini: fleet's shipped per-vassal settings."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, inline_comment_prefixes=(";", "#"))
    parser.read(root / "emperor.ini")
    return dict(parser["vassal"]) if parser.has_section("vassal") else {}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def fleet_lab(root: Path) -> LabVariant:
    """fleet's settings, read from the tree (emperor.ini [vassal]; nginx logging as fleet's template has it)."""
    opts = shipped_options(root)
    threads = int(opts.get("threads", "1"))
    listen = int(opts.get("listen", "100"))
    logging_on = not _truthy(opts.get("disable-logging"))
    template = root / "nginx" / "nginx.conf"
    text = template.read_text() if template.exists() else ""
    access = "off" if "access_log off" in text else ("buffered" if "buffer=" in text else "on")
    label = (
        f"fleet's settings: threads {threads}, listen {listen}, uWSGI request log "
        f"{'on' if logging_on else 'off'}, nginx log {access}"
    )
    return LabVariant(
        "fleet", label, threads=threads, listen=listen, request_logging=logging_on, nginx=N.Tuning(access)
    )


def lab_variants(f: LabVariant) -> list[LabVariant]:
    """Each variant changes one thing of fleet's settings `f`: measured in pairs against it."""
    nginx = f.nginx
    other_threads = 2 if f.threads == 1 else 1
    log_label = "uWSGI request logging off" if f.request_logging else "uWSGI request logging on (uWSGI's default)"
    access = [
        ("off", "nginx access_log off"),
        ("on", "nginx access_log unbuffered"),
        ("buffered", "nginx access_log buffer=64k"),
    ]
    return [
        replace(f, key="uwsgi-log", label=log_label, request_logging=not f.request_logging),
        replace(f, key=f"threads-{other_threads}", label=f"threads = {other_threads}", threads=other_threads),
        *(
            replace(f, key=f"log-{mode}", label=label, nginx=replace(nginx, access_log=mode))
            for mode, label in access
            if mode != nginx.access_log
        ),
        replace(f, key="no-buffering", label="nginx uwsgi_buffering off", nginx=replace(nginx, buffering=False)),
        replace(f, key="nginx-1-worker", label="nginx worker_processes 1", nginx=replace(nginx, workers="1")),
        replace(f, key="least-conn", label="nginx upstream least_conn", nginx=replace(nginx, balance="least_conn")),
        replace(f, key="1x2", label="1 vassal x 2 processes (one shared socket)", vassals=1, processes=2),
    ]
