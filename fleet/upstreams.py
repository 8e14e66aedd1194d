"""nginx's list of backends, rendered from the set of routed vassals (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

HEADER = "# Written by fleet's control plane: the healthy vassals. Do not edit; it is rewritten.\n"
# nginx needs at least one server in an upstream; a server marked `down` makes nginx answer 502,
# which nginx.conf turns into a JSON 503.
NO_BACKEND_SOCKET = "no-healthy-backend.sock"


def render(routed: Mapping[str, Path], sockets_dir: Path) -> str:
    """The upstream body for `routed` ({name: socket}), sorted so it only changes when its meaning does.

    max_fails/fail_timeout: a backend that refuses a connection (killed, restarting) is skipped for
    2 s instead of nginx's default 10 s; the control plane removes it for good if it stays down.
    """
    if not routed:
        return HEADER + f"server unix:{sockets_dir / NO_BACKEND_SOCKET} down;\n"
    lines = [f"server unix:{routed[name]} max_fails=1 fail_timeout=2s;  # {name}\n" for name in sorted(routed)]
    # Fewest active connections first: a backend slowed by long requests gets less (p99 -16% in bench/).
    return HEADER + "least_conn;\n" + "".join(lines)


def routed_names(content: str) -> list[str]:
    """The vassal names in a rendered upstream body (for status and tests)."""
    names = []
    for line in content.splitlines():
        if line.startswith("server ") and "#" in line:
            names.append(line.rsplit("#", 1)[1].strip())
    return names
