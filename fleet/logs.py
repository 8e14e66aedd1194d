"""Component logs: the failure reason in a vassal's log, and following many logs with prefixes."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TextIO

# What a vassal's log says when it cannot serve, most specific first.
_REASONS = [
    re.compile(r"fleet-vassal: .*"),
    re.compile(r"\[strict-mode\] unknown config directive: .*"),
    re.compile(r"^\w+(?:\.\w+)*(?:Error|Exception|Exit): .*"),
    re.compile(r"unable to load app .*|no app loaded.*|unable to find .*|bind\(\): .*|cannot .*"),
]
_TAIL_BYTES = 32 * 1024


def tail(path: Path, limit: int = _TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def failure_reason(log: Path) -> str:
    """The most telling error line near the end of a vassal's log, or '' if none."""
    lines = tail(log).splitlines()
    for pattern in _REASONS:
        for line in reversed(lines):
            match = pattern.search(line.strip())
            if match:
                return match.group(0)[:300]
    return ""


class Follower:
    """Print the lines of several log files as they grow (from their start), each prefixed with its
    component name."""

    def __init__(self, out: TextIO = sys.stdout):
        self.out = out
        self.offsets: dict[Path, int] = {}

    def poll(self, paths: list[Path]) -> int:
        printed = 0
        width = max((len(p.stem) for p in paths), default=8)
        for path in paths:
            offset = self.offsets.get(path, 0)
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if size < offset:  # truncated or replaced
                offset = 0
            if size == offset:
                continue
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(size - offset)
            complete, _, _rest = data.rpartition(b"\n")
            if not complete and len(data) < 65536:
                continue  # wait for the end of the line
            consumed = len(complete) + 1 if complete else len(data)
            self.offsets[path] = offset + consumed
            for line in (complete or data).decode("utf-8", "replace").splitlines():
                self.out.write(f"{path.stem:<{width}} | {line}\n")
                printed += 1
        if printed:
            self.out.flush()
        return printed
