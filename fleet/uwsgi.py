"""Talking to uWSGI: its binary, its option names, its stats sockets and the uwsgi wire protocol."""

from __future__ import annotations

import functools
import json
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from fleet.core.stats import EmperorStats, VassalStats
from fleet.errors import MissingTool


def binary(configured: str | None = None) -> str:
    """The uwsgi binary: `configured` (the setting --uwsgi), else the one beside this Python (the venv's),
    else $PATH's."""
    candidates = [
        configured,
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


def read_json_socket(path: str | os.PathLike, timeout: float = 1.0) -> dict:
    """Read the JSON document a uWSGI stats socket sends on connect (then it closes)."""
    return json.loads(exchange(path, b"", timeout).decode("utf-8", "replace"))


def exchange(path: str | os.PathLike, data: bytes, timeout: float) -> bytes:
    """Connect to the unix socket `path`, send `data` (if any), and read until the other side closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        if data:
            sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def emperor_stats(path: Path, timeout: float = 1.0) -> EmperorStats:
    """Query the Emperor's stats socket. Side effect (wanted): the Emperor rescans vassals/ at once."""
    return EmperorStats.parse(read_json_socket(path, timeout))


def vassal_stats(stats_socket: str | os.PathLike, timeout: float = 0.5) -> VassalStats:
    """One vassal's master and workers, from its own stats socket."""
    return VassalStats.parse(read_json_socket(stats_socket, timeout))


def request_many(
    targets: Mapping[str, tuple[str | os.PathLike, str]], timeout: float
) -> dict[str, tuple[int, bytes] | Exception]:
    """One GET over the uwsgi protocol, as nginx would send it, to many sockets at once
    ({key: (socket, path)}): every request is sent first, then the answers are read as they come, all
    within one `timeout`. Each result is (status, body), or the exception that request met (OSError,
    ConnectionError for an answer that is not HTTP, TimeoutError).

    At once, so that one slow vassal (starting, or its held socket's backlog waiting for respawned
    workers) does not delay the answers of the others by a probe timeout each. The sockets are
    non-blocking from the start and watched with epoll directly: at 200 vassals a second, the syscalls and
    the selectors module's bookkeeping per probe were most of an idle control plane's CPU.
    """
    results: dict[str, tuple[int, bytes] | Exception] = {}
    received: dict[int, list[bytes]] = {}
    waiting: dict[int, tuple[str, socket.socket]] = {}
    deadline = time.monotonic() + timeout
    with select.epoll() as poll:
        for key, (sock_path, path) in targets.items():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
            try:
                _send(sock, os.fspath(sock_path), _get_packet(path), deadline)
            except OSError as e:
                sock.close()
                results[key] = e
                continue
            fd = sock.fileno()
            received[fd], waiting[fd] = [], (key, sock)
            poll.register(fd, select.EPOLLIN)
        while waiting and (left := deadline - time.monotonic()) > 0:
            for fd, _ in poll.poll(left):
                key, sock = waiting[fd]
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as e:
                    chunk, results[key] = b"", e
                if chunk:
                    received[fd].append(chunk)
                    continue
                poll.unregister(fd)
                del waiting[fd]
                sock.close()
                if key not in results:
                    try:
                        results[key] = _parse_response(b"".join(received[fd]))
                    except ConnectionError as e:
                        results[key] = e
        for key, sock in waiting.values():
            sock.close()
            results[key] = TimeoutError("timed out")
    return results


def _send(sock: socket.socket, sock_path: str, data: bytes, deadline: float) -> None:
    """Connect the non-blocking `sock` and send `data`. A full backlog refuses the connect at once (EAGAIN,
    as it did with a timeout set: CPython waits only on EINPROGRESS, which a unix socket never returns);
    the packet fits an empty buffer, else the rest is sent blocking until `deadline`."""
    sock.connect(sock_path)
    try:
        sent = sock.send(data)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        sock.sendall(data[sent:])
        sock.setblocking(False)


@functools.lru_cache(maxsize=256)
def _get_packet(path: str) -> bytes:
    """The probe's request for `path`, made once: the same few paths are probed every second."""
    return packet(_get_env(path))


def _get_env(path: str) -> dict[str, str]:
    path_info, _, query = path.partition("?")
    return {
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


def _parse_response(response: bytes) -> tuple[int, bytes]:
    head, _, payload = response.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise ConnectionError(f"not an HTTP response: {response[:60]!r}")
    return int(status_line[1]), payload


def packet(env: dict[str, str]) -> bytes:
    """A uwsgi-protocol request (modifier1 0: WSGI) carrying the CGI-style variables `env`, no body."""
    body = b"".join(_uwsgi_string(k) + _uwsgi_string(v) for k, v in env.items())
    return struct.pack("<BHB", 0, len(body), 0) + body


def _uwsgi_string(text: str) -> bytes:
    """A length-prefixed string of the uwsgi protocol (the length counts bytes, not characters)."""
    data = text.encode("utf-8")
    return struct.pack("<H", len(data)) + data
