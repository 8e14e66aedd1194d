"""Every setting of fleet, declared once: its name, flag, environment variable, default, parser, help, and
the commands that take it. The commands' flags and the README's settings table are generated from SETTINGS.

Precedence: the flag, then the environment variable, then the default. The environment is read here and
nowhere else in fleet/ (children get their values on their command line), and only once a command runs,
never while the argument parser is built. Every command checks every variable of the table it finds in the
environment, used by it or not: a bad value is one line naming the setting and where the value came from,
and exit status 2 (`FLEET_PORT=abc fleet status`: a shell with a broken setting is found at once, not at
the next `fleet up`).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from fleet.core import emperors
from fleet.core.settings import Settings
from fleet.errors import FleetError
from fleet.vassalfile.vassals import Caps

_SIZE_RE = re.compile(r"(\d+)([kmg]?)\Z", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\Z")
_USER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\$?\Z")


# -- parsers: text -> value, or ValueError with the reason (the caller names the setting and the source)


def size(text: str) -> int:
    """Bytes from an nginx-style size: 512, 16k, 100m, 1g."""
    match = _SIZE_RE.match(text.strip())
    if not match:
        raise ValueError("not a size; write e.g. 16k, 100m or 1g")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def human(value: int) -> str:
    """An nginx-style size: 104857600 -> 100m."""
    for unit in ("g", "m", "k"):
        if value and value % _UNITS[unit] == 0:
            return f"{value // _UNITS[unit]}{unit}"
    return str(value)


def header_buffer(text: str) -> int:
    value = size(text)
    # nginx allows 4 such buffers per request; the uwsgi protocol carries at most 64 KiB of headers.
    if not 1 << 10 <= value <= 16 << 10:
        raise ValueError("out of range: the header buffer is 1k to 16k")
    return value


def _at_least_one(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"not a whole number{what}, at least 1")
    return value


def whole_seconds(text: str) -> int:
    return _at_least_one(text, " of seconds")


def whole_seconds_or_zero(text: str) -> int:
    if text.strip().isdigit():
        return int(text)
    raise ValueError("not a whole number of seconds, 0 or more")


def count(text: str) -> int:
    """A whole number, at least 1."""
    return _at_least_one(text, "")


def emperor_count(text: str) -> int:
    """How many Emperors share the vassal files: 1 to emperors.MAX_EMPERORS."""
    value = count(text)
    if value > emperors.MAX_EMPERORS:
        raise ValueError(f"out of range: 1 to {emperors.MAX_EMPERORS} Emperors")
    return value


def cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_max_processes() -> int:
    # uWSGI workers are processes: past a few per core they only queue for the CPU and cost memory
    # (each is a copy of the app); 16 at least, so a small machine can still run a few multi-worker vassals.
    return max(16, 4 * cores())


def max_processes(text: str) -> int:
    """`auto` (4 per usable core, at least 16) or a whole number."""
    return default_max_processes() if text.strip() == "auto" else count(text)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("not a number of seconds") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("not a number of seconds")
    return value


def seconds(text: str) -> float:
    """A positive number of seconds."""
    value = _number(text)
    if value <= 0:
        raise ValueError("not a number of seconds above 0")
    return value


def seconds_or_zero(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise ValueError("not a number of seconds, 0 or more")
    return value


def port(text: str) -> int:
    if not text.strip().isdigit() or not 0 < int(text) < 65536:
        raise ValueError("not a TCP port (1-65535)")
    return int(text)


def port_or_zero(text: str) -> int:
    if text.strip().isdigit() and int(text) == 0:
        return 0
    try:
        return port(text)
    except ValueError:
        raise ValueError("not a TCP port (1-65535), or 0 for none") from None


def address(text: str) -> str:
    """An IP address or a host name to listen on."""
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    if not _HOST_RE.match(text) or len(text) > 253:
        raise ValueError("not an IP address or host name")
    return text


def host_name(text: str) -> str:
    if not _HOST_RE.match(text) or len(text) > 253:
        raise ValueError("not a DNS name")
    return text


def user_name(text: str) -> str:
    if not _USER_RE.match(text) or len(text) > 32:
        raise ValueError("not a user name")
    return text


def executable(text: str) -> str:
    if not text or not os.path.isfile(text) or not os.access(text, os.X_OK):
        raise ValueError("not an executable file")
    return text


def optional_file(text: str) -> str | None:
    """A file's path; empty: none (compose passes an unset variable through as empty)."""
    if not text.strip():
        return None
    if "\n" in text or "\0" in text or text.endswith("/"):
        raise ValueError("not a file's path")
    return text


def choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"choose one of {', '.join(choices)}")
        return text

    parse.choices = choices  # type: ignore[attr-defined]  # the flag's metavar
    return parse


# -- the table


@dataclass(frozen=True)
class Setting:
    name: str
    flag: str
    env: str
    default: str | None  # None: none, or `derive` computes it from the settings resolved before it
    parse: Callable[[str], Any]
    help: str
    commands: tuple[str, ...]
    command_defaults: Mapping[str, str] = field(default_factory=dict)  # a command's own default
    derive: Callable[[Mapping[str, Any]], Any] | None = None
    default_text: str = ""  # the default in words, when there is none or it is derived

    def default_for(self, command: str) -> str | None:
        return self.command_defaults.get(command, self.default)

    def describe_default(self) -> str:
        text = f"`{self.default}`" if self.default is not None else self.default_text
        others = ", ".join(f"{c}: `{d}`" for c, d in self.command_defaults.items())
        return f"{text} ({others})" if others else text


@dataclass(frozen=True)
class Limits:
    """Request limits, rendered into nginx's configuration (and uWSGI's harakiri)."""

    max_body: int = 100 << 20
    header_buffer: int = 16 << 10
    read_timeout: int = 60

    @property
    def harakiri(self) -> int:
        """uWSGI kills a worker stuck past this: just after nginx gave up, so the client sees nginx's 504."""
        return self.read_timeout + 2

    def environment(self) -> dict[str, str]:
        """What the Emperor passes on to the vassals (emperor.ini reads these)."""
        return {"FLEET_HARAKIRI": str(self.harakiri)}


_LIMITS, _CONTROL = Limits(), Settings()
UP = ("up", "cell")  # `fleet cell` runs `fleet up` and hands it every setting of up's
CONTROL = ("up", "cell", "control-plane")  # `fleet up` hands the control plane its settings on its command line
WAIT = ("add", "rm", "reload")
# The bounds on what a vassal file may ask for: the file check applies them wherever it runs (`fleet check`
# and `fleet add` before writing, the control plane before routing, the vassal launcher before starting).
CAPPED = (*UP, "check", "add", "control-plane")
VASSAL_CAPS = ("max_processes", "max_threads")


def _admin_port(values: Mapping[str, Any]) -> int:
    return values["port"] + 1 if values["port"] < 65535 else 0


