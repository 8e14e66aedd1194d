"""nginx's config for the apps (pure): one upstream per app, a server per host name, a location per path.

Precedence, as nginx applies it: the most specific host first (a server_name that is an exact name, then
the longest `*.domain`, then the default server for any host), then, among the apps that host may reach,
the longest path prefix. An app on a more specific host takes its whole prefix: a less specific app's
location is left out where it would take part of it (see `locations_for`). A request no app takes gets a
JSON 404 naming its host and path.

Each app's requests carry SCRIPT_NAME = its path and PATH_INFO = the rest, so a WSGI app (Flask's url_for)
builds URLs under its prefix with no change. `/blog` alone is redirected (308) to `/blog/`.

The default app keeps the upstream named `fleet` with today's upstreams.conf and slots/, so a cluster
without `[fleet] app` is served exactly as before apps.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from fleet.core.apps import DEFAULT_APP, App
from fleet.proxy.static import error_locations, location

HEADER = "# Written by fleet's control plane. Do not edit; it is rewritten.\n"
_TABLE = "# apps: "
NOT_FOUND = (
    "default_type application/json;\n"
    'return 404 \'{"error": "no app serves this host and path", "host": "$fleet_json_host", '
    '"path": "$fleet_json_path", '
    '"detail": "see the host and path lines of [fleet] in the vassal files; run `fleet status`"}\\n\';\n'
)


# The host and path as the JSON 404 shows them: only characters that need no escaping in a JSON string
# (nginx's `return` cannot escape them; a `"` or `\` in a URL must not break the document).
JSON_SAFE = (
    "map $host $fleet_json_host {\n"
    '    "~^[A-Za-z0-9._:-]*$" $host;\n'
    '    default "(not shown: it has characters JSON would need escaped)";\n'
    "}\n"
    "map $uri $fleet_json_path {\n"
    '    "~^[A-Za-z0-9/._~%!&\'()*+,;=:@-]*$" $uri;\n'
    '    default "(not shown: it has characters JSON would need escaped)";\n'
    "}\n"
)


def upstream_name(app: str) -> str:
    return "fleet" if app == DEFAULT_APP else f"fleet_app_{app}"


def table(apps: Sequence[App]) -> str:
    """The apps a config was rendered for, as its first line: a restarted control plane reads it back."""
    return _TABLE + json.dumps([[a.name, list(a.hosts), a.path, a.static] for a in apps]) + "\n"


def read_table(content: str) -> tuple[App, ...] | None:
    """The apps from `table`'s line (None: no such line, e.g. a file from before apps)."""
    first = content.split("\n", 2)[1] if content.startswith(HEADER) else content.split("\n", 1)[0]
    if not first.startswith(_TABLE):
        return None
    try:
        return tuple(App(n, tuple(h), p, s) for n, h, p, s in json.loads(first[len(_TABLE) :]))
    except (ValueError, TypeError):
        return None


def _covers(wildcard: str, host: str) -> bool:
    """Whether `*.domain` matches `host` (itself an exact name or a narrower wildcard)."""
    domain = wildcard[1:]  # ".domain"
    return host.removeprefix("*").endswith(domain) and host != wildcard


def candidates(host: str | None, apps: Sequence[App]) -> list[list[App]]:
    """The apps a request for `host` may reach (None: any other host), most specific host first."""
    classes: list[list[App]] = []
    if host is not None:
        classes.append([a for a in apps if host in a.hosts])
        wildcards = sorted({h for a in apps for h in a.hosts if h.startswith("*.") and _covers(h, host)}, key=len)
        for wildcard in reversed(wildcards):  # the longest (most specific) first
            classes.append([a for a in apps if wildcard in a.hosts])
    classes.append([a for a in apps if not a.hosts])
    return classes


