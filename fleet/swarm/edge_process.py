"""`fleet edge` (I/O): nginx in front of the cells, its private resolver, and the loop that probes cells.

Every `interval`: resolve tasks.cell (Swarm's DNS: one address per task), probe every cell's health
port in parallel, let fleet.edge.decide() say who is routed, and hand that to the resolver that the
edge's nginx asks. nginx is never reloaded; the edge binds its listeners and hands them to nginx (as
fleet's supervisor does), so an nginx that dies after serving is started again on the same sockets and
no connection is refused meanwhile (one that dies within RESTART_AFTER of its start stops the edge: the
container's restart policy takes over). State for operators and tests: run/edge/state.json. SIGTERM
stops nginx gracefully (in-flight requests finish), then the edge.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from fleet import processes
from fleet.config import Limits, human
from fleet.control.certs import CertWatcher
from fleet.errors import FleetError
from fleet.layout import Layout, write_atomically
from fleet.proxy import nginx, tls
from fleet.swarm import dns, edge
from fleet.swarm.edge import Answer, Cell, EdgeSettings

log = logging.getLogger("fleet.edge")
STOP_TIMEOUT = 30.0  # nginx finishes the requests in flight (a cell answers or times out before this)
RESTART_AFTER = 1.0  # an nginx that ran this long was not crash-looping: it is started again at once


class Resolver(threading.Thread):
    """The DNS server nginx asks for the routed cells, on 127.0.0.1 (a free port): `addresses` is
    replaced whole by the loop, and read whole here, so no lock is needed."""

    def __init__(self, name: str, ttl: int):
        super().__init__(name="edge-resolver", daemon=True)
        self.name_served, self.ttl = name, ttl
        self.addresses: tuple[str, ...] = ()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def run(self) -> None:
        while True:
            data, peer = self.sock.recvfrom(4096)
            reply: bytes | None
            try:
                reply = dns.answer(dns.parse_query(data), self.name_served, self.addresses, self.ttl)
            except dns.BadQuery:
                reply = dns.refuse(data)
            if reply is not None:
                self.sock.sendto(reply, peer)


def discover(name: str) -> frozenset[str] | None:
    """Every address `name` resolves to; empty if it does not exist (no task); None if DNS failed."""
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror as e:
        if e.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            return frozenset()
        log.warning("cannot resolve %s: %s; keeping the cells known", name, e)
        return None
    return frozenset(str(info[4][0]) for info in infos)  # AF_INET: (host, port), host a str


def probe(address: str, settings: EdgeSettings) -> Answer:
    """GET the cell's health port: `serving`, `draining`, `starting` or `unreachable`."""
    conn = http.client.HTTPConnection(address, settings.health_port, timeout=settings.probe_timeout)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        resp = conn.getresponse()
        body = json.loads(resp.read() or b"{}")
        return edge.parse_health(resp.status, body if isinstance(body, dict) else {})
    except (OSError, ValueError, http.client.HTTPException) as e:
        return Answer("unreachable", detail=f"{type(e).__name__}: {e}")
    finally:
        conn.close()


def render_config(
    layout: Layout, run: Path, port: int, listen: str, resolver: str, settings: EdgeSettings, limits: Limits
) -> str:
    user = nginx.worker_user()
    values = {
        "run": str(run),
        "user": f"user {user};" if user else "# (not root: workers run as the current user)",
        "port": str(port),
        "listen": listen,
        "resolver": resolver,
        "resolver_name": settings.resolver_name,
        "dns_valid": str(settings.dns_valid),
        "cell_port": str(settings.cell_port),
        "status_port": str(settings.status_port),
        "max_body": human(limits.max_body),
        "header_buffer": human(limits.header_buffer),
        "cell_read_timeout": str(limits.read_timeout),
        # A cell answers its own 504 at read_timeout; the edge waits a little longer for that answer.
        "read_timeout": str(limits.read_timeout + 5),
    }
    return nginx.render_template((layout.root / "nginx" / "edge.conf").read_text(), values)


