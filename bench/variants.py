"""Where the proxy hop's time goes: fleet as shipped against fleet with one change, each a real `fleet up`
in a copy of the tree (bench.servers.Edit changes the copy, never the checkout).

Each variant is one knob of the hop between nginx and the vassal: nginx's workers, its logs, its
buffering, the uwsgi params it sends, the upstream (32 slots with least_conn, or the socket itself), and
on the uWSGI side threads, the request log, the header fleet adds and accept()'s thundering herd.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field
from pathlib import Path

from bench.servers import Edit

NGINX = "nginx/nginx.conf"
EMPEROR = "emperor.ini"
TALLY = "    access_log {{run}}/nginx/answers.tally fleet_class buffer=16k flush=1s;\n"
NO_ACCESS_LOG = Edit(NGINX, "    {{access_log}}\n", "    access_log off;\n")
PARAMS = "nginx/uwsgi_params"
# What a WSGI app needs of the request (PEP 3333): the shipped list without DOCUMENT_ROOT, REQUEST_SCHEME,
# HTTPS and REMOTE_PORT (PATH_INFO is sent by each app's location, fleet/proxy/apps.py).
FEW_PARAMS = tuple(
    Edit(PARAMS, line, "")
    for line in (
        "uwsgi_param DOCUMENT_ROOT   $document_root;\n",
        "uwsgi_param REQUEST_SCHEME  $scheme;\n",
        "uwsgi_param HTTPS           $https if_not_empty;\n",
        "uwsgi_param REMOTE_PORT     $remote_port;\n",
    )
)


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    edits: tuple[Edit, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)  # per-vassal uWSGI overrides


def shipped_options(root: Path) -> dict[str, str]:
    """The [vassal] section of the tree's emperor.ini: fleet's shipped per-vassal settings."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, inline_comment_prefixes=(";", "#"))
    parser.read(root / "emperor.ini")
    return dict(parser["vassal"]) if parser.has_section("vassal") else {}


def _has(root: Path, path: str, text: str) -> bool:
    try:
        return (root / path).read_text().count(text) == 1
    except OSError:
        return False


def variants(root: Path) -> list[Variant]:
    """One change each to fleet as shipped in `root`; a knob the tree no longer has is left out."""
    opts = shipped_options(root)
    threads = int(opts.get("threads", "1"))
    logging_off = opts.get("disable-logging", "").lower() in ("true", "1", "yes", "on")
    out = [
        Variant(
            "nginx-1-worker",
            "nginx worker_processes 1",
            (Edit(NGINX, "worker_processes auto;", "worker_processes 1;"),),
        ),
        Variant("no-access-log", "nginx access log off", (NO_ACCESS_LOG,)),
        Variant("no-tally", "nginx status tally log off (the metrics' answers.tally)", (Edit(NGINX, TALLY, ""),)),
        Variant(
            "logs-off",
            "nginx: no log at all",
            (Edit(NGINX, TALLY, ""), NO_ACCESS_LOG),
        ),
        Variant(
            "no-buffering",
            "nginx uwsgi_buffering off",
            (
                Edit(
                    NGINX,
                    "    uwsgi_hide_header X-Fleet-Vassal;\n",
                    "    uwsgi_hide_header X-Fleet-Vassal;\n    uwsgi_buffering off;\n",
                ),
            ),
        ),
        Variant("few-params", "nginx sends 10 uwsgi params instead of 14", FEW_PARAMS),
        Variant(
            "direct-upstream",
            "upstream = the vassal's socket (no 32 slots, no least_conn)",
            (
                Edit(
                    NGINX,
                    "include {{run}}/nginx/upstreams.conf;",
                    "server unix:{{run}}/sockets/backend-1.socket max_fails=0;",
                ),
            ),
        ),
        Variant(
            "round-robin",
            "32 slots, round robin instead of least_conn",
            (Edit("fleet/proxy/upstreams.py", 'HEADER + "least_conn;\\n" + ', "HEADER + "),),
        ),
        Variant("threads", f"threads = {2 if threads == 1 else 1}", extra={"threads": str(2 if threads == 1 else 1)}),
        Variant(
            "uwsgi-log",
            "uWSGI request log on" if logging_off else "uWSGI request log off",
            extra={"disable-logging": "false" if logging_off else "true"},
        ),
        Variant(
            "no-add-header",
            "no X-Fleet-Vassal header from uWSGI",
            (Edit(EMPEROR, "add-header = X-Fleet-Vassal: $(FLEET_VASSAL)\n", ""),),
        ),
        Variant("thunder-lock", "uWSGI thunder-lock", extra={"thunder-lock": "true"}),
    ]
    return [v for v in out if all(_has(root, e.path, e.old) for e in v.edits)]
