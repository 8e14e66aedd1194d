"""The serving stacks under test, each started on free loopback ports with the same app and 2 workers.

Like for like: every app server runs 2 worker processes with 1 thread each (fleet's shipped setting) and
no per-request log of its own; every nginx logs requests as fleet's does (combined, buffer=64k flush=2s).

- ceiling: nginx answering by itself (`return 200`), the most any proxied stack can reach.
- uwsgi-direct: uWSGI `http11-socket` serving the app alone, no proxy (HTTP/1.1 keep-alive).
- granian: granian (Rust HTTP server, WSGI interface) serving the app alone, no proxy.
- granian-nginx: nginx `proxy_pass` over a unix socket to granian (a new upstream connection per
  request, as nginx's `uwsgi_pass` opens one per request to fleet's vassals).
- tutorial: the reference tutorial's layout run natively: nginx `proxy_pass` over HTTP/TCP to two
  uWSGI servers in `http=` mode (1 process, 1 thread each; the tutorial's ini, less its request log).
- gunicorn: nginx `proxy_pass` to gunicorn, 2 sync workers, on a unix socket (gunicorn's documented setup).
- fleet: the real thing, `fleet up` in a copy of the tree, vassals overridden to 2 workers in all;
  bench.variants edits the copy (never the checkout) to measure one change at a time.
"""

from __future__ import annotations

import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import nginx as N
from harness import http
from harness.cluster import Cluster, copy_tree
from harness.ports import free_port
from harness.procs import Procs
from harness.wait import wait_for

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


@dataclass(frozen=True)
class Edit:
    """A text replacement in a file of a copy of the tree (`old` must be there exactly once)."""

    path: str
    old: str
    new: str

    def apply(self, root: Path) -> None:
        target = root / self.path
        text = target.read_text()
        if text.count(self.old) != 1:
            raise RuntimeError(f"{self.path}: expected one {self.old!r} to change, found {text.count(self.old)}")
        target.write_text(text.replace(self.old, self.new))