SETTINGS: tuple[Setting, ...] = (
    Setting("port", "--port", "FLEET_PORT", "8080", port, "the public port (nginx)", (*UP, "edge")),
    Setting(
        "listen",
        "--listen",
        "FLEET_LISTEN",
        "127.0.0.1",
        address,
        "the public address",
        (*UP, "edge"),
        command_defaults={"cell": "0.0.0.0"},
    ),
    Setting(
        "admin_port",
        "--admin-port",
        "FLEET_ADMIN_PORT",
        None,
        port_or_zero,
        "the status page and /metrics; 0: none",
        CONTROL,
        command_defaults={"cell": "0", "control-plane": "0"},  # a cell's health port may be its port + 1
        derive=_admin_port,
        default_text="the port + 1",
    ),
    Setting(
        "https_port",
        "--https-port",
        "FLEET_HTTPS_PORT",
        "8443",
        port,
        "the HTTPS port (nginx, HTTP/2), when a certificate is given (--tls-cert or --tls local)",
        (*UP, "edge"),
    ),
    Setting(
        "tls_cert",
        "--tls-cert",
        "FLEET_TLS_CERT",
        None,
        optional_file,
        "the certificate (PEM, chain after it) for HTTPS, with --tls-key; replacing the files is picked up"
        " within seconds, no reload",
        (*CONTROL, "edge"),
        default_text="none: plain HTTP",
    ),
    Setting(
        "tls_key",
        "--tls-key",
        "FLEET_TLS_KEY",
        None,
        optional_file,
        "the certificate's private key (PEM, unencrypted), with --tls-cert",
        (*CONTROL, "edge"),
        default_text="none",
    ),
    Setting(
        "tls",
        "--tls",
        "FLEET_TLS",
        "off",
        choice("off", "local"),
        "local: HTTPS with a certificate from a local CA that fleet makes once (run/tls/ca.crt) for localhost,"
        " 127.0.0.1 and the apps' hosts",
        UP,
    ),
    Setting(
        "http_redirect",
        "--http-redirect",
        "FLEET_HTTP_REDIRECT",
        "on",
        choice("on", "off"),
        "with HTTPS, the HTTP port answers 308 to the same URL on HTTPS (off: it keeps serving)",
        (*UP, "edge"),
    ),
    Setting("admin_listen", "--admin-listen", "FLEET_ADMIN_LISTEN", "127.0.0.1", address, "the admin address", CONTROL),
    Setting(
        "max_body",
        "--max-body",
        "FLEET_MAX_BODY",
        human(_LIMITS.max_body),
        size,
        "the largest request body (uploads); larger ones get a JSON 413. 0: no limit",
        (*UP, "edge"),
    ),
    Setting(
        "header_buffer",
        "--header-buffer",
        "FLEET_HEADER_BUFFER",
        human(_LIMITS.header_buffer),
        header_buffer,
        "the longest request line or header line (1k-16k); longer ones get a JSON 414 or 431",
        (*UP, "edge"),
    ),
    Setting(
        "read_timeout",
        "--read-timeout",
        "FLEET_READ_TIMEOUT",
        str(_LIMITS.read_timeout),
        whole_seconds,
        "seconds a backend may take to answer; then the client gets a JSON 504 and the worker is recycled",
        (*UP, "edge"),
    ),
    Setting(
        "max_processes",
        "--max-processes",
        "FLEET_MAX_PROCESSES",
        "auto",
        max_processes,
        "the most `processes` (or `workers`) a vassal file may ask for; more is refused by the file check."
        " auto: 4 per usable core, at least 16",
        CAPPED,
    ),
    Setting(
        "max_threads",
        "--max-threads",
        "FLEET_MAX_THREADS",
        "64",
        count,
        "the most `threads` per worker a vassal file may ask for; more is refused by the file check",
        CAPPED,
    ),
    Setting(
        "user",
        "--user",
        "FLEET_USER",
        "www-data",
        user_name,
        "started as root, the vassals run as this user (root: as root)",
        UP,
    ),
    Setting(
        "access_log",
        "--access-log",
        "FLEET_ACCESS_LOG",
        "combined",
        choice("combined", "json"),
        "nginx's access log: combined (run/logs/nginx-access.log), or JSON lines naming the vassal that served"
        " (run/logs/nginx-access.jsonl)",
        UP,
    ),
    Setting(
        "emperors",
        "--emperors",
        "FLEET_EMPERORS",
        str(_CONTROL.emperors),
        emperor_count,
        "how many uWSGI Emperors share the vassal files (by the name's last character, so web-1 and web-2 differ):"
        " a killed Emperor takes only its share down while nginx retries GETs on the others'; 1 to"
        f" {emperors.MAX_EMPERORS}",
        CONTROL,
    ),
    Setting(
        "file_watch",
        "--file-watch",
        "FLEET_WATCH",
        "inotify",
        choice("inotify", "poll"),
        "how vassals/ is watched: inotify, or poll (a mount that forwards no file events, e.g. Docker Desktop:"
        " changes are seen within 0.5 s)",
        CONTROL,
    ),
    Setting(
        "static_max_age",
        "--static-max-age",
        "FLEET_STATIC_MAX_AGE",
        "300",
        whole_seconds_or_zero,
        "the Cache-Control max-age of static files ([fleet] static); fingerprinted names (app.3f9c2b.css) get a"
        " year and `immutable`",
        CONTROL,
    ),
    Setting(
        "uwsgi",
        "--uwsgi",
        "FLEET_UWSGI",
        None,
        executable,
        "the uwsgi binary",
        (*CONTROL, "check"),
        default_text="the one beside this Python, else $PATH's",
    ),
    Setting(
        "up_timeout",
        "--timeout",
        "FLEET_UP_TIMEOUT",
        "120",
        seconds,
        "seconds `fleet up` waits for the backends to be healthy",
        UP,
    ),
    Setting(
        "timeout",
        "--timeout",
        "FLEET_TIMEOUT",
        "60",
        seconds,
        "seconds `fleet add`, `rm` and `reload` wait for the change",
        WAIT,
    ),
    Setting(
        "start_timeout",
        "--start-timeout",
        "FLEET_START_TIMEOUT",
        f"{_CONTROL.start_timeout:g}",
        seconds,
        "seconds a vassal may take to become healthy; then it is failed",
        CONTROL,
    ),
    Setting(
        "reload_timeout",
        "--reload-timeout",
        "FLEET_RELOAD_TIMEOUT",
        f"{_CONTROL.reload_timeout:g}",
        seconds,
        "seconds a reload (or a removal) may take; then it is failed (or given up)",
        CONTROL,
    ),
    Setting(
        "drain_wait",
        "--drain-wait",
        "FLEET_DRAIN_WAIT",
        f"{_CONTROL.drain_wait:g}",
        seconds_or_zero,
        "seconds a backend taken out of nginx may take to finish what nginx sent it",
        CONTROL,
    ),
    Setting(
        "health_interval",
        "--health-interval",
        "FLEET_HEALTH_INTERVAL",
        f"{_CONTROL.health_interval:g}",
        seconds,
        "seconds between health probes of each backend (a hung one is out within about two)",
        CONTROL,
    ),
    # Docker Swarm: the edge and the cells. These defaults are fleet.swarm.edge's (a unit test checks).
    Setting("cells", "--cells", "FLEET_EDGE_CELLS", "tasks.cell", host_name, "the cells' DNS name", ("edge",)),
    Setting("cell_port", "--cell-port", "FLEET_CELL_PORT", "8080", port, "the cells' fleet port", ("edge",)),
    Setting(
        "health_port",
        "--health-port",
        "FLEET_HEALTH_PORT",
        "8090",
        port,
        "a cell's health port, that the edges probe",
        ("edge", "cell"),
    ),
    Setting(
        "drain",
        "--drain",
        "FLEET_CELL_DRAIN",
        "4",
        seconds_or_zero,
        "seconds a stopping cell keeps serving after an edge last heard `serving` (the edge's routing lag and"
        " a margin)",
        ("cell",),
    ),
)

