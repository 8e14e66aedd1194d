"""A vassal's static folder (pure, but for one look at the disk: does the folder exist): nginx serves it.

    [fleet]
    static = /static static     ; URL prefix (under the app's path), folder (relative to chdir, or absolute)

Requests under the prefix never reach the app: nginx answers them from the folder (fleet/proxy/static.py).
All the backends of an app must agree on it (`agree`): they are replicas of one app.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

KNOWN_KEYS = ("static",)
# URL segments nginx needs no escaping for, and that cannot climb: no empty, `.` or `..` segment.
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]*\Z")
# Characters a folder may not hold: it is written into nginx's configuration (quoted; `$` would be a variable).
_UNSAFE_FOLDER_RE = re.compile(r"[\s\"'\\$;{}\x00-\x1f\x7f]")
_FIX = "write e.g. static = /static static (a URL prefix, then a folder relative to the app's chdir)"

T = TypeVar("T", bound=Hashable)


@dataclass(frozen=True)
class StaticMount:
    """`prefix` (the URL prefix under the app's path, no trailing slash) served from `folder` (as written);
    `path` is the folder made absolute (None when the vassal's chdir is not known)."""

    prefix: str
    folder: str
    path: Path | None = None

    def describe(self) -> str:
        return f"{self.prefix} {self.folder}"


def parse_value(value: str, chdir: Path | None) -> tuple[StaticMount | None, str, str]:
    """The mount of one `static = ...` value, or None with (the problem, its fix)."""
    parts = value.split()
    if len(parts) != 2:
        return None, f"static {value!r} is not a URL prefix and a folder", _FIX
    prefix, folder = parts
    if prefix != "/" and prefix.endswith("/"):
        prefix = prefix[:-1]
    segments = prefix.split("/")[1:]
    if not prefix.startswith("/") or prefix == "/":
        return None, f"static prefix {parts[0]!r} is not a URL prefix below /", "write e.g. static = /static static"
    if not all(_SEGMENT_RE.match(s) for s in segments) or ".." in prefix:
        return (
            None,
            f"static prefix {parts[0]!r} may hold only letters, digits and . _ ~ - between slashes (no `..`)",
            "write e.g. static = /static static",
        )
    if _UNSAFE_FOLDER_RE.search(folder):
        return None, f"static folder {folder!r} holds a character nginx's configuration cannot take", "rename it"
    path = Path(folder) if folder.startswith("/") else (chdir / folder if chdir is not None else None)
    if path is not None:
        path = Path(_normalise(path))
        if not path.is_dir():
            what = "is not a folder" if path.exists() else "does not exist"
            return None, f"static folder {folder!r} ({path}) {what}", "create it, or name the app's static folder"
    return StaticMount(prefix, folder, path), "", ""


def parse(
    options: list[tuple[str, str, int]], chdir: Path | None, must_resolve: bool = False
) -> tuple[StaticMount | None, list[tuple[str, str, int]]]:
    """The mount from the [fleet] section's (key, value, line) options (other keys are not looked at), and
    problems (message, fix, line). `chdir`: the vassal's working folder, None when not known: then a relative
    folder is not checked, or, with `must_resolve` (the folder is checked on disk), is a problem."""
    mount, problems = None, []
    for key, value, line in options:
        if key != "static":
            continue
        found, message, fix = parse_value(value, chdir)
        if found is not None and found.path is None and must_resolve:
            message = f"static folder {found.folder!r} is relative to a chdir fleet cannot resolve"
            found, fix = None, "write the static folder as an absolute path"
        if found is None:
            problems.append((message, fix, line))
        else:
            mount = found
    return mount, problems


def chdir_of(chdir_option: str | None, vassal_file: Path, default: Path | None) -> Path | None:
    """The vassal's working folder: its own `chdir` (absolute, or with uWSGI's `%d`: the file's folder),
    else the default (emperor.ini's, app/); None when it cannot be told without uWSGI."""
    if chdir_option is None:
        return default
    value = chdir_option.replace("%d", str(vassal_file.parent) + "/")
    if "%" in value or "$(" in value or "@(" in value or not value.startswith("/"):
        return None
    return Path(value)


def _normalise(path: Path) -> str:
    # Lexical, like the shell's `cd`: `..` removed without following symlinks (the renderer resolves them).
    return posixpath.normpath(str(path))


def agree(
    setting: str,
    values: Mapping[str, T | None],
    ages: Mapping[str, int],
    describe: Callable[[T], str] = str,
) -> tuple[T | None, dict[str, str]]:
    """What the backends of one app agree on for `setting`, and why each one that disagrees is failed.

    `values`: each backend's value (None allowed: "not set"); `ages`: each one's file mtime. The value the
    most backends hold wins; on a tie, the oldest file's (then the first name's): so a file copied in with
    another value fails, not the ones already serving, and changing the value file by file keeps at least
    half of the backends serving. Returns (None, {}) when there are no backends.
    """
    if not values:
        return None, {}
    counts: dict[T | None, int] = {}
    for value in values.values():
        counts[value] = counts.get(value, 0) + 1
    first = min(values, key=lambda name: (ages.get(name, 0), name))
    winner = max(counts, key=lambda v: (counts[v], v == values[first]))
    holders = sorted(name for name, value in values.items() if value == winner)
    shown = describe(winner) if winner is not None else "not set"
    reasons = {}
    for name, value in values.items():
        if value != winner:
            mine = describe(value) if value is not None else "not set"
            reasons[name] = (
                f"[fleet] {setting} is {mine!r} here but {shown!r} for {', '.join(holders)}: the backends of an"
                f" app must agree on it (change them all, one by one, or none)"
            )
    return winner, reasons
