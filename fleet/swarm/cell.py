"""`fleet cell` (I/O): one Swarm task running a whole fleet, that drains itself before it stops.

It runs `fleet up --component all` (Emperor, vassals, nginx, control plane) as a child and serves the
cell's health port for the edges. On SIGTERM (`docker service update`, `scale`, `stack rm`) it does not
pass the signal on at once: the health port says `draining` while the fleet keeps serving, and only
once no edge can still be sending new requests (fleet.edge.drained) does the fleet get its SIGTERM,
which stops it gracefully (nginx finishes its requests, then the Emperor stops the vassals). All of it
must fit in the service's stop_grace_period. A second signal skips the wait.

The container's healthcheck (`fleet-healthcheck cell`, fleet.healthcheck) asks the health port's /alive
(fleet.swarm.edge.cell_alive: 200 once the cell has served).
"""

from __future__ import annotations

import http.client
import http.server
import json
import signal
import socket
import subprocess
import sys
import threading
import time

from fleet import processes
from fleet.layout import Layout
from fleet.swarm import edge

FLEET_TIMEOUT = 2.0  # for the cell's own nginx to answer /healthz


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} cell     | {message}", flush=True)


class HealthPort:
    """What the health port needs to know: whether the cell drains, and when it last said `serving`."""

    def __init__(self, fleet_port: int, host: str):
        self.fleet_port, self.host = fleet_port, host
        self.draining = False
        self.ever_served = False
        self.last_told_serving: float | None = None  # to an edge (any peer but loopback)

    def fleet_answer(self) -> int | None:
        conn = http.client.HTTPConnection("127.0.0.1", self.fleet_port, timeout=FLEET_TIMEOUT)
        try:
            conn.request("GET", "/healthz", headers={"Connection": "close"})
            return conn.getresponse().status
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def health(self, peer: str) -> tuple[int, dict[str, str]]:
        code, body = edge.cell_health(self.draining, None if self.draining else self.fleet_answer(), self.host)
        # Re-checked after the probe of the fleet: a drain that began meanwhile must not be missed.
        if self.draining:
            code, body = edge.cell_health(True, None, self.host)
        elif code == 200:
            self.ever_served = True
            if not peer.startswith("127."):
                self.last_told_serving = time.monotonic()
        return code, body

    def alive(self) -> tuple[int, dict[str, str]]:
        if not self.ever_served and not self.draining:
            self.ever_served = self.fleet_answer() == 200
        if edge.cell_alive(self.ever_served):
            return 200, {"alive": "yes", "host": self.host}
        return 503, {"alive": "not yet: it has not served", "host": self.host}


def health_server(cell: HealthPort, port: int) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            if self.path == "/alive":
                code, body = cell.alive()
            else:
                code, body = cell.health(self.client_address[0])
            data = (json.dumps(body) + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:  # probes every 0.5 s per edge: not worth a line
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    return server


def run(layout: Layout, fleet_port: int, health_port: int, drain_wait: float, up: list[str]) -> int:
    """Run `fleet <up...>` (its flags carry every setting) as a child; drain it on SIGTERM, then stop it."""
    signals: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: signals.append(signum))
    cell = HealthPort(fleet_port, socket.gethostname())
    server = health_server(cell, health_port)
    threading.Thread(target=server.serve_forever, name="cell-health", daemon=True).start()
    argv = [sys.executable, "-m", "fleet", "--root", str(layout.root), *up]
    exits = processes.ChildExits()  # before the child starts: its exit cannot go unheard
    # Its own session: the stop signal reaches the fleet only when the drain says so.
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    say(f"{cell.host}: fleet on port {fleet_port}, health port {health_port}, drain {drain_wait:.1f} s")
    while not signals and child.poll() is None:
        exits.wait(None)  # the fleet's exit or a signal
    if child.poll() is not None:
        say(f"fleet exited with status {child.returncode}")
        exits.close()
        return child.returncode or 1
    cell.draining = True
    say("draining: the health port says so, the fleet keeps serving until the edges stop sending")
    # last_told_serving is read on every turn: a probe answered just as the drain began counts too.
    while len(signals) < 2 and child.poll() is None:
        now, last = time.monotonic(), cell.last_told_serving
        if edge.drained(now, last, drain_wait):
            break
        exits.wait(max(0.0, last + drain_wait - now) if last is not None else 0.0)
    exits.close()
    say("out of the edges' rotation: stopping the fleet gracefully")
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    code = child.wait()
    server.shutdown()
    say(f"stopped (fleet exited with status {code})")
    return code
