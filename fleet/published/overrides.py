"""Run-time weights (`fleet weight NAME N`): one file per backend, run/weights/NAME.json, written atomically
by the command and read by the control plane every pass. An override holds while the vassal file keeps
the version it was set on (its mtime); once the file changes, the file's own weight is back."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from fleet.layout import Layout, write_atomically


@dataclass(frozen=True)
class Override:
    weight: int
    mtime_ns: int  # the vassal file's version it applies to


def write(layout: Layout, name: str, weight: int, mtime_ns: int) -> None:
    layout.weights_dir.mkdir(parents=True, exist_ok=True)
    doc = {"weight": weight, "mtime_ns": mtime_ns}
    write_atomically(layout.weights_dir / f"{name}.json", json.dumps(doc) + "\n")


def read_all(layout: Layout) -> dict[str, Override]:
    """Every override present (an unreadable or garbled one is skipped: the file's weight holds)."""
    found = {}
    try:
        entries = os.listdir(layout.weights_dir)
    except OSError:
        return {}
    for entry in entries:
        if not entry.endswith(".json") or entry.startswith("."):
            continue
        try:
            doc = json.loads((layout.weights_dir / entry).read_text())
            found[entry.removesuffix(".json")] = Override(int(doc["weight"]), int(doc["mtime_ns"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def effective(file_weights: dict[str, int], mtimes: dict[str, int], overrides: dict[str, Override]) -> dict[str, int]:
    """Each backend's weight: its override while its file is the version the override was set on, else the file's."""
    return {
        name: o.weight if (o := overrides.get(name)) is not None and o.mtime_ns == mtimes.get(name) else weight
        for name, weight in file_weights.items()
    }
