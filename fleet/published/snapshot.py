"""The control plane's published state (run/state.json), typed: written by the control plane, read by
`fleet status`, the operator commands, `fleet up` and the tests."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields

from fleet.core.states import State
from fleet.layout import Layout, write_atomically
from fleet.published.events import Event

# The snapshot is rewritten at least this often, changed or not: its age tells readers (fleet status, the
# container health check) that the control plane lives.
HEARTBEAT = 2.0


@dataclass(frozen=True)
class BackendView:
    """One backend as published."""

    name: str
    state: State  # written as its value ("healthy"), read back as a State
    since: float  # wall-clock time it entered its state
    routed: bool = False
    error: str = ""
    pid: int | None = None
    workers: int = 0
    requests: int = 0
    memory: int = 0  # bytes, PSS of its master and workers
    mtime_ns: int = 0  # the file version the control plane acted on
    served_mtime_ns: int = 0  # the file version serving now
    weight: int = 100  # its weight now (the file's, or `fleet weight`'s until the file changes)
    slots: int = 0  # nginx slots pointing at it: its share of new requests is slots / all slots


@dataclass(frozen=True)
class Counters:
    """Kept by the control plane's runtime and effects, never by the core."""

    passes: int = 0
    last_pass_ms: float = 0.0
    routing_changes: int = 0  # slots re-pointed (no nginx reload)
    last_routing_ms: float = 0.0
    nginx_reloads: int = 0  # only when the slot count changes
    last_nginx_reload_ms: float = 0.0
    routing_errors: int = 0


@dataclass(frozen=True)
class Snapshot:
    control_pid: int = 0
    written_at: float = 0.0
    routed: tuple[str, ...] = ()
    backends: dict[str, BackendView] = field(default_factory=dict)
    counters: Counters = Counters()
    routing_error: str = ""
    events: tuple[Event, ...] = ()  # the most recent transitions, oldest first
    deploy: dict | None = None  # the deploy in progress (fleet.core.deploy.to_dict), None when none runs

    def backend(self, name: str) -> BackendView | None:
        return self.backends.get(name)

    def state_of(self, name: str) -> State | None:
        b = self.backends.get(name)
        return b.state if b else None

    def to_json(self) -> str:
        # Field by field rather than dataclasses.asdict (which deep-copies), and without `indent`, which
        # makes json use its pure-Python encoder: a 50-backend snapshot is written every 2 s.
        doc = {
            "control_pid": self.control_pid,
            "written_at": self.written_at,
            "routed": list(self.routed),
            "backends": {name: vars(b) for name, b in self.backends.items()},
            "counters": vars(self.counters),
            "routing_error": self.routing_error,
            "events": [e.to_dict() for e in self.events],
            "deploy": self.deploy,
        }
        return json.dumps(doc) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        doc = json.loads(text)
        return cls(
            control_pid=int(doc.get("control_pid", 0)),
            written_at=float(doc.get("written_at", 0.0)),
            routed=tuple(doc.get("routed", ())),
            backends={
                name: _known(BackendView, b | {"state": State(b["state"])})
                for name, b in doc.get("backends", {}).items()
            },
            counters=_known(Counters, doc.get("counters", {})),
            routing_error=str(doc.get("routing_error", "")),
            events=tuple(Event.from_dict(e) for e in doc.get("events", ())),
            deploy=doc.get("deploy"),
        )

    @classmethod
    def read(cls, layout: Layout) -> Snapshot:
        """The last published snapshot; an empty one if there is none (the control plane is not up yet)."""
        try:
            return cls.from_json(layout.state_file.read_text())
        except (OSError, ValueError, KeyError, TypeError):
            return cls()

    def write(self, layout: Layout) -> None:
        write_atomically(layout.state_file, self.to_json())

    def age(self) -> float:
        return time.time() - self.written_at


def _known(cls, doc: dict):
    """Build a dataclass from a dict, ignoring keys it does not know (a newer or older writer)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in doc.items() if k in names})
