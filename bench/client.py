"""The uwsgi protocol over a unix socket, a new connection per request (what nginx's uwsgi_pass does)."""

from __future__ import annotations

from fleet import uwsgi
from harness.http import Answer, parse


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
    return parse(uwsgi.exchange(sock_path, uwsgi_packet(path), timeout))
