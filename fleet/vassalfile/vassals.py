"""Vassal files: which files are vassals, and what is wrong with one (pure: no processes, no disk writes).

A vassal file is `vassals/NAME.ini`, an uWSGI ini file whose [uwsgi] section overrides the shared
defaults in emperor.ini's [vassal] section. The same checks run in `fleet check`, in the vassal
launcher (so the Emperor never starts a file fleet would not route to) and in the control plane.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fleet.vassalfile import app, health, static, weight
from fleet.vassalfile.app import AppIdentity
from fleet.vassalfile.health import HealthCheck
from fleet.vassalfile.static import StaticMount
from fleet.vassalfile.vassal_checks import FLEET_OWNED, Caps, Option, Problem, check_options
from fleet.vassalfile.weight import DEFAULT_WEIGHT

__all__ = ["FLEET_OWNED", "Caps", "Option", "Problem", "VassalFile", "parse", "read"]  # FLEET_OWNED: for checkers

NAME_PATTERN = "[a-z0-9][a-z0-9_-]*"
# fleet's own parts log to run/logs/PART.log, beside the vassals' logs: a vassal may not take those names.
# The Emperors are emperor-1 ... emperor-8 when there are several (fleet.core.emperors.MAX_EMPERORS).
RESERVED_NAMES = frozenset(
    {"control", "emperor", "nginx", "nginx-error", "nginx-access", "supervisor", "events"}
    | {f"emperor-{k}" for k in range(1, 9)}
)
_NAME_RE = re.compile(NAME_PATTERN + r"\Z")
_SECTION_RE = re.compile(r"\[\s*([^\]]*?)\s*\]\s*\Z")
_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
MAX_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class VassalFile:
    """A parsed vassal file: its name, its [uwsgi] options in order, and its problems (empty = valid)."""

    name: str
    path: Path
    options: tuple[Option, ...] = ()
    problems: tuple[Problem, ...] = field(default=())
    health: HealthCheck = HealthCheck()  # from its [fleet] section
    app: AppIdentity = AppIdentity()  # which app it serves, and where (its [fleet] section)
    static: StaticMount | None = None  # from its [fleet] section: the folder nginx serves for it
    weight: int = DEFAULT_WEIGHT  # from its [fleet] section

    @property
    def valid(self) -> bool:
        return not self.problems

    def get(self, key: str, default: str | None = None) -> str | None:
        """The effective value of a single-valued option (uWSGI: the last one wins)."""
        for option in reversed(self.options):
            if option.key == key:
                return option.value
        return default

    def reason(self) -> str:
        """The first problem, on one line, for `fleet status`."""
        if not self.problems:
            return ""
        first = self.problems[0]
        where = f"line {first.line}: " if first.line else ""
        return f"{where}{first.message} ({first.fix})"


def is_vassal_filename(filename: str) -> bool:
    """Only visible `*.ini` files are vassals: editor swap, backup and temp files never are."""
    return filename.endswith(".ini") and not filename.startswith(".") and len(filename) > len(".ini")


def vassal_name(filename: str) -> str:
    return filename[: -len(".ini")]


def present(folder: Path, missing_ok: bool = True) -> dict[str, int]:
    """The vassal files in `folder` (vassals/), the one listing of them: {name: mtime_ns}, sorted by name.
    Hidden, editor and temporary files are not vassals; a dangling symlink is (reading it says what is
    wrong); a file deleted while this looks is left out; no folder, no vassals (unless not `missing_ok`:
    then FileNotFoundError, like any other folder that cannot be listed)."""
    found: dict[str, int] = {}
    try:
        with os.scandir(folder) as listing:  # closed at once: a control plane lists it every pass
            entries = list(listing)
    except FileNotFoundError:
        if not missing_ok:
            raise
        return found
    for entry in entries:
        if is_vassal_filename(entry.name):
            try:
                found[vassal_name(entry.name)] = entry.stat().st_mtime_ns
            except OSError:
                try:  # a dangling symlink or a symlink loop: its own mtime
                    found[vassal_name(entry.name)] = entry.stat(follow_symlinks=False).st_mtime_ns
                except OSError:
                    continue  # deleted between the listing and the stat
    return dict(sorted(found.items()))


def is_valid_name(name: str) -> bool:
    return bool(_NAME_RE.match(name)) and name not in RESERVED_NAMES


def name_problem(name: str) -> Problem | None:
    if name in RESERVED_NAMES:
        return Problem(
            f"{name!r} is the name of one of fleet's own logs (run/logs/{name}.log)",
            f"rename the file, e.g. to {name}-1.ini",
        )
    if is_valid_name(name):
        return None
    suggestion = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_") or "backend"
    if not suggestion[0].isalnum():
        suggestion = "b" + suggestion
    return Problem(
        f"{name!r} is not a valid vassal name: it must match {NAME_PATTERN} "
        "(it becomes a socket name and a log prefix)",
        f"rename the file to {suggestion}.ini",
    )


def parse(
    path: Path,
    content: bytes,
    known_options: Iterable[str] | None = None,
    app_dir: Path | None = None,
    caps: Caps | None = None,
) -> VassalFile:
    """Parse and validate one vassal file's content.

    `known_options` (uWSGI's option names) enables the unknown-option check; `app_dir` (the default
    chdir) enables the check that the app module exists; `caps` bounds processes and threads (the
    caller's setting: this module reads no environment). All are optional so the core stays pure.
    """
    name = vassal_name(path.name) if path.name.endswith(".ini") else path.name
    problems: list[Problem] = []
    if problem := name_problem(name):
        problems.append(problem)

    if len(content) > MAX_FILE_BYTES:  # read() reads no more than one byte past the limit
        problems.append(Problem(f"file is over {MAX_FILE_BYTES} bytes", "a vassal file is a few lines of ini"))
        return VassalFile(name, path, (), tuple(problems))
    if b"\0" in content and not content.strip(b"\0\r\n"):  # a file cut short by a crash or a full disk
        problems.append(Problem("not a text file: only NUL bytes", "write key = value lines under [uwsgi]"))
        return VassalFile(name, path, (), tuple(problems))
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as e:
        problems.append(
            Problem(f"not a text file (byte {e.start} is not UTF-8)", "write key = value lines under [uwsgi]")
        )
        return VassalFile(name, path, (), tuple(problems))

    options, syntax = _parse_ini(text)
    problems.extend(syntax)
    fleet_options = [(o.key.removeprefix("fleet:"), o.value, o.line) for o in options if o.key.startswith("fleet:")]
    options = [o for o in options if not o.key.startswith("fleet:")]
    weighed, weight_problems = weight.parse([o for o in fleet_options if o[0] in weight.KEYS])
    check, health_problems = health.parse(fleet_options)
    problems.extend(Problem(*p) for p in health_problems + weight_problems)
    identity, app_problems = app.parse(fleet_options)
    problems.extend(Problem(*p) for p in app_problems)
    chdir = static.chdir_of(next((o.value for o in reversed(options) if o.key == "chdir"), None), path, app_dir)
    mount, static_problems = static.parse(fleet_options, chdir, must_resolve=app_dir is not None)
    problems.extend(Problem(*p) for p in static_problems)
    known = frozenset(known_options) if known_options is not None else None
    problems.extend(check_options(options, known, app_dir, caps))
    problems.sort(key=lambda p: p.line or 0)  # file-wide problems first, then in line order
    return VassalFile(name, path, tuple(options), tuple(problems), check, app=identity, static=mount, weight=weighed)


def _parse_ini(text: str) -> tuple[list[Option], list[Problem]]:
    """The [uwsgi] options of an uWSGI ini text, and its syntax problems.

    An empty file (or one with only comments) is a backend with every default.
    """
    options: list[Option] = []
    problems: list[Problem] = []
    section: str | None = None
    sections_seen: list[str] = []
    # Split on "\n" only: uWSGI counts lines that way (str.splitlines also splits on \f, \x1c...).
    for number, raw in enumerate(text.split("\n"), start=1):
        raw = raw.removesuffix("\r")
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        if any(ord(ch) < 32 and ch != "\t" for ch in raw):
            problems.append(Problem("control characters in the line", "remove them", number))
            continue
        if line.startswith("["):
            match = _SECTION_RE.match(line)
            if not match:
                problems.append(Problem(f"bad section header {line!r}", "write [uwsgi]", number))
                continue
            section = match.group(1)
            sections_seen.append(section)
            continue
        if "=" not in line:
            problems.append(
                Problem(
                    f"{line!r} is not a `key = value` line",
                    "write `key = value` (for a flag: `master = true`), or comment it out with ;",
                    number,
                )
            )
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if not _KEY_RE.match(key):
            problems.append(Problem(f"{key!r} is not an option name", "write `key = value`", number))
            continue
        if section is None:
            problems.append(Problem(f"option {key!r} is outside any section", "put a [uwsgi] line above it", number))
            continue
        if section in ("uwsgi", "fleet"):  # [fleet] is fleet's own (uWSGI ignores it): prefixed
            options.append(Option(key if section == "uwsgi" else f"fleet:{key}", value, number))
    if sections_seen and not {"uwsgi", "fleet"} & set(sections_seen) and not problems:
        problems.append(
            Problem(
                f"no [uwsgi] section (found [{sections_seen[0]}]): uWSGI would ignore every option",
                "rename the section to [uwsgi]",
                None,
            )
        )
    return options, problems


_UNREADABLE = {  # why a vassal file cannot be read, and the fix, by errno
    errno.ENOENT: ("it is a symlink to nothing", "point it at a vassal file, or remove it"),
    errno.ELOOP: ("it is a symlink loop", "point it at a vassal file, or remove it"),
    errno.EISDIR: ("it is a folder", "remove it, or rename it so it does not end in .ini"),
    errno.ENXIO: ("it is a socket", "remove it: a vassal file is a few lines of ini"),
    errno.EACCES: ("permission denied", "make it readable: chmod a+r FILE"),
}


def read(
    path: Path,
    known_options: Iterable[str] | None = None,
    app_dir: Path | None = None,
    caps: Caps | None = None,
) -> VassalFile:
    """Read and parse one vassal file (the only function here that touches the disk).

    Only a regular file is read, and no more of it than a vassal file may hold: a FIFO or a device
    (`ln -s /dev/zero vassals/x.ini`) must neither block nor exhaust the control plane or the launcher.
    Whatever the path is, the descriptor opened here is closed before returning (a folder opens fine
    with O_RDONLY: wrapping it in a file object is what fails, so the raw descriptor is closed here).
    """
    name = vassal_name(path.name) if path.name.endswith(".ini") else path.name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        return _unreadable(name, path, e)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            return _unreadable(name, path, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
        if not stat.S_ISREG(mode):
            return VassalFile(name, path, (), (Problem("not a file but a FIFO, socket or device", "remove it"),))
        content = _read_at_most(fd, MAX_FILE_BYTES + 1)
    except OSError as e:
        return _unreadable(name, path, e)
    finally:
        os.close(fd)
    return parse(path, content, known_options, app_dir, caps)


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0 and (chunk := os.read(fd, left)):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _unreadable(name: str, path: Path, e: OSError) -> VassalFile:
    what, fix = _UNREADABLE.get(e.errno or 0, ((e.strerror or str(e)).lower(), "check its permissions"))
    return VassalFile(name, path, (), (Problem(f"cannot read the file: {what}", fix),))


def new_vassal_text(name: str, processes: int | None = None, static: StaticMount | None = None) -> str:
    """The content `fleet add` writes: a minimal file, defaults coming from emperor.ini; with `static`, the
    [fleet] static line the other backends agree on (a backend without it would be failed)."""
    lines = [
        f"; {name}: added by `fleet add`. Shared defaults come from the [vassal] section of emperor.ini;",
        "; anything set here overrides them.",
    ]
    if static is not None:  # [fleet] first: a uWSGI option appended to the file lands in [uwsgi]
        lines += ["[fleet]", f"static = {static.prefix} {static.folder}", ""]
    lines.append("[uwsgi]")
    if processes is not None:
        lines.append(f"processes = {processes}")
    return "\n".join(lines) + "\n"
