"""What a vassal file may set (pure): fleet's own options, number checks, and the app module's presence."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a vassal file, with the line it is on (if any) and how to fix it."""

    message: str
    fix: str
    line: int | None = None

    def format(self, path: Path | str) -> str:
        where = f"{path}:{self.line}" if self.line else f"{path}"
        return f"{where}: {self.message}\n    fix: {self.fix}"


@dataclass(frozen=True)
class Option:
    key: str
    value: str
    line: int


# Options whose value fleet decides from the vassal's name: nginx, `fleet status` and the control plane
# find a vassal through these paths, and a second socket would let one vassal take another's over.
_SOCKET = "the socket is run/sockets/NAME.socket, from the file name (the Emperor holds it)"
_PROTOCOL = "vassals speak the uwsgi protocol to nginx on run/sockets/NAME.socket"
_LOG = "the log is run/logs/NAME.log; `fleet status` reads the failure reason from it"
_STATS = "the stats socket is run/stats/NAME.sock; `fleet status` reads it"
FLEET_OWNED = {
    **dict.fromkeys(("socket", "uwsgi-socket", "shared-socket", "raw-socket", "puwsgi-socket"), _SOCKET),
    **dict.fromkeys(("suwsgi-socket",), _SOCKET),
    **dict.fromkeys(("http-socket", "http", "https", "http11-socket", "https-socket", "ssl-socket"), _PROTOCOL),
    **dict.fromkeys(("fastcgi-socket", "scgi-socket", "fastcgi-nph-socket", "scgi-nph-socket"), _PROTOCOL),
    **dict.fromkeys(("logto", "logto2"), _LOG),
    **dict.fromkeys(("stats", "stats-server"), _STATS),
    "daemonize": "the Emperor supervises the vassal; a daemonized vassal escapes it",
    "emperor": "a vassal cannot be an Emperor in fleet",
    "master-fifo": "the master FIFO is run/fifo/NAME.fifo; the control plane reloads through it",
}
_POSITIVE_INT_OPTIONS = ("processes", "workers", "threads", "listen")


@dataclass(frozen=True)
class Caps:
    """The most a vassal may ask for (the caller's setting; None: no bound). `setting` maps each counted
    option to how the operator raises its bound, for the fix."""

    processes: int | None = None  # `processes` and its alias `workers`
    threads: int | None = None  # per worker
    setting: tuple[tuple[str, str], ...] = (
        ("processes", "fleet up --max-processes N (FLEET_MAX_PROCESSES)"),
        ("threads", "fleet up --max-threads N (FLEET_MAX_THREADS)"),
    )

    def bound(self, key: str) -> tuple[str, int] | None:
        """(the capped option, its limit) for an option key, or None if it is not capped."""
        capped = "processes" if key in ("processes", "workers") else key
        limit = {"processes": self.processes, "threads": self.threads}.get(capped)
        return (capped, limit) if limit is not None else None


def _over_cap(option: Option, key: str, caps: Caps) -> Problem | None:
    bound = caps.bound(key)
    if bound is None or int(option.value) <= bound[1]:
        return None
    capped, limit = bound
    how = dict(caps.setting).get(capped, "its setting")
    return Problem(
        f"`{option.key} = {option.value}` is above the limit of {limit} {capped} for a vassal",
        f"ask for at most {limit}, or raise the limit with `{how}`",
        option.line,
    )


def check_options(
    options: list[Option], known: frozenset[str] | None, app_dir: Path | None, caps: Caps | None = None
) -> list[Problem]:
    problems: list[Problem] = []
    for option in options:
        key = option.key.replace("_", "-")
        if key in FLEET_OWNED:
            problems.append(
                Problem(
                    f"`{option.key}` is managed by fleet: {FLEET_OWNED[key]}",
                    "remove this line",
                    option.line,
                )
            )
        elif known is not None and key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean `{close[0]}`?" if close else "see `uwsgi --help` for option names"
            problems.append(Problem(f"unknown uWSGI option `{option.key}`", hint, option.line))
        elif key in _POSITIVE_INT_OPTIONS and not (
            option.value.isascii() and option.value.isdigit() and int(option.value) > 0
        ):
            problems.append(
                Problem(
                    f"`{option.key}` must be a positive whole number, not {option.value!r}",
                    f"e.g. `{key} = 2`",
                    option.line,
                )
            )
        elif key in _POSITIVE_INT_OPTIONS and caps is not None and (over := _over_cap(option, key, caps)):
            problems.append(over)
    if app_dir is not None:
        problems.extend(_check_module(options, app_dir))
    return problems


def _check_module(options: list[Option], app_dir: Path) -> list[Problem]:
    """The app module must exist, or uWSGI (with need-app) exits and respawns forever."""
    by_key = {o.key: o for o in options}
    if "chdir" in by_key or "wsgi-file" in by_key or "mount" in by_key:
        return []  # the vassal points elsewhere; uWSGI itself reports a missing app
    option = by_key.get("module")
    module = option.value if option else "wsgi"
    module_path = module.split(":", 1)[0].strip()
    if not module_path or not all(part.isidentifier() for part in module_path.split(".")):
        return [
            Problem(
                f"`module = {module}` is not a Python module name",
                "e.g. `module = wsgi`",
                option.line if option else None,
            )
        ]
    base = app_dir.joinpath(*module_path.split("."))
    if _is_file(base.with_suffix(".py")) or _is_file(base / "__init__.py"):
        return []
    return [
        Problem(
            f"module `{module_path}` not found: there is no {base.relative_to(app_dir.parent)}.py",
            "create it, or set `module =` to a module in app/",
            option.line if option else None,
        )
    ]


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a module name too long for a file name (Python 3.11 raises): not there either
        return False
