"""`fleet weight NAME N`: a backend's weight at run time, without reloading it or nginx, until its file changes."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from fleet.core.weights import MAX_WEIGHT
from fleet.errors import FleetError
from fleet.layout import Layout
from fleet.ops.commands import _require_running, _wait, existing_vassal
from fleet.published import overrides
from fleet.published.snapshot import Snapshot
from fleet.vassalfile import weight as weight_key

# The control plane applies a weight within a pass (0.5 s when idle); not within this, something is wrong.
APPLY_TIMEOUT = 15.0


def weigh(layout: Layout, name: str, value: str, timeout: float = APPLY_TIMEOUT, out: TextIO = sys.stdout) -> int:
    """Write run/weights/NAME.json (atomically), then wait until the control plane's slots follow it."""
    weight = weight_key.parse_value(value)
    if weight is None:
        raise FleetError(f"weight {value!r} is not a whole number from 0 to {MAX_WEIGHT}", exit_code=2)
    path = existing_vassal(layout, name)
    _require_running(layout)
    overrides.write(layout, name, weight, path.stat().st_mtime_ns)

    def applied(snap: Snapshot) -> str | None:
        b = snap.backend(name)
        return "ok" if b is not None and b.weight == weight else None

    _wait(layout, f"weighing {name}", applied, timeout, out)
    snap = Snapshot.read(layout)
    total = sum(b.slots for b in snap.backends.values())
    b = snap.backend(name)
    share = f"{100.0 * b.slots / total:.1f}%" if b is not None and total else "0%"
    standby = " (a warm standby: probed, sent nothing)" if weight == 0 and share == "0%" else ""
    out.write(
        f"{name}: weight {weight}, {share} of new requests{standby}; it holds until {os.path.relpath(path)} changes\n"
    )
    return 0
