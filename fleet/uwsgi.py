"""Talking to uWSGI: its binary, its option names, its stats sockets and the uwsgi wire protocol."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fleet.errors import MissingTool


def binary() -> str:
    """The uwsgi binary: $FLEET_UWSGI, else the one beside this Python (the venv's), else $PATH's."""
    candidates = [
        os.environ.get("FLEET_UWSGI"),
        str(Path(sys.executable).parent / "uwsgi"),
        shutil.which("uwsgi"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise MissingTool("uwsgi is not installed. Run `make install` (it creates .venv with uWSGI) and retry.")


@functools.lru_cache(maxsize=4)
def known_options(uwsgi: str) -> frozenset[str]:
    """Every option name this uwsgi build accepts, read from `uwsgi --help`."""
    out = subprocess.run([uwsgi, "--help"], capture_output=True, text=True, timeout=10).stdout
    return frozenset(re.findall(r"--([a-z0-9][a-z0-9-]*)", out))


def read_json_socket(path: Path, timeout: float = 1.0) -> dict:
    """Read the JSON document a uWSGI stats socket sends on connect (then it closes)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return json.loads(b"".join(chunks).decode("utf-8", "replace"))


@dataclass(frozen=True)
class VassalProcess:
    """One vassal as the Emperor sees it."""

    name: str
    pid: int
    last_mod: int
    ready: bool
    accepting: bool
    respawns: int
    cursed: bool


@dataclass(frozen=True)
class BlacklistEntry:
    """A vassal the Emperor keeps failing to start; it retries with a growing delay."""

    name: str
    attempts: int
    throttle: int


@dataclass(frozen=True)
class EmperorStats:
    vassals: dict[str, VassalProcess]
    blacklist: dict[str, BlacklistEntry]

    @classmethod
    def parse(cls, doc: dict) -> EmperorStats:
        vassals = {}
        for v in doc.get("vassals", []):
            name = _name_from_id(v.get("id", ""))
            vassals[name] = VassalProcess(
                name=name,
                pid=int(v.get("pid", -1)),
                last_mod=int(v.get("last_mod", 0)),
                ready=bool(v.get("ready")),
                accepting=bool(v.get("accepting")),
                respawns=int(v.get("respawns", 0)),
                cursed=bool(v.get("cursed")),
            )
        blacklist = {}
        for b in doc.get("blacklist", []):
            name = _name_from_id(b.get("id", ""))
            blacklist[name] = BlacklistEntry(name, int(b.get("attempt", 0)), int(b.get("throttle_level", 0)))
        return cls(vassals, blacklist)


def _name_from_id(vassal_id: str) -> str:
    """The Emperor names a vassal by its file path (with a `:zerg` suffix for zergs)."""
    base = vassal_id.rsplit("/", 1)[-1]
    return base[: -len(".ini")] if base.endswith(".ini") else base


def emperor_stats(path: Path, timeout: float = 1.0) -> EmperorStats:
    """Query the Emperor's stats socket. Side effect (wanted): the Emperor rescans vassals/ at once."""
    return EmperorStats.parse(read_json_socket(path, timeout))


@dataclass(frozen=True)
class Worker:
    pid: int
    accepting: bool
    status: str
    requests: int


def vassal_workers(stats_socket: Path, timeout: float = 0.5) -> list[Worker]:
    """The workers of one vassal, from its own stats socket."""
    doc = read_json_socket(stats_socket, timeout)
    return [
        Worker(
            int(w.get("pid", 0)),
            bool(w.get("accepting")),
            str(w.get("status", "")),
            int(w.get("requests", 0)),
        )
        for w in doc.get("workers", [])
    ]


def request(sock_path: Path, path: str = "/healthz", timeout: float = 1.0) -> tuple[int, bytes]:
    """One GET over the uwsgi protocol on a unix socket, as nginx would send it: (status, body)."""
    path_info, _, query = path.partition("?")
    env = {
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": path,
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "fleet-probe",
        "SERVER_PORT": "0",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "fleet-probe",
        "HTTP_USER_AGENT": "fleet-health-probe",
    }
    body = b"".join(_uwsgi_string(k) + _uwsgi_string(v) for k, v in env.items())
    packet = struct.pack("<BHB", 0, len(body), 0) + body
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(sock_path))
        sock.sendall(packet)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    head, _, payload = response.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise ConnectionError(f"not an HTTP response: {response[:60]!r}")
    return int(status_line[1]), payload


def _uwsgi_string(text: str) -> bytes:
    """A length-prefixed string of the uwsgi protocol (the length counts bytes, not characters)."""
    data = text.encode("utf-8")
    return struct.pack("<H", len(data)) + data


def probe(sock_path: Path, timeout: float = 1.0) -> bool:
    """True when the vassal answers GET /healthz with 200 on its socket."""
    try:
        status, _ = request(sock_path, "/healthz", timeout)
    except (OSError, ValueError, ConnectionError):
        return False
    return status == 200
