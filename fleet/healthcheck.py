"""The containers' health checks, one per image: `fleet-healthcheck PART`, exit 0 if healthy, else 1.

emperor: each uWSGI Emperor recorded in run/processes-emperor.json answers on its stats socket
    (run/emperor-1.sock...; run/emperor.sock for one) with its JSON stats. A vassal that fails does not
    make an Emperor unhealthy: the gateway routes around it, and must start anyway.
gateway: nginx answers /healthz on the container port (200: some backend serves; 503: nginx's own "no
    healthy backend" answer; both are a working gateway, a refused connection or a 502 is not), and the
    control plane is alive: it rewrites run/state.json at least every 2 s (its heartbeat).
cell: the cell's health port answers /alive with 200 (fleet.swarm.edge.cell_alive: once the cell has
    served, then for as long as it runs).
edge: the edge's nginx answers on its loopback status port (whether cells serve is not the edge's health).

Docker runs a check every 2 s in every container, so this module imports the standard library only
(nothing of fleet, not even http.client): the check is a Python start-up and one request.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

TIMEOUT = 3.0
GATEWAY_PORT = 8080  # the container port of the gateway's nginx
CELL_HEALTH_PORT = 8090  # a cell's health port, for the edges (fleet.swarm.edge.EdgeSettings)
EDGE_STATUS_PORT = 8082  # the edge's liveness answer on its loopback (fleet.swarm.edge.EdgeSettings)
STATE_MAX_AGE = 10.0  # the control plane publishes at least every 2 s


class Unhealthy(Exception):
    """The part answered, but not as a healthy one does."""


def get(port: int, path: str, timeout: float = TIMEOUT) -> tuple[int, str]:
    """GET `path` from 127.0.0.1:`port` (HTTP/1.0: the server closes when done): (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or not status[1].isdigit():
        raise Unhealthy(f"not an HTTP answer on port {port}: {head[:60]!r}")
    return int(status[1]), body.decode("utf-8", "replace").strip()


def emperor_names(root: Path) -> list[str]:
    """The Emperors `fleet up --component emperor` recorded (emperor-1, emperor-2...; `emperor` if none)."""
    try:
        pids = json.loads((root / "run" / "processes-emperor.json").read_text()).get("pids", {})
    except (OSError, ValueError):
        pids = {}
    return sorted(n for n in pids if n == "emperor" or n.startswith("emperor-")) or ["emperor"]


def emperor(root: Path) -> str:
    """Read every Emperor's stats; raise if one does not answer with them."""
    said = []
    for name in emperor_names(root):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(str(root / "run" / f"{name}.sock"))
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        stats = json.loads(b"".join(chunks))
        said.append(f"{name} answers, {len(stats.get('vassals', []))} vassals")
    return "; ".join(said)


def gateway(root: Path, port: int) -> str:
    """nginx answers as a working gateway does, and the control plane has published lately."""
    status, _ = get(port, "/healthz")
    # 308: with HTTPS, plain HTTP answers with a redirect to it (`--http-redirect`), nginx's own answer.
    if status not in (200, 308, 503):
        raise Unhealthy(f"nginx answered {status}")
    written_at = float(json.loads((root / "run" / "state.json").read_text()).get("written_at", 0))
    age = time.time() - written_at
    if age > STATE_MAX_AGE:
        raise Unhealthy(f"nginx answers {status}, but the control plane has not published for {age:.0f} s")
    return f"nginx answers {status}; control plane published {age:.1f} s ago"


def answers_200(port: int, path: str) -> str:
    """The answer's body if it is a 200; Unhealthy otherwise."""
    status, body = get(port, path)
    if status != 200:
        raise Unhealthy(f"{status} {body}")
    return body


CHECKS: dict[str, Callable[[Path, int | None], str]] = {
    "emperor": lambda root, _port: emperor(root),
    "gateway": lambda root, port: gateway(root, port or GATEWAY_PORT),
    "cell": lambda _root, port: answers_200(port or CELL_HEALTH_PORT, "/alive"),
    "edge": lambda _root, port: answers_200(port or EDGE_STATUS_PORT, "/"),
}
USAGE = f"usage: fleet-healthcheck {'|'.join(CHECKS)} [PORT]  (in the fleet root, or with --root DIR)"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path.cwd()
    if args[:1] == ["--root"] and len(args) > 1:
        root, args = Path(args[1]), args[2:]
    if not 1 <= len(args) <= 2 or args[0] not in CHECKS or (len(args) == 2 and not args[1].isdigit()):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        print(CHECKS[args[0]](root, int(args[1]) if len(args) == 2 else None))
    except (OSError, ValueError, Unhealthy) as e:
        print(f"unhealthy: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
