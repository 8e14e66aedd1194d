"""Request limits and timeouts: each declared once, with its flag, environment variable, default and help.

Precedence: the `fleet up` flag, then the environment variable, then the default. The values reach
nginx (its config template) and the vassals (uWSGI's harakiri, through the Emperor's environment); the
caps on processes and threads reach the vassal launcher and the control plane the same way.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fleet.errors import FleetError

_SIZE_RE = re.compile(r"(\d+)([kmg]?)\Z", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def size(text: str) -> int:
    """Bytes from an nginx-style size: 512, 16k, 100m, 1g."""
    match = _SIZE_RE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a size; write e.g. 16k, 100m or 1g")
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
        raise ValueError(f"{text!r} is out of range: the header buffer is 1k to 16k")
    return value


def seconds(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{text!r}: a timeout is a whole number of seconds, at least 1")
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
    if text.strip() == "auto":
        return default_max_processes()
    return count(text)


def count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{text!r}: a limit is a whole number, at least 1")
    return value


@dataclass(frozen=True)
class Limit:
    name: str
    env: str
    default: str
    parse: Callable[[str], int]
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


LIMITS = (
    Limit(
        "max_body",
        "FLEET_MAX_BODY",
        "100m",
        size,
        "the largest request body (uploads); larger ones get a JSON 413. 0: no limit",
    ),
    Limit(
        "header_buffer",
        "FLEET_HEADER_BUFFER",
        "16k",
        header_buffer,
        "the longest request line or header line (1k-16k); longer ones get a JSON 414 or 431",
    ),
    Limit(
        "read_timeout",
        "FLEET_READ_TIMEOUT",
        "60",
        seconds,
        "seconds a backend may take to answer; then the client gets a JSON 504 and the worker is recycled",
    ),
    Limit(
        "max_processes",
        "FLEET_MAX_PROCESSES",
        "auto",
        max_processes,
        "the most `processes` (or `workers`) a vassal file may ask for; more is refused by the file check. "
        "auto: 4 per core, at least 16",
    ),
    Limit(
        "max_threads",
        "FLEET_MAX_THREADS",
        "64",
        count,
        "the most `threads` per worker a vassal file may ask for; more is refused by the file check",
    ),
)


@dataclass(frozen=True)
class Limits:
    max_body: int = 100 << 20
    header_buffer: int = 16 << 10
    read_timeout: int = 60
    max_processes: int = field(default_factory=default_max_processes)
    max_threads: int = 64

    @property
    def harakiri(self) -> int:
        """uWSGI kills a worker stuck past this: just after nginx gave up, so the client sees nginx's 504."""
        return self.read_timeout + 2

    def environment(self) -> dict[str, str]:
        """What the Emperor passes on to the vassals (emperor.ini reads these)."""
        return {
            "FLEET_HARAKIRI": str(self.harakiri),
            # The vassal launcher and the control plane check vassal files against these.
            "FLEET_MAX_PROCESSES": str(self.max_processes),
            "FLEET_MAX_THREADS": str(self.max_threads),
        }


# The bounds on what a vassal file may ask for (the rest bound requests): `fleet check` takes only these,
# `fleet edge` (no vassals) all but these.
VASSAL_CAPS = ("max_processes", "max_threads")


def add_flags(parser: argparse.ArgumentParser, names: tuple[str, ...] | None = None) -> None:
    """The flags of the limits in `names` (default: all)."""
    for limit in (x for x in LIMITS if names is None or x.name in names):
        parser.add_argument(limit.flag, dest=limit.name, metavar="VALUE", help=f"{limit.help} (${limit.env})")


def resolve(flags: Mapping[str, str | None], env: Mapping[str, str] = os.environ) -> Limits:
    """The limits from the flags, else the environment, else the defaults; a bad value names its source."""
    values = {}
    for limit in LIMITS:
        text, source = flags.get(limit.name), limit.flag
        if text is None:
            text, source = env.get(limit.env), limit.env
        if text is None:
            text, source = limit.default, "default"
        try:
            values[limit.name] = limit.parse(str(text))
        except ValueError as e:
            raise FleetError(f"{source}: {e}", exit_code=2) from None
    return Limits(**values)


def table() -> str:
    """The settings table for the README and `fleet up --help`."""
    rows = ["| flag | environment | default | what |", "| --- | --- | --- | --- |"]
    rows += [f"| `{x.flag}` | `{x.env}` | `{x.default}` | {x.help} |" for x in LIMITS]
    return "\n".join(rows)