class Edge:
    def __init__(
        self,
        layout: Layout,
        port: int,
        listen: str,
        settings: EdgeSettings,
        limits: Limits,
        https: tls.Https | None = None,
        tls_pair: tuple[str, str] | None = None,
    ):
        self.layout, self.port, self.listen = layout, port, listen
        # HTTPS terminated here as in a cell's nginx: the pair looked at each pass, no reload to rotate it.
        self.https: tls.Https | None = https if tls_pair else None
        self.tls_pair: tuple[str, str] | None = tls_pair if https else None
        self.certs: CertWatcher | None = None
        self.settings, self.limits = settings, limits
        self.run_dir = layout.run / "edge"
        self.cells: dict[str, Cell] = {}
        self.routed: tuple[str, ...] = ()
        self.stop_requested: list[int] = []
        self.resolver = Resolver(settings.resolver_name, settings.dns_valid)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="edge-probe")
        self.listeners: list[socket.socket] = []  # bound once, handed to every nginx the edge starts

    def start_nginx(self) -> subprocess.Popen:
        for sub in ("", "tmp"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        if self.tls_pair is not None:
            tls.install_checked(self.layout, *self.tls_pair, nginx.worker_group())
            self.certs = CertWatcher(self.layout, *self.tls_pair)
        tls.write_includes(self.layout, self.run_dir, self.listen, self.https)
        conf = self.run_dir / "nginx.conf"
        write_atomically(
            conf,
            render_config(
                self.layout, self.run_dir, self.port, self.listen, self.resolver.address, self.settings, self.limits
            ),
        )
        argv = [nginx.binary(), "-p", str(self.run_dir), "-c", str(conf), "-e", "stderr"]
        check = subprocess.run([*argv, "-t", "-q"], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise FleetError(f"nginx rejects the edge configuration rendered from nginx/edge.conf:\n{check.stderr}")
        if not self.listeners:
            self.listeners = processes.bind_listeners(nginx.listeners(conf))
        fds = [sock.fileno() for sock in self.listeners]
        return subprocess.Popen(
            [*argv, "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **nginx.inherited(fds)},  # its environment passed on whole, plus the sockets
            pass_fds=fds,
        )

    def one_pass(self) -> None:
        found = discover(self.settings.cells_name)
        targets = sorted(found if found is not None else self.cells)
        answers = dict(zip(targets, self.pool.map(lambda a: probe(a, self.settings), targets), strict=True))
        decision = edge.decide(self.cells, found, answers, self.settings)
        if decision.routed != self.routed:
            self.resolver.addresses = decision.routed  # from now on nginx learns the new set
        for event in decision.events:
            log.info("%s", event)
        changed = decision.cells != self.cells or decision.routed != self.routed
        self.cells, self.routed = decision.cells, decision.routed
        if changed:
            self.publish()

    def publish(self) -> None:
        doc = {
            "updated": time.time(),
            "routed": list(self.routed),
            "cells": [
                {
                    "address": c.address,
                    "host": c.host,
                    "state": c.state.value,
                    "failures": c.failures,
                    "detail": c.detail,
                }
                for c in self.cells.values()
            ],
        }
        write_atomically(self.run_dir / "state.json", json.dumps(doc, indent=1) + "\n")

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, _frame: self.stop_requested.append(signum))
        self.resolver.start()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # One pass first: a new edge (its port answers as soon as nginx listens) starts with the cells
        # that serve instead of a few hundred milliseconds of "no healthy cell".
        self.one_pass()
        self.publish()
        proc, started_nginx = self.start_nginx(), time.monotonic()
        log.info(
            "edge: listening on %s:%d, balancing over %s (cells' port %d, health port %d)",
            self.listen,
            self.port,
            self.settings.cells_name,
            self.settings.cell_port,
            self.settings.health_port,
        )
        exit_code = 0
        while not self.stop_requested:
            started = time.monotonic()
            if proc.poll() is not None:
                if started - started_nginx < RESTART_AFTER:
                    log.error("edge: nginx exited with status %s; stopping", proc.returncode)
                    exit_code = 1
                    break
                log.error("edge: nginx exited with status %s; starting it again on its sockets", proc.returncode)
                old = proc.pid
                proc, started_nginx = self.start_nginx(), time.monotonic()
                if processes.group_members(old):  # its workers, if only the master died: they finish and quit
                    processes.stop_group(old, signal.SIGQUIT, STOP_TIMEOUT)
            self.one_pass()
            if self.certs is not None:
                self.certs.look()
            # The interval between passes; a stop request is seen within it.
            time.sleep(max(0.0, self.settings.interval - (time.monotonic() - started)))
        for sock in self.listeners:  # first: from now on a new connection is refused, not queued and reset
            sock.close()
        log.info("edge: stopping nginx gracefully (in-flight requests finish)")
        if proc.poll() is None and not processes.stop(proc.pid, signal.SIGQUIT, STOP_TIMEOUT):
            log.warning("edge: nginx did not stop within %.0f s; killed it", STOP_TIMEOUT)
        proc.wait()
        self.pool.shutdown(wait=False, cancel_futures=True)
        log.info("edge: stopped")
        return exit_code


def main(
    layout: Layout,
    port: int,
    listen: str,
    settings: EdgeSettings,
    limits: Limits,
    https: tls.Https | None = None,
    tls_pair: tuple[str, str] | None = None,
) -> int:
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s.%(msecs)03d %(message)s", datefmt="%H:%M:%S"
    )
    os.umask(0o022)
    return Edge(layout, port, listen, settings, limits, https, tls_pair).run()
