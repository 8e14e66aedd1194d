"""Keeping fleet's own parts alive: the Emperor, nginx and the control plane, restarted with backoff.

`fleet up` runs a Supervisor: in the foreground it is the `up` process itself; with --detach it is a
`fleet supervise` process of its own. Each part runs in its own session (process group), so a part
that dies takes nothing with it unnoticed: before a part is started again, whatever is left of its
group is stopped (a dead Emperor's vassals would delete the sockets of the new ones on their way out).

The supervisor owns nginx's listening sockets: it binds them before the first nginx and hands them to
every nginx it starts (the NGINX variable, as in nginx's binary upgrade). A dead nginx's listener is
therefore never closed: connections wait in its queue for the next nginx, which is started at once, and
only what the dead one had accepted is lost. What is left of a dead nginx's group (its workers, when only
the master died) serves on the same sockets until the new one runs, then finishes its requests and quits.

The supervisor does not poll its parts: between passes it blocks until a child exits (SIGCHLD), a signal
asks it to stop, or the next restart is due (processes.ChildExits).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fleet import processes
from fleet.core import emperors, held
from fleet.errors import FleetError
from fleet.layout import Layout, write_atomically
from fleet.ops.sockets import SocketHolder
from fleet.proxy.nginx import inherited as nginx_inherits

log = logging.getLogger("fleet.supervisor")

# Stopping goes in this order: the control plane first (no more routing changes), then nginx (SIGQUIT:
# stop accepting, finish in-flight requests), then the Emperors (their vassals finish theirs), by kind():
# emperor-1, emperor-2... are each an `emperor`.
STOP_ORDER = ("control", "nginx", "emperor")
# How each part stops gracefully: the control plane on SIGTERM; nginx on SIGQUIT (stop accepting, finish
# in-flight requests); the Emperor on SIGTERM (graceful vassal shutdown). Stopped in STOP_ORDER.
STOPPING = {
    "control": (signal.SIGTERM, 10.0),
    "nginx": (signal.SIGQUIT, 30.0),
    "emperor": (signal.SIGTERM, 40.0),
}
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 30.0
STABLE_AFTER = 60.0  # a part that ran this long is healthy again: its backoff starts over
# A part with listeners: clients queue on its sockets while it is dead. One that ran this long was not
# crash-looping (its config passed `nginx -t` and it served): it is started again without delay.
LISTENER_STABLE_AFTER = 1.0
# ... and a connection waits at most this long in the queue for it, as on a vassal's held socket; in a longer
# backoff (the part crash-loops) what arrives is refused at once: a refused connection is a fast error, a
# queued one a hang.
QUEUE_AT_MOST = held.GRACE


@dataclass(frozen=True)
class PartSpec:
    """How to run one part: its command, its log, and how to stop it gracefully."""

    name: str
    argv: list[str]
    stop_signal: int
    stop_timeout: float
    # TCP listeners (host, port) the supervisor binds once and hands to every run of this part (nginx's
    # way: its NGINX variable). Such a part is restarted at once, then what is left of the dead one stopped.
    listeners: list[tuple[str, int]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, doc: dict) -> PartSpec:
        listeners = [(str(host), int(port)) for host, port in doc.get("listeners", [])]
        return cls(doc["name"], list(doc["argv"]), int(doc["stop_signal"]), float(doc["stop_timeout"]), listeners)


@dataclass(frozen=True)
class SupervisorSpec:
    """Everything a supervisor needs, written by `fleet up` for a detached `fleet supervise`."""

    component: str
    parts: list[PartSpec]
    env: dict[str, str]
    port: int
    listen: str
    extra: dict = field(default_factory=dict)  # recorded as is (e.g. the admin port)
    socket_group: str | None = None  # the group of the vassals' sockets (nginx workers'), when root

    def write(self, path: Path) -> None:
        doc = asdict(self)
        write_atomically(path, json.dumps(doc, indent=1) + "\n")

    @classmethod
    def read(cls, path: Path) -> SupervisorSpec:
        doc = json.loads(path.read_text())
        doc["parts"] = [PartSpec.from_dict(p) for p in doc["parts"]]
        return cls(**doc)


def kind(part: str) -> str:
    """What a part is, for its place in STOP_ORDER and its STOPPING: emperor-2 is an `emperor`."""
    return "emperor" if emperors.is_emperor(part) else part


def stop_in_order(
    pids: Mapping[str, int],
    say: Callable[[str], object] = lambda _: None,
    how: Mapping[str, tuple[int, float]] = STOPPING,
) -> None:
    """Stop the parts `pids` ({name: pid}) gracefully, one kind after the other in STOP_ORDER (the parts of
    one kind together), each with its signal and timeout from `how` (by name, else by kind); SIGKILL only
    what overstays its timeout. The supervisor stops its own children so, and `fleet down` whatever it
    finds running."""
    for part_kind in STOP_ORDER:
        names = sorted(n for n in pids if kind(n) == part_kind)
        if not names:
            continue
        ways = {name: how[name] if name in how else how[part_kind] for name in names}
        for name in names:
            say(f"fleet: stopping {name} (pid {pids[name]})...")
        # The parts of one kind (several Emperors) stop together: each waits for its own vassals' requests,
        # so `fleet down` takes the longest of them, not their sum.
        with ThreadPoolExecutor(len(names)) as pool:
            # An Emperor whose vassals have all exited is done: not waited for until it notices (fleet down: ~2 s).
            jobs = [(pids[n], *ways[n], part_kind == "emperor") for n in names]
            graceful = list(pool.map(lambda job: processes.stop(*job), jobs))
        for name, ok in zip(names, graceful, strict=True):
            if not ok:
                say(f"fleet: {name} did not stop within {ways[name][1]:.0f} s; killed it")


def port_taken(where: str, e: OSError, choose: str = "--port N (or FLEET_PORT)") -> FleetError:
    """What to tell the user when a listener cannot be bound."""
    return FleetError(
        f"cannot listen on {where}: {e.strerror}. Another fleet or server uses it: "
        f"stop it, or choose another port with {choose}."
    )


def _where(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def backoff(recent_deaths: int) -> float:
    """Seconds before starting a part again, after this many deaths in a row (pure)."""
    if recent_deaths <= 1:
        return BACKOFF_FIRST
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (recent_deaths - 1))


class Supervisor:
    def __init__(self, layout: Layout, setup: SupervisorSpec, clock: Callable[[], float] = time.monotonic):
        self.layout, self.setup, self.clock = layout, setup, clock
        self.specs = {p.name: p for p in setup.parts}
        self.procs: dict[str, subprocess.Popen] = {}
        self.started_at: dict[str, float] = {}
        self.deaths: dict[str, int] = {name: 0 for name in self.specs}
        self.restart_at: dict[str, float] = {}
        self.leftovers: dict[str, int] = {}  # a dead part's process group, stopped once its replacement runs
        self.listeners: dict[str, list[socket.socket]] = {}  # held for the life of the supervisor
        self.restarts = 0
        self.exits: processes.ChildExits | None = None
        # The vassals' sockets live as long as this process, which outlives every part (fleet/ops/sockets.py).
        runs_emperors = any(kind(name) == "emperor" for name in self.specs)
        self.holder = SocketHolder(layout, setup.socket_group) if runs_emperors else None

    def start(self) -> dict[str, subprocess.Popen]:
        """Bind the parts' listeners (FleetError if one is taken), then start every part."""
        for name, spec in self.specs.items():
            if spec.listeners and name not in self.listeners:
                try:
                    self.listeners[name] = processes.bind_listeners(spec.listeners)
                except OSError as e:
                    self.close_listeners()
                    raise port_taken(", ".join(f"{host}:{port}" for host, port in spec.listeners), e) from None
        self.exits = self.exits or processes.ChildExits()  # before the first child: no exit goes unheard
        if self.holder is not None and self.holder.thread is None:
            self.holder.start()  # before the Emperors: their vassals' launchers ask it for their sockets
        for name in self.specs:
            self._spawn(name)
        self.record()
        return self.procs

    def _spawn(self, name: str) -> None:
        spec, env = self.specs[name], self.setup.env
        fds = tuple(sock.fileno() for sock in self.listeners.get(name, []))
        if fds:
            env = env | nginx_inherits(list(fds))
        self.procs[name] = processes.spawn(spec.argv, self.layout.log(name), env, self.layout.root, pass_fds=fds)
        self.started_at[name] = self.clock()

    def close_listeners(self) -> None:
        """Close the supervisor's copies: once the parts holding them are gone too, the ports are free."""
        for sockets in self.listeners.values():
            for sock in sockets:
                sock.close()
        self.listeners.clear()

    def wait(self, at_most: float | None = None) -> None:
        """Block until a part exits, a signal arrives, the next restart is due, or `at_most` seconds pass
        (None: no limit but those). Then `check()` says what happened."""
        timeout = at_most
        if self.restart_at:
            due = max(0.0, min(self.restart_at.values()) - self.clock())
            timeout = due if timeout is None else min(timeout, due)
        if self.exits is None:
            raise RuntimeError("Supervisor.wait() before start()")
        for sock in self.exits.wait(timeout, self._unserved_listeners()):
            refused = processes.refuse_pending(sock)
            log.warning("refused %d connection(s) on %s: nothing serves it until the restart", refused, _where(sock))

    def _unserved_listeners(self) -> list[socket.socket]:
        """The held listeners of parts whose restart is more than QUEUE_AT_MOST away with nothing left of
        them: what arrives there is refused at once (a client would only hang in the queue). A part
        restarted soon, or one whose orphaned workers still serve, keeps its queue."""
        now = self.clock()
        return [
            sock
            for name, at in self.restart_at.items()
            if at - now > QUEUE_AT_MOST and name in self.listeners
            if not processes.group_members(self.leftovers.get(name, -1))
            for sock in self.listeners[name]
        ]

    def check(self) -> list[str]:
        """Notice dead parts and start them again when their backoff is over; returns what happened."""
        said, now, changed = [], self.clock(), False
        for name, proc in list(self.procs.items()):
            if name in self.restart_at or proc.poll() is None:
                continue
            listens = bool(self.specs[name].listeners)
            if now - self.started_at[name] > (LISTENER_STABLE_AFTER if listens else STABLE_AFTER):
                self.deaths[name] = 0
            self.deaths[name] += 1
            delay = backoff(self.deaths[name])
            if listens:
                # Its clients wait in the listeners' queues (and its orphaned workers, if the master
                # alone died, still serve on them): start the new one first, then stop what is left.
                self.leftovers[name] = proc.pid
                delay = 0.0 if self.deaths[name] == 1 else delay
            said.append(f"{name} (pid {proc.pid}) exited with status {proc.returncode}; restarting in {delay:.1f} s")
            if not listens:
                self._clear_group(name, proc.pid)
            self.restart_at[name] = now + delay
        for name, at in list(self.restart_at.items()):
            if now >= at:
                del self.restart_at[name]
                self._spawn(name)
                self.restarts += 1
                changed = True
                said.append(f"{name} started again (pid {self.procs[name].pid})")
                if name in self.leftovers:
                    # On the same sockets as the new one: they stop accepting, and what is queued waits
                    # for the new workers (nothing to wait for before telling them).
                    self._clear_group(name, self.leftovers.pop(name))
        if changed:
            self.record()
        for line in said:
            log.warning("%s", line)
        return said

    def _clear_group(self, name: str, pgid: int) -> None:
        """What is left of a dead part's process group is stopped before it starts again."""
        spec = self.specs[name]
        if processes.group_members(pgid):
            processes.stop_group(pgid, spec.stop_signal, spec.stop_timeout)

    def stop(self, say: Callable[[str], object] = lambda _: None) -> None:
        """Stop every part gracefully, in STOP_ORDER; SIGKILL only what overstays its timeout."""
        self.restart_at.clear()
        # First: a connection that arrives from now on is refused (once nginx closes its copies) rather
        # than queued on the supervisor's copy and reset when it exits.
        self.close_listeners()
        how = {name: (spec.stop_signal, spec.stop_timeout) for name, spec in self.specs.items()}
        stop_in_order({name: proc.pid for name, proc in self.procs.items()}, say, how)
        for proc in self.procs.values():
            proc.poll()
        if self.holder is not None:
            self.holder.close()  # the Emperors and their vassals are gone: nothing serves those sockets now
            self.holder = None
        if self.exits is not None:
            self.exits.close()
            self.exits = None
        self.layout.processes_file(self.setup.component).unlink(missing_ok=True)

    def record(self) -> None:
        """run/processes-COMPONENT.json: pids and start times, so `fleet down` and `status` find them."""
        pids = {name: p.pid for name, p in self.procs.items()} | {"supervisor": os.getpid()}
        doc = {
            "pids": pids,
            "started": {name: processes.start_time(pid) for name, pid in pids.items()},
            "port": self.setup.port,
            "listen": self.setup.listen,
            "restarts": self.restarts,
            "pid_namespace": processes.pid_namespace(),
            **self.setup.extra,
        }
        write_atomically(self.layout.processes_file(self.setup.component), json.dumps(doc, indent=1) + "\n")


def run_detached(layout: Layout, component: str) -> int:
    """`fleet supervise`: start the parts `fleet up --detach` planned, keep them alive until SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    setup = SupervisorSpec.read(layout.supervisor_spec(component))
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    supervisor = Supervisor(layout, setup)
    supervisor.start()
    log.info("supervising %s", ", ".join(supervisor.procs))
    while not stopping:
        supervisor.check()
        supervisor.wait()  # a part's exit, a signal or the next restart: nothing else needs this process
    log.info("stopping on signal %d", stopping[0])
    supervisor.stop(lambda line: log.info("%s", line))
    return 0
