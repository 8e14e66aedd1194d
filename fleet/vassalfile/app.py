"""Which app a vassal serves (pure): its name, host names and URL path, from its `[fleet]` section.

    [fleet]
    app = blog                                 ; the vassals of one app are its replicas (default: default)
    host = blog.example.com *.blog.example.com ; exact names or *.domain, space-separated (default: any host)
    path = /blog                               ; URL prefix; the app sees it as SCRIPT_NAME (default: /)

`static` belongs to the app too (all its vassals must agree on it); its own module checks its value,
here it is only carried, whitespace-normalised, so that vassals can be compared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_APP = "default"
KEYS = ("app", "host", "path")
_APP_RE = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
# Letters, digits, hyphens; dot-separated labels. Lower case: nginx compares host names case-insensitively.
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST_RE = re.compile(rf"({_LABEL}\.)*{_LABEL}\Z")
# Path segments of unreserved URL characters only: the prefix is written into nginx's config and regexes.
_SEGMENT_RE = re.compile(r"[A-Za-z0-9._~-]+\Z")


@dataclass(frozen=True)
class AppIdentity:
    """How requests reach an app: what all of its vassals must agree on."""

    name: str = DEFAULT_APP
    hosts: tuple[str, ...] = ()  # empty: any host
    path: str = "/"
    static: str = ""  # the raw `static` value (checked by its own module), for agreement only


def host_problem(host: str) -> str:
    """Why `host` is not an exact name or a `*.domain` wildcard ("" if it is one)."""
    name = host.removeprefix("*.")
    if "*" in name or not _HOST_RE.match(name) or len(name) > 253:
        return f"host {host!r} is not a host name or *.domain"
    if host.startswith("*.") and "." not in name:
        return f"host {host!r} is too wide: a wildcard needs a domain with a dot, e.g. *.example.com"
    return ""


def path_problem(path: str) -> str:
    """Why `path` is not a URL prefix fleet can route ("" if it is one)."""
    if not path.startswith("/"):
        return f"path {path!r} does not start with /"
    if path == "/":
        return ""
    if path.endswith("/"):
        return f"path {path!r} ends with /"
    segments = path[1:].split("/")
    if any(s in ("", ".", "..") for s in segments):
        return f"path {path!r} has an empty, . or .. segment"
    if not all(_SEGMENT_RE.match(s) for s in segments):
        return f"path {path!r} has characters other than letters, digits and . _ ~ -"
    return ""


def parse(options: list[tuple[str, str, int]]) -> tuple[AppIdentity, list[tuple[str, str, int]]]:
    """The app from the [fleet] section's (key, value, line) options (other keys are ignored here), and
    problems (message, fix, line). The last of a repeated key wins, as in uWSGI."""
    name, path, static = DEFAULT_APP, "/", ""
    hosts: tuple[str, ...] = ()
    problems: list[tuple[str, str, int]] = []
    for key, value, line in options:
        if key == "app":
            if not _APP_RE.match(value):
                problems.append(
                    (f"app {value!r} is not an app name", "use letters, digits, - and _ (e.g. app = blog)", line)
                )
            else:
                name = value
        elif key == "host":
            given = tuple(value.lower().split())
            bad = [why for h in given if (why := host_problem(h))]
            if not given:
                problems.append(("host is empty", "name one or more hosts, or remove the line (any host)", line))
            elif bad:
                problems.append((bad[0], "write exact names or *.domain, separated by spaces", line))
            else:
                hosts = tuple(sorted(set(given)))
        elif key == "path":
            if why := path_problem(value):
                problems.append((why, "write a URL prefix such as /blog (no trailing slash), or / for the root", line))
            else:
                path = value
        elif key == "static":
            static = " ".join(value.split())
    return AppIdentity(name, hosts, path, static), problems
