"""Minimal clients, a new connection per request: HTTP/1.0 over TCP, the uwsgi protocol over a unix socket."""

from __future__ import annotations

import json
import socket

from fleet import uwsgi


class Answer:
    __slots__ = ("status", "body")

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body

    def json(self) -> dict:
        return json.loads(self.body)

    def backend(self) -> str | None:
        try:
            return self.json().get("backend")
        except ValueError:
            return None


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    line = head.split(b"\r\n", 1)[0]
    parts = line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise ConnectionError(f"bad response: {line[:80]!r}")
    return Answer(int(parts[1]), body)


def get(port: int, path: str = "/", timeout: float = 5.0, host: str = "127.0.0.1") -> Answer:
    """GET over a new TCP connection (HTTP/1.0: the server closes it after the answer)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        return _parse(_read_all(sock))


def uwsgi_packet(path: str = "/") -> bytes:
    """A uwsgi-protocol request (modifier1 0: WSGI) for GET `path`."""
    env = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "REQUEST_URI": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.0",
        "HTTP_HOST": "localhost",
    }
    return uwsgi.packet(env)


def uwsgi_get(sock_path: str, path: str = "/", timeout: float = 5.0) -> Answer:
    """GET `path` from a uWSGI socket (what nginx's uwsgi_pass does), over a new connection."""
    return _parse(uwsgi.exchange(sock_path, uwsgi_packet(path), timeout))
