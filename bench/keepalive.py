"""A keep-alive HTTP/1.1 client that counts failures the way wrk does (connect, read, write, timeout).

Every browser and every load balancer in front of fleet keeps its connections open; nginx closing one
while the client sends on it (as a graceful nginx reload does) is a failure the new-connection clients
never see. A closed connection with a request outstanding is a read error, as in wrk; the client then
connects again.
"""

from __future__ import annotations

import socket

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


def fairness(port: int, clients: int = 16, seconds: float = 3.0, path: str = "/") -> dict:
    """`clients` keep-alive connections sending back to back for `seconds`: how evenly the server served
    them. A server that sticks to a connection while it has requests (uWSGI's http11-socket does) serves
    a few and starves the rest, which wrk cannot show: it reports latency only for answered requests."""
    import threading
    import time

    counts = [0] * clients
    failed = [0] * clients
    stop = time.monotonic() + seconds

    def loop(i: int) -> None:
        conn = KeepAliveClient(port, timeout=seconds + 1)
        while time.monotonic() < stop:
            try:
                conn.get(path)
                counts[i] += 1
            except Failure:
                failed[i] += 1
        conn.close()

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 10)
    total = sum(counts)
    fair = total / clients if clients else 0
    return {
        "clients": clients,
        "seconds": seconds,
        "requests": total,
        "per_client_min": min(counts),
        "per_client_max": max(counts),
        "starved": sum(1 for c in counts if c < 0.1 * fair),  # served < 10% of a fair share
        "failed": sum(failed),
    }