BY_NAME = {s.name: s for s in SETTINGS}
COMMANDS = sorted({c for s in SETTINGS for c in s.commands})


def of(command: str) -> tuple[Setting, ...]:
    return tuple(s for s in SETTINGS if command in s.commands)


class SettingError(FleetError):
    def __init__(self, message: str):
        super().__init__(message, exit_code=2)


class Values:
    """The resolved settings of one command: `values.port`; `texts` keeps what was written, for children;
    `sources` where each came from (`--port=9000`, `FLEET_PORT=9000`, `--port=8080 (the default)`), for messages."""

    def __init__(
        self,
        command: str,
        values: Mapping[str, Any],
        texts: Mapping[str, str],
        sources: Mapping[str, str],
        flagged: frozenset[str] = frozenset(),  # the settings given by their flag
    ):
        self.command, self._values, self.texts, self.sources = command, dict(values), dict(texts), dict(sources)
        self.flagged = flagged

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(f"{name!r} is not a setting of `fleet {self.__dict__['command']}`") from None

    def argv(self, command: str, **override: str) -> list[str]:
        """The flags that give `fleet <command>` these values (for the ones both commands take)."""
        texts = self.texts | override
        flags: list[str] = []
        for s in of(command):
            if s.name in texts:
                flags += [s.flag, texts[s.name]]
        return flags

    @property
    def limits(self) -> Limits:
        return Limits(self.max_body, self.header_buffer, self.read_timeout)

    @property
    def caps(self) -> Caps:
        """The bounds the vassal-file check applies."""
        return Caps(processes=self.max_processes, threads=self.max_threads)

    def caps_environment(self) -> dict[str, str]:
        """The caps as the variables fleet sets for the vassal launcher (bin/fleet-vassal, through the
        Emperor's environment) and records with the pids (for `fleet check` and `fleet add`)."""
        return {BY_NAME[name].env: str(getattr(self, name)) for name in VASSAL_CAPS}

    def under(self, recorded: Mapping[str, str]) -> Values:
        """These values with a running cluster's recorded variables in place of the environment's and the
        defaults (a flag still wins): `fleet check` and `fleet add` give the running control plane's verdict."""
        values, texts, sources = dict(self._values), dict(self.texts), dict(self.sources)
        for s in of(self.command):
            if s.env in recorded and s.name not in self.flagged:
                source = f"{s.env}={recorded[s.env]} (recorded by the running cluster)"
                values[s.name], texts[s.name] = _parse(s, recorded[s.env], source), recorded[s.env]
                sources[s.name] = source
        return Values(self.command, values, texts, sources, self.flagged)

    @property
    def control(self) -> Settings:
        """The control plane's Settings: the core's defaults, with the ones a user may set."""
        return replace(
            Settings(),
            start_timeout=self.start_timeout,
            reload_timeout=self.reload_timeout,
            drain_wait=self.drain_wait,
            health_interval=self.health_interval,
            emperors=self.emperors,
        )