class Stacks:
    """Starts stacks into one Procs registry under one work dir; the app is `root/app/wsgi.py`."""

    def __init__(self, procs: Procs, root: Path, work: Path, threads: int = 1) -> None:
        self.procs = procs
        self.root = root
        self.work = work
        self.app_dir = root / "app"
        self.threads = threads  # per worker, in every app server

    def _dir(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _wait_http(self, port: int, what: str) -> None:
        wait_for(what, lambda: http.get(port, "/", timeout=2).status == 200, 60, 0.1, ignore=(OSError,))

    def _nginx(self, d: Path, upstream: str, location: str, name: str) -> int:
        port = free_port()
        N.start(self.procs, d / "nginx", N.render(d / "nginx", port, upstream, location), port, name)
        self._wait_http(port, name)
        return port

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
            f"--threads={self.threads}",
            "--listen=1024",
            "--disable-logging",
            f"--chdir={self.app_dir}",
            "--module=wsgi",
            "--need-app",
        ]
        if self.threads == 1:
            argv.remove("--threads=1")  # uWSGI's own default: no thread machinery at all
        proc = self.procs.start(argv, "uwsgi-direct", d / "uwsgi.log", signal.SIGINT, env={"FLEET_VASSAL": "direct"})
        self._wait_http(port, "uwsgi http11-socket")
        label = f"uWSGI http11-socket alone (no proxy), 2 processes x {self.threads} thread"
        return Target("uwsgi-direct", label, port, detail={"threads": self.threads, "pid": proc.pid})

    def _granian(self, d: Path, bind: list[str], name: str) -> None:
        argv = [
            tool("granian"),
            "--interface=wsgi",
            "--workers=2",
            f"--blocking-threads={self.threads}",
            "--runtime-threads=1",
            "--no-access-log",
            f"--working-dir={self.app_dir}",
            *bind,
            "wsgi:application",
        ]
        self.procs.start(argv, name, d / "granian.log", signal.SIGINT, env={"FLEET_VASSAL": name})

    def granian(self) -> Target:
        d = self._dir("granian")
        port = free_port()
        self._granian(d, ["--host=127.0.0.1", f"--port={port}"], "granian")
        self._wait_http(port, "granian")
        label = f"granian alone (no proxy), 2 workers x {self.threads} blocking thread"
        return Target("granian", label, port, detail={"threads": self.threads})

    def granian_nginx(self, keepalive: bool = False) -> Target:
        """nginx -> granian over a unix socket; `keepalive`: HTTP/1.1 upstream connections kept open."""
        key = "granian-nginx-keepalive" if keepalive else "granian-nginx"
        d = self._dir(key)
        sock = d / "granian.sock"
        self._granian(d, [f"--uds={sock}", "--uds-permissions=438"], key)  # 0666: nginx's workers connect
        wait_for("granian's socket", sock.exists, 60, 0.1, ignore=(OSError,))
        upstream = N.upstream_block("granian", [f"unix:{sock}"])
        extra = ""
        if keepalive:
            upstream = upstream.replace("    }", "        keepalive 32;\n    }")
            extra = '\n            proxy_http_version 1.1;\n            proxy_set_header Connection "";'
        location = f"""        location / {{
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_pass http://granian;{extra}
        }}"""
        port = self._nginx(d, upstream, location, f"nginx-{key}")
        label = "nginx proxy_pass -> granian (unix socket"
        label += ", upstream keep-alive)" if keepalive else ", a connection per request)"
        return Target(key, label, port, detail={"threads": self.threads, "upstream_keepalive": keepalive})

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
                "; not in the tutorial: no request log, as in every stack here\n"
                "disable-logging = true\n"
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
        upstream = N.upstream_block("my_servers", [f"127.0.0.1:{p}" for p in ports])
        location = f"""{TUTORIAL_PROXY_HEADERS}
        location / {{
            {N.uwsgi_params()}
            proxy_pass      http://my_servers;
            proxy_redirect  default;
        }}"""
        port = self._nginx(d, upstream, location, "nginx-tutorial")
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
        wait_for("gunicorn socket", sock.exists, 60, 0.1, ignore=(OSError,))
        upstream = N.upstream_block("app_server", [f"unix:{sock}"])
        location = """        location / {
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Host $http_host;
            proxy_redirect off;
            proxy_pass http://app_server;
        }"""
        port = self._nginx(d, upstream, location, "nginx-gunicorn")
        return Target("gunicorn", "nginx proxy_pass -> gunicorn sync x 2", port)

    # ---- fleet itself
    def fleet(
        self,
        vassals: int = 2,
        processes: int = 1,
        key: str = "fleet",
        extra: dict[str, str] | None = None,
        edits: tuple[Edit, ...] = (),
        label: str = "",
    ) -> Target:
        """`fleet up` in a copy of the tree with `vassals` backends of `processes` workers each.

        `extra` are per-vassal uWSGI overrides written into each vassal file (a documented override);
        `edits` change files of the copy (nginx/nginx.conf, emperor.ini, ...), never the checkout's.
        """
        d = self._dir(key)
        cluster = Cluster(copy_tree(self.root, d / "tree"), free_port())
        for edit in edits:
            edit.apply(cluster.root)
        cluster.set_vassals([f"backend-{i}" for i in range(1, vassals + 1)], processes, extra)
        self.procs.on_close(cluster.down)
        started = time.monotonic()
        cluster.up(timeout=300)
        took = time.monotonic() - started
        self._wait_http(cluster.port, "fleet")
        name = f"fleet: nginx uwsgi_pass -> {vassals} vassal{'s' if vassals > 1 else ''} x {processes}"
        detail = {"up_seconds": took, "extra": extra or {}, "edits": [e.path for e in edits], "root": str(cluster.root)}
        return Target(key, f"{name}{', ' + label if label else ''}", cluster.port, detail=detail)
