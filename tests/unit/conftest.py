"""Unit-tier fixtures and helpers: a fake uwsgi-protocol server on a unix socket (a thread, not a process), a
unix socket that sends one answer, and nginx reopening a rotated log."""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

Handler = Callable[[dict[bytes, bytes]], bytes]


def parse_uwsgi_packet(data: bytes) -> dict[bytes, bytes]:
    """The vars of one uwsgi packet: header `<BHB` (modifier1, size, modifier2), then len-prefixed pairs."""
    _, size, _ = struct.unpack("<BHB", data[:4])
    body, env, pos = data[4 : 4 + size], {}, 0
    while pos < len(body):
        (klen,) = struct.unpack("<H", body[pos : pos + 2])
        key = body[pos + 2 : pos + 2 + klen]
        pos += 2 + klen
        (vlen,) = struct.unpack("<H", body[pos : pos + 2])
        env[key] = body[pos + 2 : pos + 2 + vlen]
        pos += 2 + vlen
    return env


def http_response(status: str, body: bytes) -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n\r\n".encode() + body


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def fake_uwsgi(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Factory: serve `handler(vars) -> response bytes` on a unix socket; returns the socket path."""
    servers: list[_Server] = []

    def start(handler: Handler, path: Path | None = None) -> Path:
        sock_path = path or tmp_path / f"fake-{len(servers)}.sock"

        class Handle(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data = self.request.recv(4)
                _, size, _ = struct.unpack("<BHB", data)
                while len(data) < 4 + size:
                    chunk = self.request.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.request.sendall(handler(parse_uwsgi_packet(data)))

        server = _Server(str(sock_path), Handle)
        threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
        servers.append(server)
        return sock_path

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@contextmanager
def sending_once(path: Path, *chunks: bytes) -> Iterator[None]:
    """A unix socket listening at `path` (like a uWSGI stats socket) while the block runs: the one
    connection it accepts is sent `chunks`, one `sendall` each, then closed."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)

        def send_once() -> None:
            conn, _ = server.accept()
            with conn:
                for chunk in chunks:
                    conn.sendall(chunk)

        thread = threading.Thread(target=send_once, daemon=True)  # daemon: a failed test never connects
        thread.start()
        yield
        thread.join()


class NginxReopen:
    """The `reopen` given to a reader of an nginx log, doing what nginx does on SIGUSR1: a new empty file at
    the same path. `calls` counts them."""

    def __init__(self, path: Path):
        self.path = path
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        self.path.write_text("")
