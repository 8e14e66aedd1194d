#!/usr/bin/env python3
"""Container healthchecks for docker-compose.yml: `fleet-healthcheck emperor|gateway`, exit 0 if healthy.

emperor: the uWSGI Emperor answers on its stats socket (run/emperor.sock) with its JSON stats. A vassal
    that fails does not make the Emperor unhealthy: the gateway routes around it, and must start anyway.
gateway: nginx answers HTTP on the container port (200: some backend serves; 503: nginx's own "no
    healthy backend" answer; both are a working gateway, a refused connection or a 502 is not), and the
    control plane is alive: it rewrites run/state.json at least every 2 s (its heartbeat).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import time

TIMEOUT = 2.0


def emperor(root: str) -> str:
    """Read the Emperor's stats; raise if it does not answer with them."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(os.path.join(root, "run", "emperor.sock"))
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    sock.close()
    stats = json.loads(b"".join(chunks))
    return f"emperor answers, {len(stats.get('vassals', []))} vassals"


def gateway(port: int) -> str:
    """Ask nginx for /healthz; raise unless it answered as a working gateway does."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    conn.request("GET", "/healthz", headers={"Connection": "close"})
    status = conn.getresponse().status
    conn.close()
    if status not in (200, 503):
        raise RuntimeError(f"nginx answered {status}")
    return f"nginx answers {status}"


def control_plane(root: str, max_age: float = 10.0) -> str:
    """The control plane's heartbeat: run/state.json written within `max_age` seconds."""
    with open(os.path.join(root, "run", "state.json")) as f:
        written_at = float(json.load(f).get("written_at", 0))
    age = time.time() - written_at
    if age > max_age:
        raise RuntimeError(f"the control plane has not published for {age:.0f} s")
    return f"control plane published {age:.1f} s ago"


def main(argv: list[str]) -> int:
    root = os.environ.get("FLEET_ROOT", os.getcwd())
    port = int(os.environ.get("FLEET_CONTAINER_PORT", "8080"))
    checks = {
        "emperor": lambda: emperor(root),
        "gateway": lambda: f"{gateway(port)}; {control_plane(root)}",
    }
    if len(argv) != 2 or argv[1] not in checks:
        print(f"usage: {argv[0]} {'|'.join(checks)}", file=sys.stderr)
        return 2
    try:
        print(checks[argv[1]]())
    except (OSError, ValueError, RuntimeError, http.client.HTTPException) as exc:
        print(f"unhealthy: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
