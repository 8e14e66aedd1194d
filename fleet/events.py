"""Transitions as events: the core only returns them; subscribers (log, state file, metrics) react.

Nothing here counts or decides: a subscriber that wants a counter keeps its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from fleet.model import Transition

log = logging.getLogger("fleet.control")


@dataclass(frozen=True)
class Event:
    """One backend moved from one state to another (None: not known before, or gone), at wall-clock `at`."""

    name: str
    old: str | None
    new: str | None
    reason: str
    at: float

    @classmethod
    def of(cls, t: Transition, at: float) -> Event:
        return cls(t.name, t.old.value if t.old else None, t.new.value if t.new else None, t.reason, at)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> Event:
        return cls(str(doc["name"]), doc.get("old"), doc.get("new"), str(doc.get("reason", "")), float(doc["at"]))

    def describe(self) -> str:
        return f"{self.name}: {self.old or 'new'} -> {self.new or 'gone'} ({self.reason})"


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
    level = logging.WARNING if event.new in ("failed", "ejected") else logging.INFO
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
