"""Unit-tier fixtures: a fake uwsgi-protocol server on a unix socket (a thread, not a process)."""

from __future__ import annotations

import socketserver
import struct
import threading
from collections.abc import Callable, Iterator
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