def _under(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def locations_for(host: str | None, apps: Sequence[App]) -> list[App]:
    """The apps that get a location in `host`'s server, longest path first.

    An app is left out where a more specific host's app has a prefix of its path: that app takes every
    request this one would. Otherwise nginx's longest-prefix match picks between them correctly.
    """
    chosen: list[App] = []
    for group in candidates(host, apps):
        for app in group:
            if not any(_under(app.path, c.path) and c not in group for c in chosen):
                chosen.append(app)
    return sorted(chosen, key=lambda a: (-len(a.path), a.path))


def _location(app: App, index: int, params: Path, static: Callable[[App], str] | None) -> str:
    upstream = upstream_name(app.name)
    # STATIC: the locations of the app's static folder (fleet.proxy.static, given to NginxRouter), if any.
    extra = static(app) if static else ""
    if app.path == "/":
        return (
            "location / {\n"
            f"    include {params};\n"
            "    uwsgi_param PATH_INFO $document_uri;\n"
            f"    uwsgi_pass {upstream};\n"
            "}\n" + extra
        )
    p = app.path
    return (
        f"location = {p} {{\n    absolute_redirect off;\n    return 308 {p}/$is_args$args;\n}}\n"
        f"location {p}/ {{\n"
        f"    include {params};\n"
        f"    uwsgi_param SCRIPT_NAME {p};\n"
        f"    uwsgi_param PATH_INFO $fleet_path_info_{index};\n"
        f"    uwsgi_pass {upstream};\n"
        "}\n" + extra
    )


# The apps' static blocks answer their errors through named locations of their own: the default server may
# also hold static.conf's (the default app's folder), and nginx refuses a name defined twice in a server.
APPS_STATIC = "@fleet_apps_static_"


def static_location(prefix: str, folder: Path, max_age: int) -> str:
    """fleet.proxy.static's location for an app's folder, answering through this file's named locations."""
    return location(prefix, folder, max_age).replace("@fleet_static_", APPS_STATIC)


def static_error_locations() -> str:
    return error_locations().replace("@fleet_static_", APPS_STATIC)


def _dedent(text: str) -> str:
    return "".join(line[4:] if line.startswith("    ") else line for line in text.splitlines(keepends=True))


def _indent(text: str, by: str = "    ") -> str:
    return "".join(by + line if line.strip() else line for line in text.splitlines(keepends=True))


def _server_locations(host: str | None, apps: Sequence[App], params: Path, static: Callable[[App], str] | None) -> str:
    chosen = locations_for(host, apps)
    index = {a.name: i for i, a in enumerate(apps)}
    body = "".join(_location(a, index[a.name], params, static) for a in chosen)
    if static and any(a.static and a.name != DEFAULT_APP for a in chosen):
        body += _dedent(static_error_locations())
    if not any(a.path == "/" for a in chosen):
        body += "location / {\n" + _indent(NOT_FOUND) + "}\n"
    return body


def render_default(apps: Sequence[App], root: Path, static: Callable[[App], str] | None = None) -> str:
    """The locations of the default server (a host no app names): apps-default.conf.

    `static(app)`: the locations serving the app's static folder (fleet.proxy.static), placed after its own.
    """
    return HEADER + table(apps) + _server_locations(None, apps, root / "nginx" / "uwsgi_params", static)


def render_http(
    apps: Sequence[App],
    upstreams: Callable[[str], Path],
    nginx_dir: Path,
    root: Path,
    static: Callable[[App], str] | None = None,
) -> str:
    """apps.conf, at http level: each app's upstream (but the default's, in nginx.conf), the maps that
    cut its prefix off PATH_INFO, and one server per host name an app names."""
    out = [HEADER, table(apps), JSON_SAFE]
    for app in apps:
        if app.name != DEFAULT_APP:
            out.append(f"upstream {upstream_name(app.name)} {{\n    include {upstreams(app.name)};\n}}\n")
    for i, app in enumerate(apps):
        if app.path != "/":
            rx = app.path.replace(".", r"\.")  # the only regex character a path may hold
            rule = f'"~^{rx}(?<fleet_rest_{i}>/.*)$" $fleet_rest_{i};'
            out.append(f"map $uri $fleet_path_info_{i} {{\n    {rule}\n    default $uri;\n}}\n")
    hosts = sorted({h for a in apps for h in a.hosts}, key=lambda h: (h.startswith("*."), h))
    params = root / "nginx" / "uwsgi_params"
    for host in hosts:
        body = (
            f"include {nginx_dir / 'listen.conf'};\n"
            # HTTPS on: its listener and the HTTP -> HTTPS redirect for this server too (fleet.proxy.tls).
            f"include {nginx_dir / 'tls-server.conf'};\n"
            f"server_name {host};\n"
            + _server_locations(host, apps, params, static)
            + f"include {nginx_dir / 'server-errors.conf'};\n"
        )
        out.append("server {\n" + _indent(body) + "}\n")
    return "".join(out)
