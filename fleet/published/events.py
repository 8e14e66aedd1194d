"""Transitions as events: the core only returns them; subscribers (log, state file, metrics) react.

Nothing here counts or decides: a subscriber that wants a counter keeps its own.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fleet.core.model import Transition
from fleet.core.states import State

log = logging.getLogger("fleet.control")


@dataclass(frozen=True)
class Event:
    """One backend moved from one state to another (None: not known before, or gone), at wall-clock `at`."""

    name: str
    old: State | None  # written as its value, read back as a State
    new: State | None
    reason: str
    at: float
    app: str = "default"  # the app the backend is a replica of

    @classmethod
    def of(cls, t: Transition, at: float) -> Event:
        return cls(t.name, t.old, t.new, t.reason, at, t.app)

    def to_dict(self) -> dict:
        # Field by field: dataclasses.asdict deep-copies, and each snapshot written holds 50 events.
        return {
            "name": self.name,
            "old": self.old,
            "new": self.new,
            "reason": self.reason,
            "at": self.at,
            "app": self.app,
        }

    @classmethod
    def from_dict(cls, doc: dict) -> Event:
        old, new = doc.get("old"), doc.get("new")
        return cls(
            str(doc["name"]),
            None if old is None else State(old),
            None if new is None else State(new),
            str(doc.get("reason", "")),
            float(doc["at"]),
            str(doc.get("app", "default")),
        )

    def describe(self) -> str:
        if self.old is None and self.new is None:  # not a backend's move: a note of fleet's (e.g. [https])
            return f"{self.name}: {self.reason}"
        app = f" (app {self.app})" if self.app != "default" else ""
        return f"{self.name}{app}: {self.old or 'new'} -> {self.new or 'gone'} ({self.reason})"


Subscriber = Callable[[Event], None]


class Bus:
    """notify(event) calls every subscriber, in the order they subscribed."""

    def __init__(self) -> None:
        self.subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)

    def notify(self, event: Event) -> None:
        for subscriber in self.subscribers:
            try:
                subscriber(event)
            except Exception:  # one broken subscriber must not stop the control plane or the others
                log.exception("event subscriber %r failed", subscriber)


def log_event(event: Event) -> None:
    """The control plane's log: one line per transition."""
    level = logging.WARNING if event.new in (State.FAILED, State.EJECTED) else logging.INFO
    log.log(level, "%s", event.describe())


class EventFile:
    """Append events as JSON lines (run/logs/events.jsonl), started anew past `max_bytes`."""

    def __init__(self, path: Path, max_bytes: int = 1 << 20):
        self.path, self.max_bytes = path, max_bytes

    def __call__(self, event: Event) -> None:
        try:
            if self.path.stat().st_size > self.max_bytes:
                self.path.replace(self.path.with_suffix(".jsonl.1"))
        except FileNotFoundError:
            pass
        with open(self.path, "a") as f:
            f.write(json.dumps(event.to_dict()) + "\n")


def read_events(path: Path) -> list[Event]:
    """Every event still on disk, oldest first: the rotated file (events.jsonl.1), then the current one."""
    found: list[Event] = []
    for part in (path.with_suffix(".jsonl.1"), path):
        try:
            with open(part) as f:
                found.extend(e for line in f if (e := _parse(line)) is not None)
        except FileNotFoundError:
            continue
    return found


def tail(path: Path, stopped: Callable[[], bool], interval: float = 0.2) -> Iterator[Event]:
    """The events appended to `path` from now on, as they come, across rotations, until `stopped()`."""
    f, ino = _open_at_end(path)
    while not stopped():
        line = f.readline() if f else b""
        if line.endswith(b"\n"):
            if (e := _parse(line)) is not None:
                yield e
            continue
        if line:
            f.seek(-len(line), os.SEEK_CUR)  # half a line: the writer has not finished it
        try:
            current = path.stat().st_ino
        except FileNotFoundError:
            current = None
        if current is not None and current != ino:  # rotated, or created: the old one was read to its end
            if f:
                f.close()
            f, ino = open(path, "rb"), current  # noqa: SIM115 (kept open between polls)
            continue
        time.sleep(interval)  # polling a file: there is nothing to wait on
    if f:
        f.close()


def format_event(event: Event) -> str:
    """One line for a terminal: local time to the millisecond, then what moved."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.at))
    return f"{stamp}.{int(event.at % 1 * 1000):03d}  {event.describe()}"


def _open_at_end(path: Path):
    try:
        f = open(path, "rb")  # noqa: SIM115 (kept open between polls)
    except FileNotFoundError:
        return None, None
    f.seek(0, os.SEEK_END)
    return f, os.fstat(f.fileno()).st_ino


def _parse(line: str | bytes) -> Event | None:
    try:
        return Event.from_dict(json.loads(line))
    except (ValueError, KeyError, TypeError):
        return None
