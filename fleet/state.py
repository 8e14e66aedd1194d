"""The control plane's published state (run/state.json), as the CLI reads it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from fleet.layout import Layout


@dataclass
class State:
    """The control plane's last published state, as read by the CLI."""

    routed: list[str] = field(default_factory=list)
    backends: dict[str, dict] = field(default_factory=dict)
    counters: dict = field(default_factory=dict)
    control_pid: int = 0

    @classmethod
    def read(cls, layout: Layout) -> State:
        try:
            doc = json.loads(layout.state_file.read_text())
        except (OSError, ValueError):
            return cls()
        return cls(doc.get("routed", []), doc.get("backends", {}), doc.get("counters", {}), doc.get("control_pid", 0))
