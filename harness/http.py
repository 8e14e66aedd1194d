"""Minimal HTTP clients on raw sockets, for load that the client itself must not slow down: GET on a new
connection per request (HTTP/1.0), and a keep-alive HTTP/1.1 connection that counts failures the way wrk
does (connect, read, write, timeout).

Every browser and every load balancer in front of fleet keeps its connections open; nginx closing one
while the client sends on it (as a graceful nginx reload does) is a failure the new-connection clients
never see. A closed connection with a request outstanding is a read error, as in wrk; the client then
connects again.
"""

from __future__ import annotations

import json
import socket


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


def parse(raw: bytes) -> Answer:
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
        return parse(_read_all(sock))


REQUEST = b"GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: fleet-bench\r\n\r\n"


class Failure(Exception):
    """One failed request, with wrk's kind: connect, read, write or timeout."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class KeepAliveClient:
    """One persistent connection to 127.0.0.1:`port`, re-opened after a failure or a `Connection: close`."""

    def __init__(self, port: int, timeout: float = 5.0, host: str = "127.0.0.1") -> None:
        self.address = (host, port)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buf = b""
        self.connects = 0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buf = None, b""

    def get(self, path: str = "/") -> tuple[int, bytes]:
        """(status, body) of one GET on the open connection; raises Failure(kind) and closes it on error."""
        if self.sock is None:
            try:
                self.sock = socket.create_connection(self.address, timeout=self.timeout)
            except TimeoutError as e:
                raise Failure("timeout") from e
            except OSError as e:
                raise Failure("connect") from e
            self.connects += 1
        try:
            self.sock.sendall(REQUEST % path.encode())
        except TimeoutError as e:
            self.close()
            raise Failure("timeout") from e
        except OSError as e:
            self.close()
            raise Failure("write") from e
        try:
            status, body, keep = self._read_response()
        except TimeoutError as e:
            self.close()
            raise Failure("timeout") from e
        except (OSError, ValueError) as e:
            self.close()
            raise Failure("read") from e
        if not keep:
            self.close()
        return status, body

    def _recv(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("closed by the server with a request outstanding")
        self.buf += chunk

    def _read_response(self) -> tuple[int, bytes, bool]:
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split()
        if len(parts) < 2 or not parts[1].isdigit():
            raise ValueError(f"bad status line {lines[0][:80]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        keep = headers.get(b"connection") != b"close" and parts[0] == b"HTTP/1.1"
        if headers.get(b"transfer-encoding") == b"chunked":
            return int(parts[1]), self._read_chunked(), keep
        length = int(headers.get(b"content-length", b"0"))
        while len(self.buf) < length:
            self._recv()
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(parts[1]), body, keep

    def _read_chunked(self) -> bytes:
        body = b""
        while True:
            while b"\r\n" not in self.buf:
                self._recv()
            size_line, _, self.buf = self.buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(self.buf) < size + 2:
                self._recv()
            body += self.buf[:size]
            self.buf = self.buf[size + 2 :]
            if size == 0:
                return body
