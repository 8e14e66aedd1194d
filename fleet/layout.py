"""Where a cluster keeps its files: everything is relative to its root (the folder holding emperor.ini)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fleet.errors import NotARoot


@dataclass(frozen=True)
class Layout:
    """All paths of one cluster. A copy of the tree is an independent cluster."""

    root: Path

    @classmethod
    def find(cls, root: str | os.PathLike | None = None) -> Layout:
        """The cluster at `root` (default: the current directory); fails if it has no emperor.ini."""
        path = Path(root or os.getcwd()).resolve()
        if not (path / "emperor.ini").is_file():
            raise NotARoot(
                f"{path} is not a fleet cluster: it has no emperor.ini.\n"
                "Run fleet from the folder that holds emperor.ini, or pass --root DIR."
            )
        return cls(path)

    # Sources, under version control.
    @property
    def emperor_ini(self) -> Path:
        return self.root / "emperor.ini"

    @property
    def vassals(self) -> Path:
        return self.root / "vassals"

    @property
    def app(self) -> Path:
        return self.root / "app"

    @property
    def nginx_template(self) -> Path:
        return self.root / "nginx" / "nginx.conf"

    # Runtime state, git-ignored.
    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def sockets(self) -> Path:
        return self.run / "sockets"

    @property
    def socket_holder(self) -> Path:
        """Where the vassal launcher asks the supervisor for its vassal's socket (fleet/ops/sockets.py)."""
        return self.run / "socket-holder.sock"

    @property
    def stats(self) -> Path:
        return self.run / "stats"

    @property
    def logs(self) -> Path:
        return self.run / "logs"

    @property
    def nginx_dir(self) -> Path:
        return self.run / "nginx"

    @property
    def nginx_conf(self) -> Path:
        return self.nginx_dir / "nginx.conf"

    @property
    def upstreams_conf(self) -> Path:
        return self.nginx_dir / "upstreams.conf"

    @property
    def slots(self) -> Path:
        """nginx's upstream slots: symlinks the control plane points at routed vassals' sockets."""
        return self.nginx_dir / "slots"

    @property
    def apps_conf(self) -> Path:
        """The apps' upstreams and host-name servers (http level), written by the control plane."""
        return self.nginx_dir / "apps.conf"

    @property
    def apps_default_conf(self) -> Path:
        """The locations of the apps served on any host name (inside the default server)."""
        return self.nginx_dir / "apps-default.conf"

    @property
    def listen_conf(self) -> Path:
        """The `listen` lines of every public server (`fleet up` writes them; the host-name servers include them)."""
        return self.nginx_dir / "listen.conf"

    @property
    def server_errors_conf(self) -> Path:
        """The JSON error answers every public server shares (rendered from nginx/server-errors.conf)."""
        return self.nginx_dir / "server-errors.conf"

    def app_upstreams(self, app: str) -> Path:
        """An app's upstream list; the default app keeps upstreams.conf."""
        return self.upstreams_conf if app == "default" else self.nginx_dir / "apps" / app / "upstreams.conf"

    def app_slots(self, app: str) -> Path:
        """An app's upstream slots; the default app keeps slots/."""
        return self.slots if app == "default" else self.nginx_dir / "apps" / app / "slots"

    @property
    def nginx_pid(self) -> Path:
        return self.run / "nginx.pid"

    @property
    def emperor_stats(self) -> Path:
        """The one Emperor's stats socket (fleet.core.emperors: `emperor` when there is one)."""
        return self.emperor_stats_of("emperor")

    @property
    def emperor_pid(self) -> Path:
        return self.emperor_pid_of("emperor")

    def emperor_stats_of(self, emperor: str) -> Path:
        """An Emperor's stats socket: run/emperor.sock, or run/emperor-2.sock when there are several."""
        return self.run / f"{emperor}.sock"

    def emperor_pid_of(self, emperor: str) -> Path:
        return self.run / f"{emperor}.pid"

    @property
    def state_file(self) -> Path:
        return self.run / "state.json"

    @property
    def usage_wanted(self) -> Path:
        """Touched by `fleet status`: someone reads the usage, so the control plane reads it each second."""
        return self.run / "usage-wanted"

    @property
    def drain_dir(self) -> Path:
        """`fleet rm` asks the control plane to drain a backend by creating run/drain/NAME."""
        return self.run / "drain"

    @property
    def weights_dir(self) -> Path:
        """`fleet weight NAME N` leaves run/weights/NAME.json: NAME's weight until its vassal file changes."""
        return self.run / "weights"

    @property
    def deploy_dir(self) -> Path:
        """`fleet deploy` and the control plane share run/deploy/ (the request, each step, the kept files)."""
        return self.run / "deploy"

    @property
    def events_file(self) -> Path:
        return self.logs / "events.jsonl"

    def processes_file(self, component: str) -> Path:
        """What `fleet up --component X` started (one file each: containers share run/)."""
        return self.run / f"processes-{component}.json"

    def supervisor_spec(self, component: str) -> Path:
        """What a detached supervisor runs (written by `fleet up --detach`)."""
        return self.run / f"supervise-{component}.json"

    def processes_files(self) -> list[Path]:
        return sorted(self.run.glob("processes-*.json"))

    def vassal_file(self, name: str) -> Path:
        return self.vassals / f"{name}.ini"

    def socket(self, name: str) -> Path:
        """The vassal's uwsgi socket. The supervisor creates and holds it and hands it to the vassal
        (fleet/ops/sockets.py), so it outlives a crash of the vassal: connections wait in its backlog."""
        return self.sockets / f"{name}.socket"

    def stats_socket(self, name: str) -> Path:
        return self.stats / f"{name}.sock"

    @property
    def fifo_dir(self) -> Path:
        return self.run / "fifo"

    def fifo(self, name: str) -> Path:
        """The vassal's master FIFO: writing 'r' reloads it gracefully."""
        return self.fifo_dir / f"{name}.fifo"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def make_run_dirs(self) -> None:
        for path in (
            self.run,
            self.sockets,
            self.stats,
            self.logs,
            self.run / "fifo",
            self.drain_dir,
            self.weights_dir,
            self.deploy_dir,
            self.nginx_dir,
            self.nginx_dir / "tmp",
            self.slots,
        ):
            path.mkdir(parents=True, exist_ok=True)


def write_atomically(path: Path, content: str) -> None:
    """Write via a temp file in the same folder and rename, so readers never see a half-written file.

    The temp name is hidden and ends in .tmp, which neither the Emperor nor the control plane treats
    as a vassal.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:  # a full disk or an interruption leaves no half-written temp file behind
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