def _parse(setting: Setting, text: str, source: str) -> Any:
    try:
        return setting.parse(text)
    except ValueError as e:
        raise SettingError(f"{source}: {e}") from None


def check_environment(env: Mapping[str, str]) -> None:
    """Every variable of the table that is set must parse (whichever command runs)."""
    for s in SETTINGS:
        if s.env in env:
            _parse(s, env[s.env], f"{s.env}={env[s.env]}")


def resolve(command: str, flags: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Values:
    """The settings of `command` from its flags, else the environment, else the defaults (in table order)."""
    env = os.environ if env is None else env
    check_environment(env)
    values: dict[str, Any] = {}
    texts: dict[str, str] = {}
    sources: dict[str, str] = {}
    for s in of(command):
        text, source = flags.get(s.name), f"{s.flag}={flags.get(s.name)}"
        if text is None and s.env in env:
            text, source = env[s.env], f"{s.env}={env[s.env]}"
        if text is None:
            text = s.default_for(command)
            source = f"{s.flag}={text} (the default)"
        if text is None:
            values[s.name] = s.derive(values) if s.derive else None
            sources[s.name] = f"{s.flag} ({s.default_text})"
            if values[s.name] is not None:
                texts[s.name] = str(values[s.name])
            continue
        values[s.name], texts[s.name] = _parse(s, str(text), source), str(text)
        sources[s.name] = source
    flagged = frozenset(s.name for s in of(command) if flags.get(s.name) is not None)
    return Values(command, values, texts, sources, flagged)


def check_https(v: Values) -> None:
    """The HTTPS settings that only make sense together (each alone is parsed already); `fleet up` and the
    control plane check them before anything starts."""
    values, sources = v._values, v.sources
    cert, key = values.get("tls_cert"), values.get("tls_key")
    if (cert is None) != (key is None):
        given, missing = ("tls_cert", "--tls-key") if cert else ("tls_key", "--tls-cert")
        raise SettingError(f"{sources[given]}: give {missing} FILE too (HTTPS needs the certificate and its key)")
    if cert is not None and values.get("tls") == "local":
        raise SettingError(f"{sources['tls']}: --tls local makes its own certificate; drop --tls-cert and --tls-key")
    https = cert is not None or values.get("tls") == "local"
    if https and "https_port" in values:
        for other in ("port", "admin_port"):
            if values.get(other) == values["https_port"]:
                raise SettingError(f"{sources['https_port']}: {sources[other]} uses that port; choose another")


_METAVARS: dict[Callable[[str], Any], str] = {
    port: "PORT",
    port_or_zero: "PORT",
    address: "ADDRESS",
    host_name: "NAME",
    size: "SIZE",
    header_buffer: "SIZE",
    whole_seconds: "SECONDS",
    whole_seconds_or_zero: "SECONDS",
    seconds: "SECONDS",
    seconds_or_zero: "SECONDS",
    count: "N",
    emperor_count: "N",
    max_processes: "N",
    user_name: "USER",
    executable: "PATH",
    optional_file: "FILE",
}

EPILOG = (
    "Each setting: its flag, else its FLEET_* variable, else the default. Every command checks every FLEET_*"
    " setting set in its environment, even one it does not use: a bad value stops it (exit status 2)."
)


def add_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """The flags of `command`'s settings; their values are parsed by resolve, once the command runs."""
    for s in of(command):
        default = s.default_for(command)
        shown = default if default is not None else s.default_text
        choices = getattr(s.parse, "choices", None)
        metavar = "{" + ",".join(choices) + "}" if choices else _METAVARS.get(s.parse, "VALUE")
        parser.add_argument(s.flag, dest=s.name, metavar=metavar, help=f"{s.help} (${s.env}; default {shown})")


def table() -> str:
    """The README's settings table, in markdown."""
    rows = ["| flag | environment | default | commands | what |", "| --- | --- | --- | --- | --- |"]
    for s in SETTINGS:
        commands = ", ".join(f"`{c}`" for c in s.commands)
        rows.append(f"| `{s.flag}` | `{s.env}` | {s.describe_default()} | {commands} | {s.help} |")
    return "\n".join(rows)


if __name__ == "__main__":  # `python -m fleet.config`: the README's settings table
    print(table())
